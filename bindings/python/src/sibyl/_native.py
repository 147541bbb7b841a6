"""The C ABI of libsibyl through ctypes: finding and loading the library, the struct mirrors
(checked against the library's own layout at import), and the function prototypes.

Nothing here is public API; `sibyl` re-exports what users need.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char_p, c_float, c_int, c_int32, c_int64, c_size_t,
                    c_uint32, c_uint64, c_void_p)

# The ABI this binding was written for: the library must have the same major version and
# at least this minor version (minor versions only add).
ABI_MAJOR = 0
ABI_MINOR = 8

SIZE_MAX = ctypes.c_size_t(-1).value


class LibraryNotFoundError(ImportError):
    """No usable libsibyl was found; the message names every place that was tried."""


class IncompatibleLibraryError(ImportError):
    """A libsibyl was found but its ABI version is not one this binding can use."""


class LayoutError(ImportError):
    """A struct mirror of this binding disagrees with the library's layout of that struct."""


# ---------------------------------------------------------------- finding the library

def _package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def _candidates():
    """(description, path-or-name, authoritative) in search order."""
    env = os.environ.get("SIBYL_LIBRARY")
    if env:
        # An explicit choice is never silently replaced by another library.
        yield "$SIBYL_LIBRARY=" + env, env, True
        return
    here = sorted(glob.glob(os.path.join(_package_dir(), "libsibyl.so*")), key=len)
    if here:
        for path in here:
            yield "next to the package: " + path, path, False
    else:
        yield "next to the package: no libsibyl.so* in " + _package_dir(), None, False
    found = ctypes.util.find_library("sibyl")
    if found:
        yield "the system loader: find_library('sibyl') = " + found, found, False
    else:
        yield "the system loader: find_library('sibyl') found nothing", None, False
    yield "the system loader: libsibyl.so.0", "libsibyl.so.0", False


def load_library():
    """Load libsibyl from $SIBYL_LIBRARY, else next to this package, else the system loader."""
    tried = []
    for description, target, authoritative in _candidates():
        if target is None:
            tried.append(description)
            continue
        try:
            lib = ctypes.CDLL(target)
        except OSError as e:
            tried.append("%s (%s)" % (description, e))
            if authoritative:
                break
            continue
        path = target
        try:  # the file actually loaded, for error messages and sibyl.library_path
            info = _dl_path(lib)
            if info:
                path = info
        except Exception:
            pass
        return lib, path
    raise LibraryNotFoundError(
        "cannot load libsibyl; tried, in order:\n  - " + "\n  - ".join(tried) +
        "\nBuild it (cmake --build --preset release) and set SIBYL_LIBRARY to the path of "
        "libsibyl.so (e.g. build/release/capi/libsibyl.so), install it where the system loader "
        "finds it, or install the package with the library bundled (docs/PYTHON.md).")


def _dl_path(lib) -> str | None:
    """The path of the shared object `lib` was loaded from (dladdr of one of its symbols)."""
    class DlInfo(Structure):
        _fields_ = [("dli_fname", c_char_p), ("dli_fbase", c_void_p), ("dli_sname", c_char_p),
                    ("dli_saddr", c_void_p)]
    try:
        libdl = ctypes.CDLL(None)
        dladdr = libdl.dladdr
    except (OSError, AttributeError):
        return None
    dladdr.argtypes = [c_void_p, POINTER(DlInfo)]
    dladdr.restype = c_int
    info = DlInfo()
    addr = ctypes.cast(lib.sibyl_abi_version, c_void_p)
    if dladdr(addr, ctypes.byref(info)) and info.dli_fname:
        return os.fsdecode(info.dli_fname)
    return None


# ---------------------------------------------------------------- callbacks

LogFn = CFUNCTYPE(None, c_int32, c_char_p, c_void_p)
TokenFn = CFUNCTYPE(c_int, c_int32, c_void_p)
TextFn = CFUNCTYPE(c_int, c_int32, c_void_p, c_size_t, c_void_p)
ToolCallFn = CFUNCTYPE(c_int, c_void_p, c_size_t, c_void_p, c_size_t, c_void_p)


