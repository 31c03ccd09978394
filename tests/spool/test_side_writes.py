"""Other namespaces write through the spool's one writer (`Spool.write`, `write_later`); the
writer keeps the pending summary in memory (`Spool.pending_summary`).

The writer is held on a gate (a write whose function waits) so that what is queued meanwhile
is served as one batch: which jobs share a commit is then decided, not raced.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from spool import AppendResult, Outcome, Spool, SpoolError
from spool.store import connect, migrate
from tests.spool.factory import TERMINAL_ID, make_request

SIDE = ["CREATE TABLE side (id INTEGER PRIMARY KEY, note TEXT NOT NULL UNIQUE)"]
WAIT_S = 20.0


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    path = tmp_path / "spool.db"
    opened = Spool.open(path, TERMINAL_ID, background_check=False)
    conn = connect(path)
    try:
        migrate(conn, "side", SIDE)  # at open, as every namespace does
    finally:
        conn.close()
    try:
        yield opened
    finally:
        opened.close()


class Gate:
    """Holds the writer thread inside a write until released."""

    def __init__(self, spool: Spool) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()

        def hold(conn: sqlite3.Connection) -> None:
            self.entered.set()
            assert self.release.wait(WAIT_S)

        spool.write_later(hold, lambda result, error: self.done.set())
        assert self.entered.wait(WAIT_S)

    def open(self) -> None:
        self.release.set()
        assert self.done.wait(WAIT_S)


class Results:
    """Callbacks of write_later / append_later, collected; `wait(n)` until n came."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.items: dict[str, tuple[Any, BaseException | None]] = {}
        self.threads: set[str] = set()

    def callback(self, name: str) -> Callable[[Any, BaseException | None], None]:
        def done(result: Any, error: BaseException | None) -> None:
            with self._cond:
                self.items[name] = (result, error)
                self.threads.add(threading.current_thread().name)
                self._cond.notify_all()
        return done

    def wait(self, count: int) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: len(self.items) >= count, WAIT_S), self.items


def insert(note: str, then: Callable[[], None] | None = None) -> Callable[[sqlite3.Connection], int]:
    def fn(conn: sqlite3.Connection) -> int:
        rowid = int(conn.execute("INSERT INTO side (note) VALUES (?)", (note,)).lastrowid or 0)
        if then is not None:
            then()
        return rowid
    return fn


def notes(spool: Spool) -> list[str]:
    conn = connect(spool.path, readonly=True)
    try:
        return [str(r[0]) for r in conn.execute("SELECT note FROM side ORDER BY id")]
    finally:
        conn.close()


def test_writes_and_appends_queued_together_share_one_commit(spool: Spool) -> None:
    gate = Gate(spool)
    before = spool.commits
    results = Results()
    for i in range(8):
        spool.append_later(make_request(f"k{i}"), results.callback(f"append {i}"))
        spool.write_later(insert(f"note {i}"), results.callback(f"write {i}"))
    gate.open()
    results.wait(16)
    assert spool.commits == before + 2  # the gate's own, then everything queued behind it: one fsync
    assert all(error is None for _, error in results.items.values()), results.items
    assert all(isinstance(results.items[f"append {i}"][0], AppendResult) for i in range(8))
    assert notes(spool) == [f"note {i}" for i in range(8)]  # in the order queued
    assert results.threads == {"spool-writer"}
    assert spool.stats().last_seq == 8


def test_a_write_that_raises_is_undone_alone(spool: Spool) -> None:
    gate = Gate(spool)
    results = Results()

    def boom() -> None:
        raise ValueError("the caller's own error")

    spool.write_later(insert("first"), results.callback("first"))
    spool.write_later(insert("second", then=boom), results.callback("second"))
    spool.write_later(insert("first"), results.callback("duplicate"))  # UNIQUE: SQLite refuses it
    spool.append_later(make_request("k"), results.callback("append"))
    spool.write_later(insert("third"), results.callback("third"))
    gate.open()
    results.wait(5)
    assert notes(spool) == ["first", "third"]
    error = results.items["second"][1]
    assert isinstance(error, ValueError) and str(error) == "the caller's own error"  # as raised
    duplicate = results.items["duplicate"][1]
    assert isinstance(duplicate, SpoolError) and "UNIQUE" in str(duplicate)  # mapped, never sqlite3.Error
    assert results.items["append"][1] is None and spool.stats().last_seq == 1
    assert results.items["first"][1] is None and results.items["third"][1] is None


