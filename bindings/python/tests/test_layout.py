"""The struct mirrors are checked against the library's own layout at import, and the check
refuses a mirror that disagrees (fake structs that are wrong in each way it can be)."""
import ctypes
from ctypes import c_int32, c_size_t, c_uint32, c_uint64, c_void_p

import pytest

import sibyl
from sibyl import _native
from sibyl._library import _lib


def test_every_mirror_matches_the_library():
    _native.check_layouts(_lib, sibyl.abi_version() // 100 % 100)
    for cls in _native.MIRRORS:
        _native.check_layout(_lib, cls)


def test_every_public_struct_of_the_library_has_a_mirror():
    names = []
    while True:
        name = _lib.sibyl_struct_name(len(names))
        if name is None:
            break
        names.append(name.decode())
    assert sorted(names) == sorted(cls._c_name_ for cls in _native.MIRRORS)


class GoodEvent(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("type", c_int32), ("token", c_int32), ("channel", c_int32),
                ("text", c_void_p), ("text_len", c_size_t), ("stop_reason", c_int32), ("status", c_int32),
                ("name", c_void_p), ("name_len", c_size_t)]


class SwappedEvent(ctypes.Structure):  # two fields in the wrong order
    _fields_ = [("struct_size", c_uint32), ("token", c_int32), ("type", c_int32), ("channel", c_int32),
                ("text", c_void_p), ("text_len", c_size_t), ("stop_reason", c_int32), ("status", c_int32),
                ("name", c_void_p), ("name_len", c_size_t)]


class WideEvent(ctypes.Structure):  # a field of the wrong width moves every later one
    _fields_ = [("struct_size", c_uint32), ("type", c_uint64), ("token", c_int32), ("channel", c_int32),
                ("text", c_void_p), ("text_len", c_size_t), ("stop_reason", c_int32), ("status", c_int32),
                ("name", c_void_p), ("name_len", c_size_t)]


class ShortEvent(ctypes.Structure):  # the 0.3 version: no name
    _fields_ = GoodEvent._fields_[:8]


class MisnamedEvent(ctypes.Structure):
    _fields_ = [("struct_size", c_uint32), ("kind", c_int32)] + GoodEvent._fields_[2:]


def test_a_correct_fake_passes():
    _native.check_layout(_lib, GoodEvent, "sibyl_event")


@pytest.mark.parametrize("fake, words", [
    (SwappedEvent, ["type", "token", "offset"]),
    (WideEvent, ["offset", "size"]),
    (MisnamedEvent, ["kind", "not in the library"]),
    (ShortEvent, ["size"]),
])
def test_a_wrong_mirror_is_refused(fake, words):
    with pytest.raises(sibyl.LayoutError) as e:
        _native.check_layout(_lib, fake, "sibyl_event")
    assert isinstance(e.value, ImportError)
    for word in words:
        assert word in str(e.value)


def test_a_shorter_mirror_passes_only_as_a_prefix_of_a_newer_library():
    _native.check_layout(_lib, ShortEvent, "sibyl_event", exact=False)
    with pytest.raises(sibyl.LayoutError):
        _native.check_layout(_lib, SwappedEvent, "sibyl_event", exact=False)


def test_an_unknown_struct_is_refused():
    with pytest.raises(sibyl.LayoutError, match="no struct"):
        _native.check_layout(_lib, GoodEvent, "sibyl_no_such_struct")


def test_options_structs_are_as_large_as_the_library_says():
    for cls in _native.MIRRORS:
        if hasattr(_lib, cls._c_name_ + "_init"):
            s = _native.new_struct(_lib, cls)
            assert s.struct_size == ctypes.sizeof(cls)
            assert ctypes.sizeof(cls) == _lib.sibyl_struct_size(cls._c_name_.encode())