# ---------------------------------------------------------------- struct mirrors
# Field names are exactly the C names: check_layout compares them, and their offsets, with
# what the library reports (sibyl_struct_offset / sibyl_struct_field).

class _Mirror(Structure):
    _c_name_ = ""
    _growable_ = False  # begins with struct_size and may grow in later minor versions


class VulkanDevice(_Mirror):
    _c_name_ = "sibyl_vulkan_device"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("instance", c_void_p), ("physical_device", c_void_p),
                ("device", c_void_p), ("queue", c_void_p), ("queue_family_index", c_uint32),
                ("get_instance_proc_addr", c_void_p), ("lock_queue", c_void_p), ("unlock_queue", c_void_p),
                ("queue_user_data", c_void_p)]


class ModelOptions(_Mirror):
    _c_name_ = "sibyl_model_options"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("backend", c_int32), ("n_threads", c_int32),
                ("device_index", c_int32), ("memory_budget", c_uint64), ("vulkan_device", c_void_p),
                ("kv_cache_bytes", c_uint64), ("kv_page_tokens", c_uint32), ("worker_threads", c_int32),
                ("worker_nice", c_int32), ("worker_cpu_mask", c_uint64), ("step_tokens", c_uint32),
                ("precision", c_int32), ("mtp", c_int32), ("mtp_max_batch", c_uint32)]


class ModelInfo(_Mirror):
    _c_name_ = "sibyl_model_info"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("architecture", c_char_p), ("backend", c_char_p),
                ("vocab_size", c_int32), ("hidden_size", c_int32), ("n_layers", c_int32),
                ("n_dense_layers", c_int32), ("n_heads", c_int32), ("q_lora_rank", c_int32),
                ("kv_lora_rank", c_int32), ("qk_rope_head_dim", c_int32), ("n_routed_experts", c_int32),
                ("n_shared_experts", c_int32), ("n_experts_per_token", c_int32),
                ("max_position_embeddings", c_int32), ("bos_token_id", c_int32), ("eos_token_id", c_int32),
                ("n_parameters", c_uint64), ("kv_bytes_per_token", c_uint64), ("kv_cache_bytes", c_uint64),
                ("kv_page_tokens", c_uint32), ("worker_threads", c_int32), ("kv_cache_bytes_used", c_uint64),
                ("precision", c_int32), ("cpu_simd", c_char_p), ("decode_weight_bytes", c_uint64),
                ("mtp_layers", c_int32), ("mtp", c_int32)]


class SessionOptions(_Mirror):
    _c_name_ = "sibyl_session_options"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("max_context", c_uint32), ("seed", c_uint64)]


class LogitBias(_Mirror):
    _c_name_ = "sibyl_logit_bias"
    _fields_ = [("token", c_int32), ("bias", c_float)]


class SamplerOptions(_Mirror):
    _c_name_ = "sibyl_sampler_options"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("temperature", c_float), ("top_k", c_int32), ("top_p", c_float),
                ("min_p", c_float), ("repetition_penalty", c_float), ("repetition_last_n", c_int32),
                ("logit_bias", POINTER(LogitBias)), ("n_logit_bias", c_size_t)]


class GenerateOptions(_Mirror):
    _c_name_ = "sibyl_generate_options"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("max_new_tokens", c_uint32), ("stop_at_eos", c_int32),
                ("reseed", c_int32), ("seed", c_uint64), ("sampler", POINTER(SamplerOptions)),
                ("grammar", c_void_p)]


class ChatMessage(_Mirror):
    _c_name_ = "sibyl_chat_message"
    _fields_ = [("role", c_char_p), ("content", c_char_p), ("content_len", c_size_t)]


class Tool(_Mirror):
    _c_name_ = "sibyl_tool"
    _fields_ = [("name", c_char_p), ("description", c_char_p), ("parameters", c_char_p)]


class ToolCall(_Mirror):
    _c_name_ = "sibyl_tool_call"
    _fields_ = [("message", c_size_t), ("name", c_char_p), ("arguments", c_char_p)]


