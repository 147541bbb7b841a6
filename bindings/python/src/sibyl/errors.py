"""Sibyl's status codes as exceptions: one SibylError subclass per status."""
from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """sibyl_status: what a call of the C ABI returned."""
    OK = 0
    INVALID_ARGUMENT = 1
    STRUCT_SIZE = 2
    IO = 3
    FORMAT = 4
    UNSUPPORTED = 5
    OUT_OF_MEMORY = 6
    INVALID_TOKEN = 7
    CONTEXT_FULL = 8
    MODEL_DESTROYED = 9
    NO_LOGITS = 10
    BACKEND = 11
    INTERNAL = 12
    BUFFER_TOO_SMALL = 13
    BUSY = 14


class SibylError(Exception):
    """A call into libsibyl failed. `status` is the Status (an int for a code this binding does
    not know), `message` the library's message (sibyl_last_error_message)."""

    status = None

    def __init__(self, message: str, status=None):
        super().__init__(message)
        if status is not None:
            self.status = status
        self.message = message

    def __str__(self) -> str:
        name = self.status.name.lower() if isinstance(self.status, Status) else "status %s" % self.status
        return "%s: %s" % (name, self.message) if self.message else name


class InvalidArgumentError(SibylError):
    status = Status.INVALID_ARGUMENT


class ClosedError(InvalidArgumentError):
    """The Model, Session, Request or Grammar was closed (the library never sees the call)."""


class StructSizeError(SibylError):
    status = Status.STRUCT_SIZE


class IoError(SibylError):
    """A file is missing or cannot be read (status IO)."""
    status = Status.IO


class FormatError(SibylError):
    status = Status.FORMAT


class UnsupportedError(SibylError):
    status = Status.UNSUPPORTED


class OutOfMemoryError(SibylError):
    status = Status.OUT_OF_MEMORY


class InvalidTokenError(SibylError):
    status = Status.INVALID_TOKEN


class ContextFullError(SibylError):
    status = Status.CONTEXT_FULL


class ModelDestroyedError(SibylError):
    """The session's model was closed."""
    status = Status.MODEL_DESTROYED


class NoLogitsError(SibylError):
    status = Status.NO_LOGITS


class BackendError(SibylError):
    status = Status.BACKEND


class InternalError(SibylError):
    status = Status.INTERNAL


class BufferTooSmallError(SibylError):
    status = Status.BUFFER_TOO_SMALL


class BusyError(SibylError):
    """The session is in use by another call or by an unfinished request (SIBYL_ERR_BUSY)."""
    status = Status.BUSY


_BY_STATUS = {cls.status: cls for cls in (
    InvalidArgumentError, StructSizeError, IoError, FormatError, UnsupportedError, OutOfMemoryError,
    InvalidTokenError, ContextFullError, ModelDestroyedError, NoLogitsError, BackendError, InternalError,
    BufferTooSmallError, BusyError)}


def error_class(status: int) -> type:
    """The SibylError subclass of a status (SibylError itself for an unknown one)."""
    return _BY_STATUS.get(status, SibylError)


def make_error(status: int, message: str) -> SibylError:
    try:
        status = Status(status)
    except ValueError:
        pass
    return error_class(status)(message, status)
