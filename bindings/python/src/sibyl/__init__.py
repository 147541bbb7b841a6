"""Sibyl: embed a DeepSeek-architecture reasoning model, from Python.

A pure-Python binding over libsibyl's C ABI (ctypes). The library is found through
$SIBYL_LIBRARY (the path of libsibyl.so), else a libsibyl.so* inside this package, else the
system loader; docs/PYTHON.md has the whole guide.

    import sibyl
    model = sibyl.Model()                 # the embedded default model; sibyl.Model(path) for any file
    session = model.session(seed=0)
    reply = session.chat([{"role": "user", "content": "What is 347 + 589?"}], max_new_tokens=256)
    print(reply.reasoning, reply.answer, reply.stop_reason)
"""
from ._native import ABI_MAJOR, ABI_MINOR, IncompatibleLibraryError, LayoutError, LibraryNotFoundError
from ._library import abi_version, default_model_path, library_path, library_version, status_string  # loads libsibyl
from ._enums import ANSWER, REASONING, StopReason
from ._records import ChatReply, Event, GenerateReply, ModelInfo, StepReport, ToolCall
from ._log import set_log_callback
from ._grammar import Grammar, json_schema_to_gbnf
from ._model import Model
from ._session import Session
from ._request import Request
from ._stream import ChatStream
from .errors import (BackendError, BufferTooSmallError, BusyError, ClosedError, ContextFullError, FormatError,
                     InternalError, InvalidArgumentError, InvalidTokenError, IoError, ModelDestroyedError,
                     NoLogitsError, OutOfMemoryError, SibylError, Status, StructSizeError, UnsupportedError,
                     error_class)

__version__ = "0.8.0"

__all__ = [
    "ABI_MAJOR", "ABI_MINOR", "ANSWER", "REASONING",
    "BackendError", "BufferTooSmallError", "BusyError", "ChatReply", "ChatStream", "ClosedError",
    "ContextFullError", "Event", "FormatError", "GenerateReply", "Grammar", "IncompatibleLibraryError",
    "InternalError", "InvalidArgumentError", "InvalidTokenError", "IoError", "LayoutError",
    "LibraryNotFoundError", "Model", "ModelDestroyedError", "ModelInfo", "NoLogitsError", "OutOfMemoryError",
    "Request", "Session", "SibylError", "Status", "StepReport", "StopReason", "StructSizeError", "ToolCall",
    "UnsupportedError", "abi_version", "default_model_path", "error_class", "json_schema_to_gbnf",
    "library_path", "library_version", "set_log_callback", "status_string",
]