class ChatOptions(_Mirror):
    _c_name_ = "sibyl_chat_options"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("max_new_tokens", c_uint32), ("think_budget", c_int32),
                ("thinking", c_int32), ("stop_strings", POINTER(c_char_p)), ("n_stop_strings", c_size_t),
                ("sampler", POINTER(SamplerOptions)), ("reseed", c_int32), ("seed", c_uint64),
                ("trusted", POINTER(c_int32)), ("grammar", c_void_p), ("grammar_scope", c_int32),
                ("tools", POINTER(Tool)), ("n_tools", c_size_t), ("tool_choice", c_int32),
                ("tool_name", c_char_p), ("tool_calls", POINTER(ToolCall)), ("n_tool_calls", c_size_t),
                ("on_tool_call", ToolCallFn)]


class ChatResult(_Mirror):
    _c_name_ = "sibyl_chat_result"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("stop_reason", c_int32), ("prompt_tokens", c_uint32),
                ("reused_tokens", c_uint32), ("reasoning_tokens", c_uint32), ("answer_tokens", c_uint32),
                ("generated_tokens", c_uint32), ("reserved", c_uint32), ("first_token_us", c_uint64),
                ("total_us", c_uint64), ("drafted_tokens", c_uint32), ("accepted_drafts", c_uint32),
                ("tool_calls", c_uint32), ("reserved2", c_uint32)]


class Event(_Mirror):
    _c_name_ = "sibyl_event"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("type", c_int32), ("token", c_int32), ("channel", c_int32),
                ("text", c_void_p), ("text_len", c_size_t), ("stop_reason", c_int32), ("status", c_int32),
                ("name", c_void_p), ("name_len", c_size_t)]


EventFn = CFUNCTYPE(None, POINTER(Event), c_void_p)


class RequestOptions(_Mirror):
    _c_name_ = "sibyl_request_options"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("on_event", EventFn), ("user_data", c_void_p)]


class StepReport(_Mirror):
    _c_name_ = "sibyl_step_report"
    _growable_ = True
    _fields_ = [("struct_size", c_uint32), ("rows", c_uint32), ("sequences", c_uint32), ("pending", c_uint32),
                ("elapsed_us", c_uint64), ("overrun", c_int32)]


MIRRORS = (VulkanDevice, ModelOptions, ModelInfo, SessionOptions, LogitBias, SamplerOptions, GenerateOptions,
           ChatMessage, Tool, ToolCall, ChatOptions, ChatResult, Event, RequestOptions, StepReport)


def library_fields(lib, name: str) -> list:
    """The field names of struct `name` in the library's declaration order."""
    out = []
    while True:
        field = lib.sibyl_struct_field(name.encode(), len(out))
        if field is None:
            return out
        out.append(field.decode())


def check_layout(lib, cls, name: str | None = None, exact: bool = True) -> None:
    """Compare the ctypes mirror `cls` with the library's layout of C struct `name`.

    Every field of the mirror must exist in the library at the same offset and in the same
    order. With `exact` the sizes and field lists must be equal; otherwise (a library of a
    later minor version, whose growable structs may have more fields at the end) the mirror
    must be a prefix of the library's struct. Raises LayoutError naming each difference.
    """
    name = name or cls._c_name_
    lib_size = lib.sibyl_struct_size(name.encode())
    if lib_size == 0:
        raise LayoutError("libsibyl has no struct %s (the mirror %s cannot be checked)" % (name, cls.__name__))
    mine = [f[0] for f in cls._fields_]
    theirs = library_fields(lib, name)
    problems = []
    for i, field in enumerate(mine):
        offset = lib.sibyl_struct_offset(name.encode(), field.encode())
        if offset == SIZE_MAX:
            problems.append("field %s is not in the library's struct" % field)
            continue
        if offset != getattr(cls, field).offset:
            problems.append("field %s is at offset %d in the library, %d in the mirror" %
                            (field, offset, getattr(cls, field).offset))
        if i >= len(theirs) or theirs[i] != field:
            problems.append("field %d is %s in the mirror, %s in the library" %
                            (i, field, theirs[i] if i < len(theirs) else "nothing"))
    size = ctypes.sizeof(cls)
    if exact:
        if lib_size != size:
            problems.append("size is %d in the library, %d in the mirror" % (lib_size, size))
        if len(theirs) != len(mine):
            problems.append("the library has %d fields, the mirror %d" % (len(theirs), len(mine)))
    elif lib_size < size:
        problems.append("size is %d in the library, %d in the mirror (larger)" % (lib_size, size))
    if problems:
        raise LayoutError("struct %s: the binding's mirror %s does not match libsibyl: %s" %
                          (name, cls.__name__, "; ".join(problems)))