def test_write_blocks_until_durable_and_returns_the_result(spool: Spool) -> None:
    rowid = spool.write(insert("one"))
    assert rowid == 1 and notes(spool) == ["one"]
    with pytest.raises(SpoolError, match="UNIQUE"):
        spool.write(insert("one"))
    missing: dict[str, int] = {}
    with pytest.raises(KeyError):
        spool.write(lambda conn: missing["key"])
    assert notes(spool) == ["one"]


def test_write_on_the_writer_thread_is_refused_not_a_deadlock(spool: Spool) -> None:
    results = Results()

    def nested(result: Any, error: BaseException | None) -> None:
        try:
            spool.write(insert("nested"))
        except SpoolError as exc:
            results.callback("nested")(None, exc)

    spool.write_later(insert("outer"), nested)
    results.wait(1)
    assert "write_later" in str(results.items["nested"][1])
    assert notes(spool) == ["outer"]


def test_a_closed_spool_refuses_writes(spool: Spool) -> None:
    spool.close()
    with pytest.raises(SpoolError):
        spool.write(insert("late"))
    with pytest.raises(SpoolError):
        spool.write_later(insert("late"))


def _summary(spool: Spool) -> tuple[int, int, int | None]:
    s = spool.pending_summary()
    return s.last_seq, s.pending, s.oldest_pending_seq


def _counted(spool: Spool) -> tuple[int, int, int | None]:
    """The same three facts, queried."""
    first = spool.backlog(0, 1)
    stats = spool.stats()
    return stats.last_seq, stats.pending, first[0].seq if first else None


def test_pending_summary_follows_every_change_without_a_query(spool: Spool) -> None:
    assert _summary(spool) == (0, 0, None)
    for i in range(3):
        spool.append(make_request(f"k{i}"))
    assert _summary(spool) == _counted(spool) == (3, 3, 1)
    spool.append(make_request("k0"))  # a repeat: nothing new
    assert _summary(spool) == (3, 3, 1)
    spool.apply_outcomes([Outcome(1, "settled", {"fund_paid_fen": 0})])
    assert _summary(spool) == _counted(spool) == (3, 2, 2)
    spool.apply_outcomes([Outcome(3, "rejected", {"code": "card_frozen", "message": "x"})])
    assert _summary(spool) == _counted(spool) == (3, 1, 2)
    spool.apply_outcomes([Outcome(2, "settled", {"fund_paid_fen": 0})])
    assert _summary(spool) == _counted(spool) == (3, 0, None)
    spool.append(make_request("k3"))
    assert _summary(spool) == _counted(spool) == (4, 1, 4)
    spool.write(insert("a side write changes no record"))
    assert _summary(spool) == (4, 1, 4)


def test_pending_summary_catches_up_with_another_handle(spool: Spool) -> None:
    spool.append(make_request("mine"))
    other = Spool.open(spool.path, TERMINAL_ID, background_check=False)  # a CLI next to the daemon
    try:
        assert _summary(other) == (1, 1, 1)  # read at open
        other.append(make_request("theirs-1"))
        other.append(make_request("theirs-2"))
        other.apply_outcomes([Outcome(1, "settled", {"fund_paid_fen": 0})])
    finally:
        other.close()
    assert _summary(spool) == (1, 1, 1)  # stale until this handle commits again...
    spool.append(make_request("mine-2"))  # ...its append finds a tail it did not write
    assert _summary(spool) == _counted(spool) == (4, 3, 2)
    spool.write(insert("side"))
    assert _summary(spool) == (4, 3, 2)


def test_opened_names_the_first_open_handle_until_it_closes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    assert Spool.opened(path) is None
    first = Spool.open(path, TERMINAL_ID, background_check=False)
    second = Spool.open(path, TERMINAL_ID, background_check=False)
    try:
        assert Spool.opened(path) is first
        assert Spool.opened(tmp_path / "." / "s.db") is first
        second.close()
        assert Spool.opened(path) is first
    finally:
        first.close()
    assert Spool.opened(path) is None
