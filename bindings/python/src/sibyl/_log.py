"""Routing the library's log messages to a Python function (set_log_callback), and back to the
library's default (stderr) at interpreter exit."""
from __future__ import annotations

import atexit

from . import _native as N
from ._convert import _decode, _enum_value
from ._enums import _LOG_LEVEL_NAMES, _LOG_LEVELS
from ._library import _lib


_log_function = None


@N.LogFn
def _log_trampoline(level, message, _user_data):
    fn = _log_function
    if fn is None:
        return
    try:
        name = _LOG_LEVEL_NAMES[level] if 0 <= level < len(_LOG_LEVEL_NAMES) else level
        fn(name, _decode(message or b""))
    except BaseException:
        pass


def set_log_callback(fn, level: str = "warn") -> None:
    """Route the library's log messages of `level` and above ("debug", "info", "warn", "error",
    "off") to fn(level_name, message), which may be called from any thread, several at once.
    fn None restores the default: warnings and errors to stderr."""
    global _log_function
    if fn is None:
        _log_function = None
        _lib.sibyl_set_log_callback(N.LogFn(), None, 2)
        return
    if not callable(fn):
        raise TypeError("fn must be callable or None")
    _log_function = fn
    _lib.sibyl_set_log_callback(_log_trampoline, None, _enum_value(_LOG_LEVELS, level, "level"))


@atexit.register
def _restore_default_log():  # runs after every handle's finalizer (registered first)
    global _log_function
    if _log_function is not None:
        _log_function = None
        _lib.sibyl_set_log_callback(N.LogFn(), None, 2)
