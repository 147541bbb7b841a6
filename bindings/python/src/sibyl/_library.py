"""libsibyl, loaded once at import: the handle every module calls through, how a call's status
and text output are read, and the library-wide functions (versions, status names, the default
model's path)."""
from __future__ import annotations

import ctypes
import os
from ctypes import byref, c_size_t

from . import _native as N
from .errors import make_error

# Found, version-checked and layout-checked once, when sibyl is imported (ImportError if not).
_lib, library_path, _abi = N.open_library()

_OK = 0
_BUFFER_TOO_SMALL = 13


def _message() -> str:
    raw = _lib.sibyl_last_error_message()
    return raw.decode("utf-8", "replace") if raw else ""


def _check(status: int) -> None:
    if status != _OK:
        raise make_error(status, _message())


def _text_out(fn, *args) -> bytes:
    """The two-call output rule of the text functions: ask for the size, then fill."""
    n = c_size_t(0)
    capacity = 256
    for _ in range(4):
        buf = ctypes.create_string_buffer(capacity)
        st = fn(*args, buf, capacity, byref(n))
        if st == _OK:
            return buf.raw[:n.value]
        if st != _BUFFER_TOO_SMALL:
            _check(st)
        capacity = n.value + 1
    _check(st)
    return b""  # not reached


def abi_version() -> int:
    """The library's ABI version: major * 10000 + minor * 100 + patch."""
    return _lib.sibyl_abi_version()


def library_version() -> str:
    """The library's version string, e.g. "0.8.0"."""
    return _lib.sibyl_version_string().decode()


def status_string(status: int) -> str:
    """The library's short English name of a status."""
    return _lib.sibyl_status_string(int(status)).decode()


def default_model_path() -> str:
    """The directory of the default model (docs/C_API.md); IoError naming the places searched."""
    return os.fsdecode(_text_out(_lib.sibyl_default_model_path))