def check_layouts(lib, abi_minor: int) -> None:
    """Check every mirror. Structs that begin with struct_size may have grown in a library of
    a later minor version; the others (array elements) never change."""
    for cls in MIRRORS:
        check_layout(lib, cls, exact=(abi_minor == ABI_MINOR or not cls._growable_))


# ---------------------------------------------------------------- prototypes

_p = c_void_p  # opaque handles
_pp = POINTER(c_void_p)
_sz = POINTER(c_size_t)

PROTOTYPES = {
    "sibyl_abi_version": (c_uint32, []),
    "sibyl_version_string": (c_char_p, []),
    "sibyl_status_string": (c_char_p, [c_int32]),
    "sibyl_last_error_message": (c_char_p, []),
    "sibyl_set_log_callback": (None, [LogFn, c_void_p, c_int32]),
    "sibyl_struct_size": (c_size_t, [c_char_p]),
    "sibyl_struct_offset": (c_size_t, [c_char_p, c_char_p]),
    "sibyl_struct_name": (c_char_p, [c_size_t]),
    "sibyl_struct_field": (c_char_p, [c_char_p, c_size_t]),
    # model
    "sibyl_model_options_init": (None, [c_void_p]),
    "sibyl_model_load": (c_int32, [c_char_p, POINTER(ModelOptions), _pp]),
    "sibyl_default_model_path": (c_int32, [c_char_p, c_size_t, _sz]),
    "sibyl_model_destroy": (None, [_p]),
    "sibyl_model_get_info": (c_int32, [_p, POINTER(ModelInfo)]),
    "sibyl_model_step": (c_int32, [_p, c_uint64, POINTER(StepReport)]),
    # session
    "sibyl_session_options_init": (None, [c_void_p]),
    "sibyl_session_create": (c_int32, [_p, POINTER(SessionOptions), _pp]),
    "sibyl_session_destroy": (None, [_p]),
    "sibyl_session_fork": (c_int32, [_p, _pp]),
    "sibyl_session_append": (c_int32, [_p, POINTER(c_int32), c_size_t, c_int32]),
    "sibyl_session_logits": (c_int32, [_p, POINTER(POINTER(c_float)), _sz, _sz]),
    "sibyl_session_position": (c_int32, [_p, _sz]),
    "sibyl_session_mtp_stats": (c_int32, [_p, POINTER(c_uint64), POINTER(c_uint64)]),
    "sibyl_session_save_state": (c_int32, [_p, c_void_p, c_size_t, _sz]),
    "sibyl_session_load_state": (c_int32, [_p, c_char_p, c_size_t]),
    "sibyl_session_rewind": (c_int32, [_p, c_size_t]),
    "sibyl_session_reset": (c_int32, [_p]),
    "sibyl_session_set_seed": (c_int32, [_p, c_uint64]),
    "sibyl_session_cancel": (c_int32, [_p]),
    # grammar
    "sibyl_grammar_from_gbnf": (c_int32, [c_char_p, c_char_p, _pp]),
    "sibyl_grammar_from_json_schema": (c_int32, [c_char_p, _pp]),
    "sibyl_json_schema_to_gbnf": (c_int32, [c_char_p, c_char_p, c_size_t, _sz]),
    "sibyl_grammar_destroy": (None, [_p]),
    "sibyl_grammar_prepare": (c_int32, [_p, _p, c_int32]),
    # sampling and generation
    "sibyl_sampler_options_init": (None, [c_void_p]),
    "sibyl_session_sample": (c_int32, [_p, POINTER(SamplerOptions), POINTER(c_int32)]),
    "sibyl_generate_options_init": (None, [c_void_p]),
    "sibyl_session_generate": (c_int32, [_p, POINTER(c_int32), c_size_t, POINTER(GenerateOptions), TokenFn,
                                         c_void_p, _sz]),
    # text
    "sibyl_model_tokenize": (c_int32, [_p, c_char_p, c_size_t, POINTER(c_int32), c_size_t, _sz]),
    "sibyl_model_detokenize": (c_int32, [_p, POINTER(c_int32), c_size_t, c_char_p, c_size_t, _sz]),
    "sibyl_model_token_bytes": (c_int32, [_p, c_int32, c_char_p, c_size_t, _sz]),
    "sibyl_model_render_chat": (c_int32, [_p, POINTER(ChatMessage), c_size_t, c_int, c_char_p, c_size_t, _sz]),
    "sibyl_model_render_chat_ex": (c_int32, [_p, POINTER(ChatMessage), c_size_t, POINTER(ChatOptions), c_int,
                                             c_char_p, c_size_t, _sz]),
    # chat
    "sibyl_chat_options_init": (None, [c_void_p]),
    "sibyl_session_chat": (c_int32, [_p, POINTER(ChatMessage), c_size_t, POINTER(ChatOptions), TextFn, c_void_p,
                                     POINTER(ChatResult)]),
    # requests
    "sibyl_request_options_init": (None, [c_void_p]),
    "sibyl_session_submit_chat": (c_int32, [_p, POINTER(ChatMessage), c_size_t, POINTER(ChatOptions),
                                            POINTER(RequestOptions), _pp]),
    "sibyl_session_submit_generate": (c_int32, [_p, POINTER(c_int32), c_size_t, POINTER(GenerateOptions),
                                                POINTER(RequestOptions), _pp]),
    "sibyl_request_poll": (c_int32, [_p, POINTER(Event)]),
    "sibyl_request_wait": (c_int32, [_p, c_int64, POINTER(c_int)]),
    "sibyl_request_cancel": (c_int32, [_p]),
    "sibyl_request_result": (c_int32, [_p, POINTER(ChatResult)]),
    "sibyl_request_destroy": (None, [_p]),
}


