"""`Spool.open_readonly`: reads a spool without creating, migrating or changing anything."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from spool import Outcome, Spool, SpoolClosed, SpoolError
from spool.schema import NAMESPACE, STEPS
from spool.store import connect, migrate, schema_version
from tests.spool.factory import TERMINAL_ID, make_request


def listing(directory: Path) -> dict[str, tuple[int, int, int, int, int]]:
    """Every file of `directory` (and the directory itself, as "."): size, mtime, mode, owner, group."""
    entries = {".": directory.stat()} | {p.name: p.stat() for p in directory.iterdir()}
    return {name: (st.st_size, st.st_mtime_ns, st.st_mode, st.st_uid, st.st_gid) for name, st in entries.items()}


def _spool(directory: Path, records: int = 3) -> Path:
    path = directory / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as spool:
        for n in range(records):
            spool.append(make_request(f"k{n}", 1000 + n))
        spool.apply_outcomes([Outcome(1, "settled", {"fund_paid_fen": 600, "account_paid_fen": 400})])
    return path


def test_reads_everything_and_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = _spool(state)
    before = listing(state)
    assert not {"spool.db-wal", "spool.db-shm", "spool.db.lock"} & before.keys()

    with Spool.open_readonly(path, TERMINAL_ID) as spool:
        assert spool.readonly and spool.integrity == "ok"
        assert [r.seq for r in spool.records()] == [1, 2, 3]
        first, second = spool.get_seq(1), spool.get_seq(2)
        assert first is not None and second is not None and spool.get(second.record_id) == second
        assert [t.status for t in spool.history(first.record_id)][-1] == "settled"
        assert spool.stats().pending == 2
        assert spool.totals("2026-11-23").count == 1
        assert spool.search(idempotency_key="k2")[0].seq == 3
        assert spool.check().ok
        out = tmp_path / "out"
        out.mkdir()
        assert spool.export(out / "all.jsonl") == 3
        assert listing(state) == before  # nothing created beside the file, nothing changed
    assert listing(state) == before


@pytest.mark.parametrize(("call", "args"), [
    ("append", (make_request("k9"),)),
    ("apply_outcomes", ([Outcome(2, "settled", {})],)),
    ("resolve", ("x", "voided")),
    ("mark_outage", ("x", "upstream_unreachable")),
    ("refund", ("x", 100, {"id": "op"})),
    ("prune", (1,)),
    ("write", (lambda conn: None,)),
    ("write_later", (lambda conn: None,)),
    ("pending_summary", ()),
])
def test_every_write_is_refused(tmp_path: Path, call: str, args: tuple[Any, ...]) -> None:
    path = _spool(tmp_path)
    before = listing(tmp_path)
    with Spool.open_readonly(path, TERMINAL_ID) as spool:
        with pytest.raises(SpoolClosed, match="read-only"):
            getattr(spool, call)(*args)
        assert spool.stats().pending == 2
    assert listing(tmp_path) == before


def test_beside_a_writer_it_sees_new_commits(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as writer:
        writer.append(make_request("a"))
        names = set(os.listdir(tmp_path))
        with Spool.open_readonly(path, TERMINAL_ID) as reader:
            assert [r.seq for r in reader.records()] == [1]
            writer.append(make_request("b"))
            assert [r.seq for r in reader.records()] == [1, 2]
            assert reader.check().ok
        assert set(os.listdir(tmp_path)) == names


def test_an_older_schema_is_not_migrated(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    conn = connect(path)
    migrate(conn, NAMESPACE, STEPS[:-1])
    conn.close()
    before = listing(tmp_path)
    with pytest.raises(SpoolError, match=rf"step {len(STEPS) - 1}, this version of terminald knows {len(STEPS)}: "
                                         r"start terminald"):
        Spool.open_readonly(path, TERMINAL_ID)
    assert listing(tmp_path) == before
    check = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        assert schema_version(check, NAMESPACE) == len(STEPS) - 1
    finally:
        check.close()


def test_another_terminals_spool_and_no_spool_are_refused(tmp_path: Path) -> None:
    path = _spool(tmp_path)
    with pytest.raises(SpoolError, match="holds the spool of terminal 'T0001', not 'T0002'"):
        Spool.open_readonly(path, "T0002")
    with pytest.raises(SpoolError, match="no spool at"):
        Spool.open_readonly(tmp_path / "nothing.db", TERMINAL_ID)
    assert not (tmp_path / "nothing.db").exists()


def test_a_wal_without_its_shm_is_refused_not_recreated(tmp_path: Path) -> None:
    """A crash's -wal whose -shm is gone cannot be read without creating one: refused, in words."""
    path = _spool(tmp_path)
    writer = connect(path)
    try:
        writer.execute("PRAGMA wal_autocheckpoint = 0")
        writer.execute("CREATE TABLE side (x)")  # a commit that stays in the -wal
        copy = tmp_path / "copy"
        copy.mkdir()
        shutil.copy(path, copy / "spool.db")
        shutil.copy(tmp_path / "spool.db-wal", copy / "spool.db-wal")
    finally:
        writer.close()
    assert (copy / "spool.db-wal").stat().st_size > 0
    before = listing(copy)
    with pytest.raises(SpoolError, match=r"spool\.db-shm is missing"):
        Spool.open_readonly(copy / "spool.db", TERMINAL_ID)
    assert listing(copy) == before
