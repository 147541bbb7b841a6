"""The ctypes trampolines through which C calls into Python during chats, generations and requests.

They live as long as the module and get a numeric key as user_data. The Python callables they
lead to (on_text, on_token, on_tool_call, on_event) are registered per call or per request and
looked up by that key, so a callback whose call or request is gone can never be reached.
"""
from __future__ import annotations

import itertools
import threading

from . import _native as N
from ._convert import _string
from ._enums import _channel
from ._records import ToolCall


_keys = itertools.count(1)
_calls = {}     # key -> _CallState of a running blocking call
_requests = {}  # key -> weakref to a Request with an on_event callback
_callback_depth = threading.local()


class _CallState:
    __slots__ = ("on_text", "on_token", "on_tool_call", "reasoning", "answer", "tool_calls", "tokens", "error")

    def __init__(self, on_text=None, on_token=None, on_tool_call=None):
        self.on_text = on_text
        self.on_token = on_token
        self.on_tool_call = on_tool_call
        self.reasoning = []
        self.answer = []
        self.tool_calls = []
        self.tokens = []
        self.error = None


@N.TextFn
def _text_trampoline(channel, piece, length, key):
    state = _calls.get(key)
    if state is None:
        return 1
    try:
        text = _string(piece, length)
        (state.reasoning if channel == 0 else state.answer).append(text)
        if state.on_text is not None and state.on_text(_channel(channel), text):
            return 1
        return 0
    except BaseException as e:  # never into C: stop, and raise after the call
        state.error = state.error or e
        return 1


@N.TokenFn
def _token_trampoline(token, key):
    state = _calls.get(key)
    if state is None:
        return 1
    try:
        state.tokens.append(token)
        if state.on_token is not None and state.on_token(token):
            return 1
        return 0
    except BaseException as e:
        state.error = state.error or e
        return 1


@N.ToolCallFn
def _tool_call_trampoline(name, name_len, args, args_len, key):
    state = _calls.get(key)
    if state is None:
        return 1
    try:
        call = ToolCall(_string(name, name_len), _string(args, args_len))
        state.tool_calls.append(call)
        if state.on_tool_call is not None and state.on_tool_call(call):
            return 1
        return 0
    except BaseException as e:
        state.error = state.error or e
        return 1


@N.EventFn
def _event_trampoline(event_ptr, key):
    ref = _requests.get(key)
    request = ref() if ref is not None else None
    if request is None:
        return
    depth = getattr(_callback_depth, "n", 0)
    _callback_depth.n = depth + 1
    try:
        request._deliver(event_ptr.contents)
    except BaseException:  # _deliver keeps the user's exceptions; this is the last guard
        pass
    finally:
        _callback_depth.n = depth