def bind(lib) -> None:
    """Set argtypes/restype of every function; raises IncompatibleLibraryError for a missing one."""
    missing = []
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            missing.append(name)
            continue
        fn.restype = restype
        fn.argtypes = argtypes
    if missing:
        raise IncompatibleLibraryError("libsibyl lacks " + ", ".join(missing))


def open_library():
    """Load, version-check, bind and layout-check libsibyl. Returns (lib, path, abi_version)."""
    lib, path = load_library()
    try:
        version_fn = lib.sibyl_abi_version
    except AttributeError:
        raise IncompatibleLibraryError("%s is not libsibyl (no sibyl_abi_version)" % path) from None
    version_fn.restype = c_uint32
    version_fn.argtypes = []
    abi = version_fn()
    major, minor = abi // 10000, abi // 100 % 100
    if major != ABI_MAJOR or minor < ABI_MINOR:
        raise IncompatibleLibraryError(
            "%s has ABI version %d.%d.%d; this binding needs %d.x with x >= %d" %
            (path, major, minor, abi % 100, ABI_MAJOR, ABI_MINOR))
    bind(lib)
    check_layouts(lib, minor)
    return lib, path, abi


def new_struct(lib, cls):
    """An options struct filled by its _init function. The memory is as large as the library's
    struct (which may have grown in a later minor version), and struct_size says which version
    this binding fills in, so the library uses its defaults for fields the binding does not know."""
    init = getattr(lib, cls._c_name_ + "_init")
    size = max(lib.sibyl_struct_size(cls._c_name_.encode()), ctypes.sizeof(cls))
    buf = (ctypes.c_char * size)()
    init(buf)
    s = cls.from_buffer(buf)
    s.struct_size = ctypes.sizeof(cls)
    return s


def output_struct(cls):
    s = cls()
    s.struct_size = ctypes.sizeof(cls)
    return s

