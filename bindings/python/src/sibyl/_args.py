"""Building the C arguments of a call from Python values: messages, tools, sampler, chat,
generate and model options, kept alive (with the grammar the call uses) for the call's duration."""
from __future__ import annotations

import ctypes
import json
from ctypes import c_int32

from . import _native as N
from ._convert import _enum_value, _int, _name_bytes, _text_bytes, _uint
from ._enums import _BACKENDS, _PRECISIONS, _SCOPES, _TOOL_CHOICES
from ._grammar import Grammar
from ._library import _lib
from ._records import ToolCall


class _Args:
    """The C arguments of one call and everything they point to (kept alive by `keep`), plus
    the grammar handle the call uses (released by done())."""

    def __init__(self):
        self.keep = []
        self.grammar = None

    def use_grammar(self, grammar):
        if grammar is None:
            return None
        if not isinstance(grammar, Grammar):
            raise TypeError("grammar must be a sibyl.Grammar (Grammar.from_json_schema / from_gbnf)")
        ptr = grammar._h.acquire()
        self.grammar = grammar
        return ptr

    def done(self):
        if self.grammar is not None:
            self.grammar._h.release()
            self.grammar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.done()
        return False


def _tool_call_of(item):
    """(name, arguments JSON text) of a ToolCall, a {"name", "arguments"} dict or an OpenAI-style
    {"function": {"name", "arguments"}} dict; dict arguments are dumped to JSON."""
    if isinstance(item, ToolCall):
        return item.name, item.arguments
    if isinstance(item, dict):
        fn = item.get("function", item)
        name, args = fn.get("name"), fn.get("arguments", "{}")
    else:
        name, args = getattr(item, "name", None), getattr(item, "arguments", "{}")
    if name is None:
        raise TypeError("a tool call needs a name: %r" % (item,))
    if not isinstance(args, (str, bytes)):
        args = json.dumps(args)
    return name, args


def _messages(messages, args: _Args):
    """(ChatMessage array, count, trusted flags or None, tool-call history) of a conversation:
    dicts with "role" and "content" (optionally "tool_calls" and "trusted"), or (role, content)
    pairs."""
    if isinstance(messages, (str, bytes, dict)):
        raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
    messages = list(messages)
    n = len(messages)
    arr = (N.ChatMessage * max(n, 1))()
    trusted = []
    history = []
    for i, m in enumerate(messages):
        if isinstance(m, dict):
            role, content = m.get("role"), m.get("content")
            calls, trust = m.get("tool_calls") or (), m.get("trusted", False)
        elif isinstance(m, (tuple, list)) and len(m) == 2:
            (role, content), calls, trust = m, (), False
        else:
            role, content = getattr(m, "role", None), getattr(m, "content", None)
            calls, trust = getattr(m, "tool_calls", None) or (), getattr(m, "trusted", False)
        if role is None:
            raise TypeError("message %d has no role" % i)
        role_b = _name_bytes(role, "role")
        content_b = b"" if content is None else _text_bytes(content, "content")
        args.keep += (role_b, content_b)
        arr[i].role = role_b
        arr[i].content = content_b
        arr[i].content_len = len(content_b)
        trusted.append(1 if trust else 0)
        for call in calls:
            history.append((i,) + _tool_call_of(call))
    args.keep.append(arr)
    return arr, n, (trusted if any(trusted) else None), history


def _sampler(args: _Args, temperature=None, top_k=None, top_p=None, min_p=None, repetition_penalty=None,
             repetition_last_n=None, logit_bias=None):
    if all(v is None for v in (temperature, top_k, top_p, min_p, repetition_penalty, repetition_last_n,
                                logit_bias)):
        return None
    s = N.new_struct(_lib, N.SamplerOptions)
    if temperature is not None:
        s.temperature = float(temperature)
    if top_k is not None:
        s.top_k = _int(top_k, 32, "top_k")
    if top_p is not None:
        s.top_p = float(top_p)
    if min_p is not None:
        s.min_p = float(min_p)
    if repetition_penalty is not None:
        s.repetition_penalty = float(repetition_penalty)
    if repetition_last_n is not None:
        s.repetition_last_n = _int(repetition_last_n, 32, "repetition_last_n")
    if logit_bias:
        pairs = list(logit_bias.items()) if isinstance(logit_bias, dict) else [tuple(p) for p in logit_bias]
        arr = (N.LogitBias * len(pairs))()
        for i, (token, bias) in enumerate(pairs):
            arr[i].token = _int(token, 32, "logit_bias token")
            arr[i].bias = float(bias)
        args.keep.append(arr)
        s.logit_bias = ctypes.cast(arr, ctypes.POINTER(N.LogitBias))
        s.n_logit_bias = len(pairs)
    args.keep.append(s)
    return ctypes.pointer(s)


