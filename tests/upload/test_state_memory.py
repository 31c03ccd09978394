"""UploadState on a spool: memory answers, the spool's writer thread writes, in order.

Writes are queued (`Spool.write_later`); a blocking `Spool.write` queued after them returns
only once they are committed (the writer serves its queue in order), which is how these tests
wait for the disk without sleeping.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from spool import Spool
from terminald.upload.state import UploadState
from tests.sqltrace import SqlTrace
from tests.upload.helpers import TID


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool.open(tmp_path / "spool.db", TID, background_check=False)
    yield s
    s.close()


def settle(spool: Spool) -> None:
    """Every write queued before now is committed."""
    spool.write(lambda conn: None)


def on_disk(spool: Spool) -> tuple[dict[str, str], set[str], list[tuple[str, str | None, str]]]:
    conn = sqlite3.connect(spool.path)
    try:
        values = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM upload_state")}
        cards = {str(r[0]) for r in conn.execute("SELECT card_number FROM upload_frozen_cards")}
        outages = [(str(r[0]), r[1], str(r[2])) for r in
                   conn.execute("SELECT started_at, ended_at, checked_at FROM upload_outages ORDER BY id")]
    finally:
        conn.close()
    return values, cards, outages


@pytest.fixture
def trace(monkeypatch: pytest.MonkeyPatch) -> SqlTrace:
    return SqlTrace().install(monkeypatch)  # before the spool opens its writer's connection


def test_reads_come_from_memory_and_writes_from_the_writer_thread(trace: SqlTrace, spool: Spool) -> None:
    state = UploadState(spool)
    trace.clear()
    state.ack(5)
    state.ack(3)  # never goes down
    state.replace_frozen(2, ("A1", "A2", "A3"))
    state.change_frozen(3, ("B1",), ("A2",))
    state.set_notice_downtime([{"start": "s", "end": "e", "reason": "r"}])
    state.begin_outage("t1", "connect_failed", planned=False)
    state.touch_outage("t2")
    state.end_outage("t3")
    # Answered at once, before any of it is on disk.
    assert state.acked_seq == 5
    assert state.frozen() == (3, {"A1", "A3", "B1"})
    assert state.notice_downtime() == [{"start": "s", "end": "e", "reason": "r"}]
    settle(spool)
    statements = trace.statements(spool.path)
    assert statements and {s.thread for s in statements} == {"spool-writer"}  # nothing on this thread
    values, cards, outages = on_disk(spool)
    assert values["acked_seq"] == "5" and values["frozen_version"] == "3"
    assert cards == {"A1", "A3", "B1"}
    assert outages == [("t1", "t3", "t3")]
    state.close()
    # A restart reads it all back.
    again = UploadState(spool)
    assert (again.acked_seq, again.frozen()) == (5, (3, {"A1", "A3", "B1"}))
    assert again.open_outage() is None
    again.begin_outage("t4", "timeout", planned=True)
    settle(spool)
    assert UploadState(spool).open_outage() == {"id": 2, "started_at": "t4", "checked_at": "t4",
                                                "cause": "timeout", "planned": True}


def test_a_write_the_disk_refuses_is_logged_and_the_whole_list_written_next(
        spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    state = UploadState(spool)
    state.replace_frozen(1, ("A1",))
    settle(spool)
    refuse = sqlite3.connect(spool.path)
    refuse.execute("CREATE TRIGGER refuse BEFORE INSERT ON upload_frozen_cards"
                   " BEGIN SELECT RAISE(ABORT, 'injected: disk refuses'); END")
    refuse.close()
    caplog.set_level(logging.ERROR, logger="terminald.upload")
    state.change_frozen(2, ("B1",), ())
    settle(spool)
    assert state.write_failures == 1 and "injected: disk refuses" in caplog.text
    assert state.frozen() == (2, {"A1", "B1"})  # memory keeps it
    assert on_disk(spool)[1] == {"A1"} and on_disk(spool)[0]["frozen_version"] == "1"  # undone whole
    lift = sqlite3.connect(spool.path)
    lift.execute("DROP TRIGGER refuse")
    lift.close()
    state.change_frozen(3, ("C1",), ("A1",))  # the lost change is written with this one
    settle(spool)
    values, cards, _ = on_disk(spool)
    assert cards == {"B1", "C1"} and values["frozen_version"] == "3"


def test_made_with_a_path_it_writes_at_once_on_its_own_connection(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool.open(path, TID).close()
    state = UploadState(path)
    state.ack(7)
    state.begin_outage("t1", "timeout", planned=False)
    state.close()
    again = UploadState(path)
    try:
        assert again.acked_seq == 7 and again.open_outage() is not None
    finally:
        again.close()
