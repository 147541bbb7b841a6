"""Ownership of the C handles, the base of Model, Session, Request and Grammar.

Every object owns one C handle, destroyed by close(), by leaving its `with` block, when it is
garbage-collected, or at interpreter exit. A handle is never destroyed while a call of this
binding uses it (a close() from another thread, or from a callback of that call, waits for the
call to end; a Session's close() cancels what runs on it first). A Session keeps its Model
object alive and a Request its Session, so dropping references never ends work early; an
explicit Model.close() with live sessions follows the C ABI: their calls then raise
ModelDestroyedError and their running requests end with that status.
"""
from __future__ import annotations

import threading
import weakref

from .errors import ClosedError, Status


class _Handle:
    """One C handle, destroyed exactly once and never while a call of this binding uses it."""
    __slots__ = ("ptr", "_destroy", "_what", "_lock", "_uses", "_closing", "_on_busy_close", "_after")

    def __init__(self, ptr, destroy, what: str, on_busy_close=None, after=None):
        self.ptr = ptr
        self._destroy = destroy
        self._what = what
        self._lock = threading.Lock()
        self._uses = 0
        self._closing = False
        self._on_busy_close = on_busy_close
        self._after = after

    @property
    def closed(self) -> bool:
        return self.ptr is None or self._closing

    def acquire(self):
        with self._lock:
            if self.ptr is None or self._closing:
                raise ClosedError("the %s is closed" % self._what, Status.INVALID_ARGUMENT)
            self._uses += 1
            return self.ptr

    def release(self) -> None:
        with self._lock:
            self._uses -= 1
            if not (self._closing and self._uses == 0 and self.ptr is not None):
                return
            ptr, self.ptr = self.ptr, None
        self._finish(ptr)

    def close(self) -> None:
        with self._lock:
            if self.ptr is None or self._closing:
                return
            self._closing = True
            if self._uses:
                # A call is running: the last one to end destroys the handle. Under the lock,
                # so the handle is still alive while we ask what runs on it to stop.
                if self._on_busy_close is not None:
                    self._on_busy_close(self.ptr)
                return
            ptr, self.ptr = self.ptr, None
        self._finish(ptr)

    def _finish(self, ptr) -> None:
        try:
            self._destroy(ptr)
        finally:
            if self._after is not None:
                self._after()


class _Owner:
    """Base of the classes that own a handle: close(), `closed`, context manager."""
    _h: _Handle

    def close(self) -> None:
        """Destroy the C object now (idempotent)."""
        h = getattr(self, "_h", None)
        if h is not None:
            h.close()

    @property
    def closed(self) -> bool:
        return self._h.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _finalize(owner: _Owner) -> None:
    """Destroy owner's handle when it is garbage-collected, or at interpreter exit (finalizers
    run newest first there: requests before their sessions before their models)."""
    weakref.finalize(owner, owner._h.close)
