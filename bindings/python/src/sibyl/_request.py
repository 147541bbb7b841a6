"""Request: a submitted chat or generation, polled for its events (or given them through
on_event), waited for, cancelled and closed."""
from __future__ import annotations

import collections
import ctypes
import threading
import time
import weakref
from ctypes import byref, c_int, c_void_p
from typing import TYPE_CHECKING

from . import _native as N
from ._callbacks import _callback_depth, _event_trampoline, _keys, _requests
from ._convert import _decode, _string
from ._enums import REASONING, _channel, _status, _stop_reason
from ._handles import _Handle, _Owner, _finalize
from ._library import _OK, _check, _lib
from ._records import ChatReply, Event, GenerateReply, ToolCall, _counts
from .errors import ClosedError, Status

if TYPE_CHECKING:  # only for annotations: _session imports this module (submit_chat, submit_generate)
    from ._session import Session


def _in_event_callback() -> bool:
    return getattr(_callback_depth, "n", 0) > 0


class Request(_Owner):
    """A submitted chat or generation (Session.submit_chat / submit_generate).

    poll() returns its next Event or None when nothing is queued (never blocks); events()
    every queued one; wait(timeout) waits for its end; result() waits and returns the
    ChatReply / GenerateReply (raising the SibylError it ended with); cancel() ends it before
    the next step (stop reason "cancelled"); close() destroys it (cancelling it if it runs).
    Blocking helpers (wait, result, iteration) run the model's steps themselves when the model
    has no worker threads (worker_threads=0); otherwise the library's worker runs them.
    """

    def __init__(self):
        raise TypeError("requests come from Session.submit_chat / submit_generate")

    @classmethod
    def _submit(cls, session: Session, kind: str, on_event, submit) -> "Request":
        if on_event is not None and not callable(on_event):
            raise TypeError("on_event must be callable")
        self = object.__new__(cls)
        self.kind = kind
        self._session = session
        self._model = session._model
        self._on_event = on_event
        self._lock = threading.Lock()
        self._pending = collections.deque()
        self._done = None
        self._done_flag = threading.Event()
        self._callback_error = None
        self._cancel_early = False
        self._reasoning, self._answer, self._tokens, self._tool_calls = [], [], [], []
        self._key = next(_keys)
        ropts = N.new_struct(_lib, N.RequestOptions)
        if on_event is not None:
            # Registered before the submit: the library may call back before it returns.
            _requests[self._key] = weakref.ref(self)
            ropts.on_event = _event_trampoline
            ropts.user_data = self._key
        self._h = _Handle(None, _lib.sibyl_request_destroy, "request",
                          after=lambda key=self._key: _requests.pop(key, None))
        out = c_void_p()
        s = session._h.acquire()
        try:
            st = submit(s, byref(ropts), byref(out))
        except BaseException:
            _requests.pop(self._key, None)
            raise
        finally:
            session._h.release()
        if st != _OK:
            _requests.pop(self._key, None)
            _check(st)
        with self._h._lock:
            self._h.ptr = out.value
        _finalize(self)
        if self._cancel_early:
            _lib.sibyl_request_cancel(out.value)
        return self

    @property
    def session(self) -> Session:
        return self._session

    # -- events

    def _convert(self, ev) -> Event:
        t = ev.type
        if t == 1:
            return Event(type="token", token=ev.token)
        if t == 2:
            return Event(type="text", channel=_channel(ev.channel), text=_string(ev.text, ev.text_len))
        if t == 4:
            return Event(type="tool_call", name=_string(ev.name, ev.name_len), text=_string(ev.text, ev.text_len))
        if t == 3:
            message = ""
            if ev.status != _OK and ev.text:
                message = _string(ev.text, ev.text_len) if ev.text_len else _decode(ctypes.string_at(ev.text))
            return Event(type="done", stop_reason=_stop_reason(ev.stop_reason), status=_status(ev.status),
                         text=message)
        return Event(type=t)

    def _record(self, e: Event) -> None:  # with self._lock held (or from the event callback)
        if e.type == "token":
            self._tokens.append(e.token)
        elif e.type == "text":
            (self._reasoning if e.channel == REASONING else self._answer).append(e.text)
        elif e.type == "tool_call":
            self._tool_calls.append(ToolCall(e.name, e.text))
        elif e.type == "done":
            self._done = e

    def _deliver(self, ev) -> None:
        """An event from the library's on_event callback (on the thread running the step)."""
        e = self._convert(ev)
        with self._lock:
            self._record(e)
        try:
            if self._callback_error is None:
                self._on_event(e)
        except BaseException as error:  # kept for wait()/result(); the request is cancelled
            self._callback_error = error
            ptr = self._h.ptr
            if ptr is not None and e.type != "done":
                _lib.sibyl_request_cancel(ptr)
        finally:
            if e.type == "done":
                self._done_flag.set()

    def _poll_native(self, r):
        ev = N.output_struct(N.Event)
        _check(_lib.sibyl_request_poll(r, byref(ev)))
        if ev.type == 0:
            return None
        e = self._convert(ev)
        self._record(e)
        if e.type == "done":
            self._done_flag.set()
        return e

    def poll(self):
        """The next event, or None when none is queued now. Never blocks. (With on_event, events
        go to the callback and poll returns None.)"""
        with self._lock:
            if self._pending:
                return self._pending.popleft()
        # The handle is released outside self._lock: a close() waiting for this call destroys
        # the request on release, which waits for a running on_event (that takes self._lock).
        r = self._h.acquire()
        try:
            with self._lock:
                if self._pending:
                    return self._pending.popleft()
                return self._poll_native(r)
        finally:
            self._h.release()

    def _drain(self) -> None:
        """Move every event queued in the library into our queue (recording them)."""
        r = self._h.acquire()
        try:
            with self._lock:
                while self._done is None:
                    e = self._poll_native(r)
                    if e is None:
                        return
                    self._pending.append(e)
        finally:
            self._h.release()

    def events(self) -> list:
        """Every event queued now (possibly none), in order."""
        self._drain()
        with self._lock:
            out = list(self._pending)
            self._pending.clear()
        return out

    @property
    def done(self) -> bool:
        """True once the request has ended (its "done" event may still be queued for poll)."""
        if self._done is None and self._on_event is None and not self._h.closed:
            self._drain()
        return self._done is not None

    # -- waiting

    def _advance(self, seconds: float) -> None:
        """Let the request make progress for up to `seconds`: run a step of the model on this
        thread when it has no workers, else wait for the library's worker."""
        if self._model._worker_threads == 0 and not _in_event_callback():
            try:
                report = self._model.step(0)
            except ClosedError:
                report = None
            if report is not None and report.rows > 0:
                return
            seconds = min(seconds, 0.002)  # another thread's step, or the pool is full
        if self._on_event is not None:
            self._done_flag.wait(seconds)
            return
        ready = c_int(0)
        r = self._h.acquire()
        try:
            _check(_lib.sibyl_request_wait(r, max(1, int(seconds * 1e6)), byref(ready)))
        finally:
            self._h.release()

    def wait(self, timeout=None) -> bool:
        """Wait until the request has ended, at most `timeout` seconds (None: no limit); True when
        it has. Events stay queued for poll. An exception raised by on_event is raised here."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done and self._callback_error is None:
            remaining = 0.1 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._advance(min(remaining, 0.1))
        if self._callback_error is not None:
            raise self._callback_error
        return True

    def __iter__(self):
        """Every event until (and including) "done", waiting for them."""
        while True:
            e = self.poll()
            if e is None:
                if self._done is not None:
                    return
                if self._callback_error is not None:
                    raise self._callback_error
                self._advance(0.1)
                continue
            yield e
            if e.type == "done":
                return

    def result(self, timeout=None):
        """Wait for the end and return the ChatReply (chat) or GenerateReply (generate): the text,
        tool calls or tokens of every event, counts and latencies. Raises the SibylError the
        request ended with, TimeoutError after `timeout` seconds."""
        if not self.wait(timeout):
            raise TimeoutError("the request has not ended after %s s" % timeout)
        done = self._done
        if done.status != Status.OK:
            raise done.error
        result = N.output_struct(N.ChatResult)
        r = self._h.acquire()
        try:
            _check(_lib.sibyl_request_result(r, byref(result)))
        finally:
            self._h.release()
        with self._lock:
            if self.kind == "generate":
                return GenerateReply(tokens=list(self._tokens), stop_reason=done.stop_reason, **_counts(result))
            return ChatReply(reasoning="".join(self._reasoning), answer="".join(self._answer),
                             tool_calls=list(self._tool_calls), stop_reason=done.stop_reason, **_counts(result))

    def cancel(self) -> None:
        """End the request before the next step (its "done" event says "cancelled"). Any thread."""
        with self._h._lock:
            if self._h.ptr is None and not self._h._closing:
                self._cancel_early = True  # from on_event, before the submit returned
                return
        r = self._h.acquire()
        try:
            _check(_lib.sibyl_request_cancel(r))
        finally:
            self._h.release()

    def close(self, wait: bool = False) -> None:
        """Destroy the request, cancelling it if it runs. The library ends a cancelled request at
        its next step, and its session is busy until then; wait=True cancels, waits for that end
        (running the step itself when the model has no workers), then destroys, so the session
        is free when close returns. (From an on_event callback it never waits.)"""
        if wait and not self._h.closed and not _in_event_callback():
            try:
                if not self.done:
                    self.cancel()
                    self.wait()
            except Exception:  # closing anyway; errors of the request were its own
                pass
        self._h.close()

    def __repr__(self):
        state = "closed" if self.closed else ("done" if self._done is not None else "running")
        return "<sibyl.Request %s %s>" % (self.kind, state)
