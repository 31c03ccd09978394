"""Spool appends awaited on the event loop, without a thread per append.

`asyncio.to_thread(spool.append)` parks an executor thread on every append and
wakes the loop once per append: under load most of the daemon's time went to
handing the GIL between those threads. Here the spool's writer thread calls
back when a group commit is durable, and all the outcomes of that commit reach
the loop in one wake-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

from spool import AppendRequest, AppendResult, Spool, SpoolError, SpoolIOError

# A commit takes milliseconds; one that has not come back in this long is a hung disk. The
# caller gets an answer (503, retry with the same key) instead of a request that never ends.
TIMEOUT_S = 30.0


class LoopAppender:
    def __init__(self, spool: Spool, loop: asyncio.AbstractEventLoop, timeout_s: float = TIMEOUT_S) -> None:
        self._spool = spool
        self._loop = loop
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._ready: list[tuple[asyncio.Future[AppendResult], AppendResult | None, SpoolError | None]] = []
        self._wake_pending = False

    async def append(self, req: AppendRequest) -> AppendResult:
        """Like `Spool.append`: the record once it is durable, or the spool's typed error.

        After `timeout_s` without an answer, SpoolIOError: the append's fate is unknown (it may
        still commit), which a retry with the same idempotency key settles.
        """
        future: asyncio.Future[AppendResult] = self._loop.create_future()

        def done(result: AppendResult | None, error: SpoolError | None) -> None:
            self._done(future, result, error)

        self._spool.append_later(req, done)
        # A cancelled caller (client gone) cancels only the wait: the append is queued and
        # becomes durable all the same, and its answer is dropped.
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            raise SpoolIOError(f"the spool did not confirm the append within {self._timeout_s:g} s; "
                               "retry with the same idempotency key") from None

    def _done(self, future: asyncio.Future[AppendResult], result: AppendResult | None,
              error: SpoolError | None) -> None:
        """On the writer thread: queue the outcome; wake the loop only if it is not woken yet."""
        with self._lock:
            self._ready.append((future, result, error))
            if self._wake_pending:
                return
            self._wake_pending = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            ready, self._ready = self._ready, []
            self._wake_pending = False
        for future, result, error in ready:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)  # type: ignore[arg-type]
