"""Checked conversions between Python values and what the C functions take or return: text to
UTF-8 bytes and back, token id arrays, ranged integers, enum names."""
from __future__ import annotations

import array
import ctypes
import enum
from ctypes import c_int32


def _text_bytes(value, what: str) -> bytes:
    """UTF-8 bytes of a str (lone surrogates from surrogateescape decoding turn back into the
    bytes they stand for, so the library judges them) or of a bytes-like object."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError("%s must be str or bytes, not %s" % (what, type(value).__name__))


def _name_bytes(value, what: str) -> bytes:
    b = _text_bytes(value, what)
    if b"\0" in b:
        raise ValueError("%s must not contain NUL characters" % what)
    return b


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def _string(ptr, length) -> str:
    return _decode(ctypes.string_at(ptr, length)) if length else ""


def _tokens_array(tokens, what: str = "tokens"):
    """(ctypes int32 array or None, count, keep-alive) of a sequence of token ids."""
    if isinstance(tokens, (str, bytes)):
        raise TypeError("%s must be a sequence of token ids, not %s" % (what, type(tokens).__name__))
    arr = array.array("i", tokens)
    if arr.itemsize != 4:  # pragma: no cover - C int is 32-bit on every supported platform
        arr = array.array("l", tokens)
    n = len(arr)
    if n == 0:
        return None, 0, arr
    return (c_int32 * n).from_buffer(arr), n, arr


def _uint(value, bits: int, what: str) -> int:
    v = int(value)
    if not 0 <= v < (1 << bits):
        raise ValueError("%s must be in [0, 2**%d), not %r" % (what, bits, value))
    return v


def _int(value, bits: int, what: str) -> int:
    v = int(value)
    if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        raise ValueError("%s is out of the int%d range: %r" % (what, bits, value))
    return v


def _enum_value(table: dict, value, what: str) -> int:
    if isinstance(value, str):
        key = value.lower()
        if key not in table:
            raise ValueError("%s must be one of %s, not %r" % (what, ", ".join(sorted(table)), value))
        return table[key]
    if isinstance(value, enum.Enum):
        value = value.value
    return _int(value, 32, what)
