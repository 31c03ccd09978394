"""The WAL backstop (docs/spool.md, "WAL checkpoints"): a WAL past its limit is emptied.

A reader holding an old snapshot keeps every checkpoint from finishing, so the
WAL grows. The Checkpointer thread then runs ``wal_checkpoint(TRUNCATE)`` with
a short busy wait, reads its result row, and retries while it comes back
busy. These tests run a real spool on a real file with a small limit.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from itertools import count
from pathlib import Path

import pytest

import spool.checkpointer as checkpointer
from spool import Spool
from tests.fixtures.spool import TERMINAL_ID, make_request
from tests.waiting import wait_for

LIMIT = 512 * 1024  # a real append writes ~26 KB of WAL: the limit is passed within 20 appends
_keys = count()


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(checkpointer, "WAL_LIMIT_BYTES", LIMIT)
    return LIMIT


@pytest.fixture
def sp(tmp_path: Path, small_limit: int) -> Iterator[Spool]:
    opened = Spool.open(tmp_path / "s.db", TERMINAL_ID, background_check=False)
    try:
        yield opened
    finally:
        opened.close()


def _wal_bytes(sp: Spool) -> int:
    try:
        return os.stat(f"{sp.path}-wal").st_size
    except FileNotFoundError:
        return 0


def _append(sp: Spool, n: int = 1) -> float:
    """Append n records; return the longest time one append took."""
    longest = 0.0
    for _ in range(n):
        started = time.monotonic()
        sp.append(make_request(f"k{next(_keys)}"))
        longest = max(longest, time.monotonic() - started)
    return longest


def _hold_snapshot(sp: Spool) -> sqlite3.Connection:
    """A reader in the middle of a read transaction: its snapshot pins the WAL."""
    reader = sqlite3.connect(sp.path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM records").fetchone()[0] > 0
    return reader


@pytest.mark.parametrize("then", ["appending", "idle"])
def test_a_wal_held_by_a_reader_is_truncated_once_the_reader_lets_go(sp: Spool, then: str) -> None:
    _append(sp, 20)
    reader = _hold_snapshot(sp)
    _append(sp, 300)  # three hints to the Checkpointer, all while the snapshot is held
    assert _wal_bytes(sp) > 4 * LIMIT  # nothing could be copied past the reader's snapshot
    main_before = sp.path.stat().st_size
    reader.execute("ROLLBACK")
    reader.close()

    # The WAL file is brought back under the limit: under steady appends (one per poll) by the
    # writer after a commit, with no append by the Checkpointer itself. The old backstop's
    # RESTART, when it got through at all, left the file at its full size.
    def truncated() -> bool:
        if then == "appending":
            _append(sp)
        return _wal_bytes(sp) <= LIMIT

    wait_for(truncated, what="the WAL truncated under its limit")
    assert sp.path.stat().st_size > main_before  # the records are in the main file now
    assert sp.check().ok


def test_a_reader_that_never_lets_go_costs_appends_a_short_wait_and_a_warning(
    sp: Spool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="spool.checkpointer")
    _append(sp, 20)
    reader = _hold_snapshot(sp)
    try:
        # Each attempt holds the write lock for the bounded busy wait (200 ms), not for the
        # connection's 10 s busy timeout as the restart on the writer thread did.
        for _ in range(300):
            assert _append(sp) < 1.5, "an append waited behind the WAL backstop"
        warning = wait_for(
            lambda: next((r for r in caplog.records if "could not be truncated" in r.getMessage()), None),
            what="a warning that the WAL could not be truncated",
        )
        size = int(warning.getMessage().split(" is ")[1].split(" bytes")[0])
        assert size > LIMIT  # the warning gives the WAL's size
        assert _wal_bytes(sp) > LIMIT  # and the WAL really could not be emptied meanwhile
    finally:
        reader.execute("ROLLBACK")
        reader.close()
    wait_for(lambda: _append(sp) is not None and _wal_bytes(sp) <= LIMIT, what="the WAL truncated after all")


def test_saturating_appenders_and_overlapping_readers_do_not_keep_the_wal_over_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the power-cut rig saw grow to 115 MB: appends that never pause, readers that always overlap.

    The limit is above what the WAL holds between two checkpoint hints, so only a WAL pinned
    past it must be truncated. The writer never leaves the write lock free for long here: a
    backstop that has to win that lock from it (the checkpoint thread's, say) comes back busy.
    """
    limit = 8 * 1024 * 1024
    monkeypatch.setattr(checkpointer, "WAL_LIMIT_BYTES", limit)
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                while not stop.is_set():
                    fn()
            except BaseException as exc:
                errors.append(exc)

        return run

    with Spool.open(tmp_path / "s.db", TERMINAL_ID, background_check=False) as sp:
        _append(sp, 20)
        readers = [sqlite3.connect(sp.path, isolation_level=None, check_same_thread=False) for _ in range(2)]

        def overlapping_snapshot(conn: sqlite3.Connection) -> Callable[[], None]:
            def read() -> None:  # another process's reads, in short transactions
                conn.execute("BEGIN")
                conn.execute("SELECT COUNT(*) FROM records").fetchone()
                time.sleep(0.005)
                conn.execute("COMMIT")

            return read

        def append() -> None:
            _append(sp)

        def pooled_read() -> None:  # the daemon's own reads, through the spool's reader pool
            sp.stats()

        threads = [*(threading.Thread(target=guarded(append)) for _ in range(4)),
                   threading.Thread(target=guarded(pooled_read))]
        pinned = _hold_snapshot(sp)
        for thread in threads:
            thread.start()
        try:
            wait_for(lambda: _wal_bytes(sp) > limit, what="the pinned WAL past its limit")
            pinned.execute("ROLLBACK")
            pinned.close()
            threads += [threading.Thread(target=guarded(overlapping_snapshot(conn))) for conn in readers]
            for thread in threads[-2:]:
                thread.start()
            wait_for(lambda: _wal_bytes(sp) <= limit or errors, what="the WAL back under its limit under load")
        finally:
            stop.set()
            for thread in threads:
                thread.join()
            for conn in readers:
                conn.close()
        assert not errors
        assert sp.check().ok