def _tool_array(tools, args: _Args):
    if isinstance(tools, dict):
        raise TypeError("tools must be a list of tool definitions")
    tools = list(tools)
    arr = (N.Tool * max(len(tools), 1))()
    for i, t in enumerate(tools):
        if isinstance(t, dict) and "function" in t and "name" not in t:  # OpenAI style
            t = t["function"]
        if isinstance(t, dict):
            name, desc, params = t.get("name"), t.get("description"), t.get("parameters")
        else:
            name, desc, params = getattr(t, "name", None), getattr(t, "description", None), \
                getattr(t, "parameters", None)
        if name is None:
            raise TypeError("tool %d has no name" % i)
        if params is not None and not isinstance(params, (str, bytes)):
            params = json.dumps(params)
        name_b = _name_bytes(name, "tool name")
        desc_b = _name_bytes(desc, "tool description") if desc else None  # "" = none
        params_b = None if params is None else _name_bytes(params, "tool parameters")
        args.keep += (name_b, desc_b, params_b)
        arr[i].name, arr[i].description, arr[i].parameters = name_b, desc_b, params_b
    args.keep.append(arr)
    return arr, len(tools)


def _chat_options(args: _Args, trusted, history, max_new_tokens=None, think_budget=None, thinking=None, stop=None,
                  grammar=None, grammar_scope=None, tools=None, tool_choice=None, tool_name=None, seed=None,
                  **sampling):
    o = N.new_struct(_lib, N.ChatOptions)
    args.keep.append(o)
    if max_new_tokens is not None:
        o.max_new_tokens = _uint(max_new_tokens, 32, "max_new_tokens")
    if think_budget is not None:
        o.think_budget = _int(think_budget, 32, "think_budget")
    if thinking is not None:
        o.thinking = 1 if thinking else 0
    if stop:
        stops = [stop] if isinstance(stop, (str, bytes)) else list(stop)
        arr = (ctypes.c_char_p * len(stops))(*[_name_bytes(s, "stop string") for s in stops])
        args.keep.append(arr)
        o.stop_strings = ctypes.cast(arr, ctypes.POINTER(ctypes.c_char_p))
        o.n_stop_strings = len(stops)
    sampler = _sampler(args, **sampling)
    if sampler is not None:
        o.sampler = sampler
    if seed is not None:
        o.reseed = 1
        o.seed = _uint(seed, 64, "seed")
    if trusted is not None:
        flags = (c_int32 * len(trusted))(*trusted)
        args.keep.append(flags)
        o.trusted = ctypes.cast(flags, ctypes.POINTER(c_int32))
    if grammar is not None:
        o.grammar = args.use_grammar(grammar)
    if grammar_scope is not None:
        o.grammar_scope = _enum_value(_SCOPES, grammar_scope, "grammar_scope")
    if tools:
        arr, n = _tool_array(tools, args)
        o.tools = ctypes.cast(arr, ctypes.POINTER(N.Tool))
        o.n_tools = n
    if tool_choice is not None:
        o.tool_choice = _enum_value(_TOOL_CHOICES, tool_choice, "tool_choice")
    if tool_name is not None:
        name = _name_bytes(tool_name, "tool_name")
        args.keep.append(name)
        o.tool_name = name
    if history:
        arr = (N.ToolCall * len(history))()
        for i, (message, name, arguments) in enumerate(history):
            name_b, args_b = _name_bytes(name, "tool call name"), _name_bytes(arguments, "tool call arguments")
            args.keep += (name_b, args_b)
            arr[i].message, arr[i].name, arr[i].arguments = message, name_b, args_b
        args.keep.append(arr)
        o.tool_calls = ctypes.cast(arr, ctypes.POINTER(N.ToolCall))
        o.n_tool_calls = len(history)
    return o


def _generate_options(args: _Args, max_new_tokens=None, stop_at_eos=None, grammar=None, seed=None, **sampling):
    o = N.new_struct(_lib, N.GenerateOptions)
    args.keep.append(o)
    if max_new_tokens is not None:
        o.max_new_tokens = _uint(max_new_tokens, 32, "max_new_tokens")
    if stop_at_eos is not None:
        o.stop_at_eos = 1 if stop_at_eos else 0
    if seed is not None:
        o.reseed = 1
        o.seed = _uint(seed, 64, "seed")
    sampler = _sampler(args, **sampling)
    if sampler is not None:
        o.sampler = sampler
    if grammar is not None:
        o.grammar = args.use_grammar(grammar)
    return o


_MODEL_INT_OPTIONS = {  # name -> (bits, signed)
    "n_threads": (32, True), "device_index": (32, True), "memory_budget": (64, False),
    "kv_cache_bytes": (64, False), "kv_page_tokens": (32, False), "worker_threads": (32, True),
    "worker_nice": (32, True), "worker_cpu_mask": (64, False), "step_tokens": (32, False),
    "mtp_max_batch": (32, False)}


def _model_options(options: dict):
    o = N.new_struct(_lib, N.ModelOptions)
    for key, value in options.items():
        if value is None:
            continue
        if key == "threads":
            key = "n_threads"
        if key == "backend":
            o.backend = _enum_value(_BACKENDS, value, "backend")
        elif key == "precision":
            o.precision = _enum_value(_PRECISIONS, value, "precision")
        elif key == "mtp":
            o.mtp = 1 if value else 0
        elif key in _MODEL_INT_OPTIONS:
            bits, signed = _MODEL_INT_OPTIONS[key]
            setattr(o, key, _int(value, bits, key) if signed else _uint(value, bits, key))
        else:
            raise TypeError("unknown model option %r (see help(sibyl.Model))" % key)
    return o
