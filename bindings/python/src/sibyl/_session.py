"""Session: one conversation over a model: blocking chat and generate, their submitted
(non-blocking) forms, and the low-level calls (append, logits, sample, rewind, fork, state)."""
from __future__ import annotations

import array
import ctypes
from ctypes import byref, c_int32, c_size_t, c_uint64, c_void_p
from typing import TYPE_CHECKING

from . import _native as N
from ._args import _Args, _chat_options, _generate_options, _messages, _sampler
from ._callbacks import _CallState, _calls, _keys, _text_trampoline, _token_trampoline, _tool_call_trampoline
from ._convert import _enum_value, _tokens_array, _uint
from ._enums import _LOGITS_MODES, _stop_reason
from ._handles import _Handle, _Owner, _finalize
from ._library import _BUFFER_TOO_SMALL, _OK, _check, _lib
from ._records import ChatReply, _counts
from ._request import Request
from ._stream import ChatStream

if TYPE_CHECKING:  # only for annotations: _model imports this module (Model.session)
    from ._model import Model


def _cancel_session(ptr) -> None:
    _lib.sibyl_session_cancel(ptr)


class Session(_Owner):
    """One conversation over a model: its tokens, cache and sampling RNG. A session serves one
    call at a time: a call while another runs on it, or while a request submitted on it is
    unfinished, raises BusyError (different sessions may run on different threads)."""

    def __init__(self, model: Model, seed: int = 0, max_context: int = 0, _ptr=None):
        self._model = model
        if _ptr is None:
            opts = N.new_struct(_lib, N.SessionOptions)
            opts.seed = _uint(seed, 64, "seed")
            opts.max_context = _uint(max_context, 32, "max_context")
            out = c_void_p()
            m = model._h.acquire()
            try:
                _check(_lib.sibyl_session_create(m, byref(opts), byref(out)))
            finally:
                model._h.release()
            _ptr = out.value
        self._h = _Handle(_ptr, _lib.sibyl_session_destroy, "session", on_busy_close=_cancel_session)
        _finalize(self)

    @property
    def model(self) -> Model:
        return self._model

    # -- blocking calls

    def _blocking(self, state: _CallState, call):
        """Run call(session_ptr, key) with `state` reachable from the trampolines under `key`."""
        key = next(_keys)
        _calls[key] = state
        s = self._h.acquire()
        try:
            st = call(s, key)
        finally:
            self._h.release()
            del _calls[key]
        if state.error is not None:
            raise state.error
        _check(st)

    def chat(self, messages, *, on_text=None, on_tool_call=None, **options) -> ChatReply:
        """Continue the conversation `messages` (ending with the user's turn, or tool outputs) and
        return the reply. The reply's tokens stay in the session: chat again with the
        conversation extended by reply.message() and a new turn, and the cached prefix is reused.

        on_text(channel, text) receives the reply as it is generated ("reasoning" or "answer");
        on_tool_call(ToolCall) each call; either returning a true value stops the reply.
        Options: max_new_tokens (1024), think_budget, thinking (True), stop (a string or a list),
        grammar (a Grammar) and grammar_scope ("answer", "whole"), tools (dicts with name,
        description, parameters: a JSON Schema dict) with tool_choice ("auto", "none",
        "required") and tool_name, seed (re-seeds the session first), and sampling:
        temperature, top_k, top_p, min_p, repetition_penalty, repetition_last_n, logit_bias
        ({token: bias}). Greedy by default.
        """
        state = _CallState(on_text=on_text, on_tool_call=on_tool_call)
        result = N.output_struct(N.ChatResult)
        with _Args() as args:
            arr, n, trusted, history = _messages(messages, args)
            opts = _chat_options(args, trusted, history, **options)
            opts.on_tool_call = _tool_call_trampoline
            self._blocking(state, lambda s, key: _lib.sibyl_session_chat(
                s, arr, n, byref(opts), _text_trampoline, key, byref(result)))
        return ChatReply(reasoning="".join(state.reasoning), answer="".join(state.answer),
                         tool_calls=state.tool_calls, stop_reason=_stop_reason(result.stop_reason),
                         **_counts(result))

    def generate(self, prompt=(), *, on_token=None, **options) -> list:
        """Append `prompt` (token ids; may be empty when the session holds logits), then generate
        and return the new token ids. on_token(token) returning a true value stops. Options:
        max_new_tokens (256), stop_at_eos (True), grammar, seed, and the sampling options."""
        state = _CallState(on_token=on_token)
        arr, n, keep = _tokens_array(prompt, "prompt")
        generated = c_size_t(0)
        with _Args() as args:
            opts = _generate_options(args, **options)
            self._blocking(state, lambda s, key: _lib.sibyl_session_generate(
                s, arr, n, byref(opts), _token_trampoline, key, byref(generated)))
        return state.tokens

    def stream_chat(self, messages, **options) -> "ChatStream":
        """The reply to `messages` as it is generated: iterate to get (channel, text) pairs,
        channel "reasoning" or "answer"; afterwards stream.reply is the ChatReply (with its tool
        calls). Same options as chat. Leaving the loop early: close the stream (or use it as a
        context manager), which cancels the rest of the reply."""
        return ChatStream(self.submit_chat(messages, **options))

    # -- requests

    def submit_chat(self, messages, *, on_event=None, **options) -> "Request":
        """Submit a chat turn and return at once; read its events with Request.poll (e.g. once
        per frame), or receive them in on_event(Event) on the thread that runs the model's step
        (keep it short). The session is busy until the request ends. Same options as chat."""
        def submit(s, ropts, out):
            with _Args() as args:
                arr, n, trusted, history = _messages(messages, args)
                opts = _chat_options(args, trusted, history, **options)
                return _lib.sibyl_session_submit_chat(s, arr, n, byref(opts), ropts, out)
        return Request._submit(self, "chat", on_event, submit)

    def submit_generate(self, prompt=(), *, on_event=None, **options) -> "Request":
        """Submit a generation (token events) and return at once; see submit_chat."""
        arr, n, keep = _tokens_array(prompt, "prompt")

        def submit(s, ropts, out):
            with _Args() as args:
                opts = _generate_options(args, **options)
                return _lib.sibyl_session_submit_generate(s, arr, n, byref(opts), ropts, out)
        return Request._submit(self, "generate", on_event, submit)

    # -- the low-level calls

    def _simple(self, fn, *a):
        s = self._h.acquire()
        try:
            _check(fn(s, *a))
        finally:
            self._h.release()

    def append(self, tokens, logits: str = "last") -> None:
        """Run the model over more tokens; `logits` keeps "last" (for sampling), "all" or "none"."""
        arr, n, keep = _tokens_array(tokens)
        self._simple(_lib.sibyl_session_append, arr, n, _enum_value(_LOGITS_MODES, logits, "logits"))

    def logits(self) -> list:
        """The logits kept by the last append: one array('f') of vocabulary size per kept row."""
        ptr = ctypes.POINTER(ctypes.c_float)()
        rows, vocab = c_size_t(0), c_size_t(0)
        s = self._h.acquire()
        try:
            _check(_lib.sibyl_session_logits(s, byref(ptr), byref(rows), byref(vocab)))
            raw = ctypes.string_at(ptr, rows.value * vocab.value * 4)
        finally:
            self._h.release()
        v = vocab.value
        return [array.array("f", raw[i * v * 4:(i + 1) * v * 4]) for i in range(rows.value)]

    def sample(self, **sampling) -> int:
        """A token chosen from the last logits (not appended); greedy without options."""
        args = _Args()
        sampler = _sampler(args, **sampling)
        token = c_int32(0)
        self._simple(_lib.sibyl_session_sample, sampler, byref(token))
        return token.value

    @property
    def position(self) -> int:
        """Number of tokens in the session's context."""
        n = c_size_t(0)
        self._simple(_lib.sibyl_session_position, byref(n))
        return n.value

    def rewind(self, position: int) -> None:
        """Forget every token from `position` on."""
        self._simple(_lib.sibyl_session_rewind, _uint(position, 64, "position"))

    def reset(self) -> None:
        """Empty the session and re-seed it with its creation seed."""
        self._simple(_lib.sibyl_session_reset)

    def set_seed(self, seed: int) -> None:
        self._simple(_lib.sibyl_session_set_seed, _uint(seed, 64, "seed"))

    def cancel(self) -> None:
        """Cancel what runs on the session now (a chat or generate call, or a request); any thread."""
        self._simple(_lib.sibyl_session_cancel)

    def fork(self) -> "Session":
        """A new session continuing from this one (pages shared copy-on-write)."""
        out = c_void_p()
        self._simple(_lib.sibyl_session_fork, byref(out))
        return Session(self._model, _ptr=out.value)

    def mtp_stats(self):
        """(drafted, accepted): speculative-decoding drafts verified and accepted so far."""
        drafted, accepted = c_uint64(0), c_uint64(0)
        self._simple(_lib.sibyl_session_mtp_stats, byref(drafted), byref(accepted))
        return drafted.value, accepted.value

    def save_state(self) -> bytes:
        """The session's state as bytes (tied to the model file); load_state continues it."""
        n = c_size_t(0)
        s = self._h.acquire()
        try:
            st = _lib.sibyl_session_save_state(s, None, 0, byref(n))
            for _ in range(4):
                if st != _BUFFER_TOO_SMALL:
                    break
                buf = ctypes.create_string_buffer(n.value)
                st = _lib.sibyl_session_save_state(s, buf, n.value, byref(n))
                if st == _OK:
                    return buf.raw[:n.value]
            _check(st)
            return b""
        finally:
            self._h.release()

    def load_state(self, data) -> None:
        """Replace the session's contents by a saved state (FormatError for a foreign or corrupt
        one, which leaves the session unchanged)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("data must be bytes, not %s" % type(data).__name__)
        data = bytes(data)
        self._simple(_lib.sibyl_session_load_state, data, len(data))

    def __repr__(self):
        return "<sibyl.Session%s>" % (" closed" if self.closed else "")
