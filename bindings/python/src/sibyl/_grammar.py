"""Grammars for constrained decoding: Grammar, and json_schema_to_gbnf to see what a JSON Schema
compiles to."""
from __future__ import annotations

import json
from ctypes import byref, c_void_p
from typing import TYPE_CHECKING

from ._convert import _decode, _enum_value, _name_bytes
from ._enums import _SCOPES
from ._handles import _Handle, _Owner, _finalize
from ._library import _check, _lib, _text_out

if TYPE_CHECKING:  # only for prepare()'s annotation: at run time _model imports this module (through _args)
    from ._model import Model


def _schema_text(schema) -> bytes:
    if isinstance(schema, (dict, list, bool)):
        schema = json.dumps(schema)
    return _name_bytes(schema, "schema")


def json_schema_to_gbnf(schema) -> str:
    """The GBNF a JSON Schema (a dict or its JSON text) compiles to."""
    return _decode(_text_out(_lib.sibyl_json_schema_to_gbnf, _schema_text(schema)))


class Grammar(_Owner):
    """A compiled grammar for constrained decoding; usable by any number of chats, generations,
    sessions and models at once. Build it with from_json_schema or from_gbnf."""

    def __init__(self, _ptr=None):
        if _ptr is None:
            raise TypeError("use Grammar.from_json_schema(schema) or Grammar.from_gbnf(text)")
        self._h = _Handle(_ptr, _lib.sibyl_grammar_destroy, "grammar")
        _finalize(self)

    @classmethod
    def from_json_schema(cls, schema) -> "Grammar":
        """From a JSON Schema: a dict (or list/bool) or its JSON text."""
        out = c_void_p()
        _check(_lib.sibyl_grammar_from_json_schema(_schema_text(schema), byref(out)))
        return cls(out.value)

    @classmethod
    def from_gbnf(cls, gbnf, root=None) -> "Grammar":
        """From GBNF text (llama.cpp's grammar format); `root` names the start rule ("root")."""
        out = c_void_p()
        _check(_lib.sibyl_grammar_from_gbnf(_name_bytes(gbnf, "gbnf"),
                                            None if root is None else _name_bytes(root, "root"), byref(out)))
        return cls(out.value)

    def prepare(self, model: "Model", scope: str = "answer") -> None:
        """Compute the grammar's token masks for `model` now rather than during replies."""
        g = self._h.acquire()
        try:
            m = model._h.acquire()
            try:
                _check(_lib.sibyl_grammar_prepare(g, m, _enum_value(_SCOPES, scope, "scope")))
            finally:
                model._h.release()
        finally:
            self._h.release()
