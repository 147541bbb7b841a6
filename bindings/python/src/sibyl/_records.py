"""The plain read-only results: ModelInfo, StepReport, ToolCall, Event, ChatReply, GenerateReply."""
from __future__ import annotations

import json

from . import _native as N
from .errors import Status, make_error


class _Record:
    """A plain read-only record with a readable repr."""
    __slots__ = ()

    def __init__(self, **fields):
        for name in self.__slots__:
            object.__setattr__(self, name, fields.pop(name, None))
        if fields:
            raise TypeError("unknown fields: " + ", ".join(fields))

    def __setattr__(self, name, value):
        raise AttributeError("%s is read-only" % type(self).__name__)

    def __eq__(self, other):
        return type(other) is type(self) and all(getattr(self, n) == getattr(other, n) for n in self.__slots__)

    def __hash__(self):
        return hash(tuple(repr(getattr(self, n)) for n in self.__slots__))

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__,
                           ", ".join("%s=%r" % (n, getattr(self, n)) for n in self.__slots__))

    def _asdict(self) -> dict:
        return {n: getattr(self, n) for n in self.__slots__}


class ModelInfo(_Record):
    """What a loaded model is (sibyl_model_info)."""
    __slots__ = tuple(f[0] for f in N.ModelInfo._fields_ if f[0] != "struct_size")


class StepReport(_Record):
    """What one Model.step did (sibyl_step_report)."""
    __slots__ = ("rows", "sequences", "pending", "elapsed_us", "overrun")


class ToolCall(_Record):
    """A tool call: the tool's `name` and its `arguments`, the JSON text the model wrote (pass it
    back unchanged in the conversation's history, so the prompt reuses the cached call)."""
    __slots__ = ("name", "arguments")

    def __init__(self, name: str, arguments: str):
        super().__init__(name=name, arguments=arguments)

    @property
    def args(self):
        """The arguments parsed from JSON."""
        return json.loads(self.arguments)


class Event(_Record):
    """One event of a Request: type "token" (`token`), "text" (`channel`, `text`), "tool_call"
    (`name`, `text` = the arguments' JSON) or "done" (`stop_reason`, `status`, and with an
    error status `text` = the library's message)."""
    __slots__ = ("type", "token", "channel", "text", "name", "stop_reason", "status")

    @property
    def error(self):
        """A "done" event's error as a SibylError, else None."""
        if self.type == "done" and self.status != Status.OK:
            return make_error(self.status, self.text or "")
        return None

    @property
    def tool_call(self):
        return ToolCall(self.name, self.text) if self.type == "tool_call" else None


_COUNT_FIELDS = ("prompt_tokens", "reused_tokens", "reasoning_tokens", "answer_tokens", "generated_tokens",
                 "first_token_us", "total_us", "drafted_tokens", "accepted_drafts")


class ChatReply(_Record):
    """A chat reply: the reasoning and answer text, the tool calls the answer made, why it ended,
    and the token counts and latencies (microseconds) of sibyl_chat_result."""
    __slots__ = ("reasoning", "answer", "tool_calls", "stop_reason") + _COUNT_FIELDS

    def message(self) -> dict:
        """The reply as the assistant message that continues the conversation."""
        m = {"role": "assistant", "content": self.answer}
        if self.tool_calls:
            m["tool_calls"] = list(self.tool_calls)
        return m


class GenerateReply(_Record):
    """What a submitted generation produced: its token ids, why it ended, and its counts."""
    __slots__ = ("tokens", "stop_reason") + _COUNT_FIELDS


def _counts(result) -> dict:
    return {name: getattr(result, name) for name in _COUNT_FIELDS}
