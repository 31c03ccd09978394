"""What callers put on the writer's queue, and how each gets its answer back.

A blocking caller waits on a plain lock (a cheaper wake-up than an Event); a
callback caller (``Spool.append_later``) is called on the writer thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from spool.errors import SpoolError
from spool.records import AppendRequest, AppendResult

__all__ = ["AppendDone", "AppendJob", "CallJob", "CallbackAppendJob", "Job"]

log = logging.getLogger("spool.writer")
T = TypeVar("T")

AppendDone = Callable[[AppendResult | None, SpoolError | None], None]


class Job(Generic[T]):
    """One caller waiting for the writer; a plain lock is a cheaper wake-up than an Event."""

    def __init__(self) -> None:
        self._waiter = threading.Lock()
        self._waiter.acquire()
        self._result: T | None = None
        self._error: BaseException | None = None

    def finish(self, result: T) -> None:
        self._result = result
        self._waiter.release()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._waiter.release()

    def wait(self) -> T:
        self._waiter.acquire()
        if self._error is not None:
            raise self._error
        return self._result  # type: ignore[return-value]


class AppendJob(Job[AppendResult]):
    def __init__(self, req: AppendRequest, payload_json: str) -> None:
        super().__init__()
        self.req = req
        self.payload_json = payload_json


class CallbackAppendJob(AppendJob):
    """An append whose caller is called back on the writer thread instead of blocking."""

    def __init__(self, req: AppendRequest, payload_json: str, on_done: AppendDone) -> None:
        super().__init__(req, payload_json)
        self._on_done = on_done

    def finish(self, result: AppendResult) -> None:
        self._call(result, None)

    def fail(self, error: BaseException) -> None:
        self._call(None, error if isinstance(error, SpoolError) else SpoolError(f"append failed: {error!r}"))

    def _call(self, result: AppendResult | None, error: SpoolError | None) -> None:
        try:
            self._on_done(result, error)
        except Exception:  # the caller's bug must not stop the writer serving the others
            log.exception("spool append callback failed")


class CallJob(Job[Any]):
    def __init__(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        super().__init__()
        self.fn = fn
