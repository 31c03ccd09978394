"""Damaged files: open refuses, or the background check / check() pinpoints the damage.

The spool never repairs: once damage is seen, appends raise SpoolCorrupt and
``integrity`` says ``corrupt``, with the file and the seq or page named.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from spool import Spool, SpoolCorrupt
from tests.fixtures.spool import TERMINAL_ID, make_request
from tests.spool.factory import tamper as _tamper


def _build(path: Path, n: int, pad: int = 0) -> None:
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        for i in range(n):
            sp.append(make_request(f"k{i}", i, extra={"note": "x" * pad} if pad else None))
    assert not Path(f"{path}-wal").exists() or Path(f"{path}-wal").stat().st_size == 0




def _wait_integrity(sp: Spool) -> str:
    deadline = time.monotonic() + 20
    while sp.integrity == "checking" and time.monotonic() < deadline:
        time.sleep(0.01)
    return sp.integrity


def test_garbled_header_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _build(path, 5)
    with path.open("r+b") as fh:
        fh.write(b"\xde\xad" * 50)
    with pytest.raises(SpoolCorrupt, match=r"s\.db"):
        Spool.open(path, TERMINAL_ID)


def test_garbled_page_is_found_and_stops_appends(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _build(path, 400, pad=300)
    conn = sqlite3.connect(path)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    page_count = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    victim = page_count // 3  # a page in the middle of the records, far from the tail
    with path.open("r+b") as fh:
        fh.seek((victim - 1) * page_size + 8)
        fh.write(b"\xff" * (page_size - 16))
    try:
        sp = Spool.open(path, TERMINAL_ID)
    except SpoolCorrupt as exc:
        assert "s.db" in str(exc)
        return
    with sp:
        assert _wait_integrity(sp) == "corrupt"
        assert sp.integrity_error is not None and "s.db" in sp.integrity_error
        with pytest.raises(SpoolCorrupt):
            sp.append(make_request("after"))
        report = sp.check()
        assert not report.ok
        assert any("page" in p.lower() for p in report.problems), report.problems


def test_edited_record_in_the_middle_is_pinpointed_by_check(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _build(path, 200)
    _tamper(path, "UPDATE records SET payload = json_set(payload, '$.total_fen', 99999) WHERE seq = 11")
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:  # the tail is intact
        report = sp.check()
        assert not report.ok
        assert report.problems == ["seq 11: hash does not match the record's content",
                                   "seq 11: stored total_fen or business_date does not match the record's content"]
        assert sp.integrity == "corrupt"
        with pytest.raises(SpoolCorrupt, match="seq 11"):
            sp.append(make_request("after"))


def test_edited_amount_column_is_pinpointed_by_check(tmp_path: Path) -> None:
    """The indexed amount is outside the hash; pending totals and offline limits read it."""
    path = tmp_path / "s.db"
    _build(path, 50)
    _tamper(path, "UPDATE records SET total_fen = 1 WHERE seq = 7")
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        report = sp.check()
        assert report.problems[0] == "seq 7: stored total_fen or business_date does not match the record's content"
        # The per-status totals were kept from the true amount: they no longer add up either.
        assert report.problems[1:] == ["status_totals (pending, settlement, outage=0) does not match the records"]


def test_edited_tail_record_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _build(path, 30)
    _tamper(path, "UPDATE records SET business_time = '2026-11-24T10:15:00+08:00' WHERE seq = 29")
    with pytest.raises(SpoolCorrupt, match="seq 29"):
        Spool.open(path, TERMINAL_ID)


def test_deleted_record_is_a_gap_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _build(path, 30)
    _tamper(path, "DELETE FROM history WHERE seq = 3", "DELETE FROM records WHERE seq = 3")
    with pytest.raises(SpoolCorrupt, match="gapless"):
        Spool.open(path, TERMINAL_ID)


def _copy_while_open(path: Path, n: int, dest: Path) -> None:
    """What a crash leaves: the main file, the WAL holding the last commits, the witness."""
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        for i in range(n):
            sp.append(make_request(f"k{i}"))
        dest.mkdir()
        for suffix in ("", "-wal", "-seq"):
            shutil.copyfile(f"{path}{suffix}", f"{dest / path.name}{suffix}")


def test_truncated_wal_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    crashed = tmp_path / "crashed"
    _copy_while_open(path, 50, crashed)
    wal = crashed / "s.db-wal"
    assert wal.stat().st_size > 4096
    with wal.open("r+b") as fh:
        fh.truncate(wal.stat().st_size // 2)
    with pytest.raises(SpoolCorrupt, match="acknowledged") as info:
        Spool.open(crashed / "s.db", TERMINAL_ID)
    assert "seq 50" in str(info.value)


def test_untouched_crash_copy_opens_with_everything(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    crashed = tmp_path / "crashed"
    _copy_while_open(path, 50, crashed)
    with Spool.open(crashed / "s.db", TERMINAL_ID, background_check=False) as sp:
        assert sp.stats().last_seq == 50 and sp.check().ok


def test_without_the_witness_a_truncated_wal_still_leaves_a_valid_prefix(tmp_path: Path) -> None:
    # Documented limit: without the -seq file only central's cursor can tell a lost tail.
    path = tmp_path / "s.db"
    crashed = tmp_path / "crashed"
    _copy_while_open(path, 50, crashed)
    (crashed / "s.db-seq").unlink()
    wal = crashed / "s.db-wal"
    with wal.open("r+b") as fh:
        fh.truncate(wal.stat().st_size // 2)
    with Spool.open(crashed / "s.db", TERMINAL_ID, background_check=False) as sp:
        report = sp.check()
        assert report.ok and 0 <= report.records < 50
