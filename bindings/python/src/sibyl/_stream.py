"""ChatStream: a submitted chat read as (channel, text) pairs (Session.stream_chat)."""
from __future__ import annotations

from ._request import Request


class ChatStream:
    """The text of a submitted chat as (channel, text) pairs; see Session.stream_chat.
    `reply` is the ChatReply once the iteration has ended; `request` the underlying Request."""

    def __init__(self, request: Request):
        self.request = request
        self.reply = None
        self._finished = False

    def __iter__(self):
        return self

    def __next__(self):
        request = self.request
        while not self._finished:
            e = request.poll()
            if e is None:
                if request._callback_error is not None:
                    raise request._callback_error
                request._advance(0.1)
                continue
            if e.type == "text":
                return e.channel, e.text
            if e.type == "done":
                self._finished = True
                try:
                    self.reply = request.result()
                finally:
                    request.close()
        raise StopIteration

    @property
    def tool_calls(self) -> list:
        """The tool calls made so far."""
        return list(self.request._tool_calls)

    def cancel(self) -> None:
        self.request.cancel()

    def close(self) -> None:
        """Cancel what is left of the reply and free the request; the session is free again when
        this returns."""
        self.request.close(wait=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
