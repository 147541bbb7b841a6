"""Model: a loaded model, with its tokenizer, chat template and the step of submitted requests."""
from __future__ import annotations

import os
from ctypes import byref, c_int32, c_size_t, c_void_p

from . import _native as N
from ._args import _Args, _chat_options, _messages, _model_options
from ._convert import _decode, _int, _text_bytes, _tokens_array, _uint
from ._handles import _Handle, _Owner, _finalize
from ._library import _BUFFER_TOO_SMALL, _OK, _check, _lib, _text_out
from ._records import ModelInfo, StepReport
from ._session import Session


class Model(_Owner):
    """A loaded model; shareable by any number of threads.

    Model() loads the default model (the embedded tiny-reasoner, see default_model_path);
    Model(path) a Hugging Face directory, a GGUF file or a .sibyl pack. Options (keywords):
    backend ("auto", "cpu", "cuda", "vulkan"), threads (CPU threads, 0 = all), precision
    ("fast", "exact"), device_index, memory_budget, kv_cache_bytes, kv_page_tokens,
    worker_threads (-1 = one library thread; 0 = none: call step()), worker_nice,
    worker_cpu_mask, step_tokens, mtp (bool), mtp_max_batch.
    """

    def __init__(self, path=None, **options):
        opts = _model_options(options)
        out = c_void_p()
        raw = None if path is None else os.fsencode(path)
        _check(_lib.sibyl_model_load(raw, byref(opts), byref(out)))
        self._h = _Handle(out.value, _lib.sibyl_model_destroy, "model")
        _finalize(self)
        self.path = os.fsdecode(raw) if raw is not None else None
        self._worker_threads = self.info.worker_threads

    def _use(self):
        return self._h.acquire()

    @property
    def info(self) -> ModelInfo:
        """What the model is (sibyl_model_info); kv_cache_bytes_used is read now."""
        info = N.output_struct(N.ModelInfo)
        m = self._h.acquire()
        try:
            _check(_lib.sibyl_model_get_info(m, byref(info)))
            fields = {}
            for name in ModelInfo.__slots__:
                v = getattr(info, name)
                fields[name] = _decode(v) if isinstance(v, bytes) else v
            fields["precision"] = "exact" if info.precision == 1 else "fast"
            return ModelInfo(**fields)
        finally:
            self._h.release()

    @property
    def worker_threads(self) -> int:
        """Library threads that run submitted requests (0: the application calls step)."""
        return self._worker_threads

    def session(self, seed: int = 0, max_context: int = 0) -> "Session":
        """A new empty session (one conversation) on this model."""
        return Session(self, seed=seed, max_context=max_context)

    def step(self, budget_us: int = 0) -> StepReport:
        """Run one batched step of the submitted requests on this thread, sized to take about
        budget_us microseconds (0: a full step). For models loaded with worker_threads=0."""
        report = N.output_struct(N.StepReport)
        m = self._h.acquire()
        try:
            _check(_lib.sibyl_model_step(m, _uint(budget_us, 63, "budget_us"), byref(report)))
        finally:
            self._h.release()
        return StepReport(rows=report.rows, sequences=report.sequences, pending=report.pending,
                          elapsed_us=report.elapsed_us, overrun=bool(report.overrun))

    def tokenize(self, text) -> list:
        """Token ids of `text` (str or UTF-8 bytes), as the model's Hugging Face tokenizer encodes
        it without special tokens added. Invalid UTF-8 raises InvalidArgumentError."""
        data = _text_bytes(text, "text")
        n = c_size_t(0)
        capacity = len(data) + 8
        m = self._h.acquire()
        try:
            for _ in range(4):
                out = (c_int32 * capacity)()
                st = _lib.sibyl_model_tokenize(m, data, len(data), out, capacity, byref(n))
                if st == _OK:
                    return out[:n.value]
                if st != _BUFFER_TOO_SMALL:
                    _check(st)
                capacity = n.value
            _check(st)
        finally:
            self._h.release()

    def detokenize_bytes(self, tokens) -> bytes:
        """The bytes of `tokens` (special tokens as their text)."""
        arr, n, keep = _tokens_array(tokens)
        m = self._h.acquire()
        try:
            return _text_out(_lib.sibyl_model_detokenize, m, arr, n)
        finally:
            self._h.release()

    def detokenize(self, tokens) -> str:
        """The text of `tokens` (special tokens as their text). A sequence that ends inside a
        UTF-8 character gets U+FFFD for it; stream text with chat instead."""
        return _decode(self.detokenize_bytes(tokens))

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes one token stands for (possibly part of a UTF-8 character)."""
        m = self._h.acquire()
        try:
            return _text_out(_lib.sibyl_model_token_bytes, m, _int(token, 32, "token"))
        finally:
            self._h.release()

    def render_chat(self, messages, add_generation_prompt: bool = True, tools=None) -> str:
        """The prompt text the chat template makes of `messages` (as transformers'
        apply_chat_template), with the definitions of `tools` and the messages' tool calls."""
        with _Args() as args:
            arr, n, _trusted, history = _messages(messages, args)
            opts = _chat_options(args, None, history, tools=tools)
            m = self._h.acquire()
            try:
                return _decode(_text_out(_lib.sibyl_model_render_chat_ex, m, arr, n, byref(opts),
                                         1 if add_generation_prompt else 0))
            finally:
                self._h.release()

    def __repr__(self):
        return "<sibyl.Model %s%s>" % (self.path or "(default)", " closed" if self.closed else "")
