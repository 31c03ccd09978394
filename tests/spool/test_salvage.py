"""`spool salvage`: a damaged spool's readable records go into a fresh one; SRC is never written.

Each corruption is made the way tests/spool/test_corruption.py makes it (same helpers). For
each: SRC's directory is byte-for-byte and mtime-for-mtime what it was (no -shm, -wal or -seq
appears beside it); DEST opens with ``Spool.open`` and passes ``check()``; the report names
exactly the lost seqs and the break; what follows the break is in the side file.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from spool import GENESIS_HASH, InvalidRequest, Outcome, Record, Spool, canonical_json, connect, migrate, record_hash
from spool.restored import mark_in
from spool.salvage import LostRange, SalvageReport, after_break_path, salvage
from spool.schema import NAMESPACE, STEPS
from terminald.upload.state import UploadState
from tests.fixtures.spool import TERMINAL_ID, make_request
from tests.spool.test_corruption import _build, _copy_while_open, _tamper

HASH_MISMATCH = "hash does not match the record's content"


def _files(directory: Path) -> dict[str, tuple[str, int]]:
    return {p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(directory.iterdir())}


def _salvage(src: Path, tmp_path: Path, terminal_id: str | None = None) -> tuple[SalvageReport, Path]:
    """Salvage into a directory of its own; SRC's directory must come out exactly as it went in."""
    out = tmp_path / "salvaged"
    out.mkdir(exist_ok=True)
    dest = out / "spool.db"
    before = _files(src.parent)
    report = salvage(src, dest, terminal_id)
    assert _files(src.parent) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # the work directory is gone
    return report, dest


def _reopen(dest: Path) -> list[Record]:
    """DEST as the daemon would open it: opens, verifies, and holds these records."""
    with Spool.open(dest, TERMINAL_ID, background_check=False) as sp:
        check = sp.check()
        assert check.ok, check.problems
        return sp.records(limit=1000)


def _wires(path: Path) -> dict[int, dict[str, Any]]:
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        return {r.seq: r.wire() for r in sp.records(limit=1000)}


def _side(dest: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in after_break_path(dest).read_text(encoding="utf-8").splitlines()]


def _broken(report: SalvageReport, at: int, copied: int, after: int, last: int) -> None:
    assert (report.broken_at, report.copied, report.last_seq) == (at, copied, copied or None)
    assert report.after_break == after
    assert report.after_break_seqs == ((last - after + 1, last) if after else None)
    assert report.dest_check.ok, report.dest_check.problems
    assert not report.complete


# -- a whole spool ------------------------------------------------------------------------------------


def test_a_clean_spool_is_copied_whole_with_its_state_history_and_uploader_tables(tmp_path: Path) -> None:
    src = tmp_path / "src" / "spool.db"
    with Spool.open(src, TERMINAL_ID, background_check=False) as sp:
        online = [sp.append(make_request(f"k{i}", 1000 + i)).record for i in range(6)]
        outage = [sp.append(make_request(f"o{i}", 3000, offline=True, offline_reason="upstream_unreachable")).record
                  for i in range(3)]
        sp.apply_outcomes([
            Outcome(online[0].seq, "settled", {"fund_paid_fen": 600, "account_paid_fen": 100, "cash_paid_fen": 300}),
            Outcome(online[1].seq, "rejected", {"code": "card_frozen", "message": "frozen"}),
            Outcome(outage[0].seq, "settled", {"fund_paid_fen": 2000, "account_paid_fen": 500, "cash_paid_fen": 500}),
        ])
        sp.resolve(online[1].record_id, "self_pay", note="paid cash")
        sp.refund(outage[0].record_id, 2500, {"id": "op1", "name": "王芳"})
        expected = {r.seq: (r, sp.history(r.record_id)) for r in sp.records(limit=100)}
        stats = sp.stats()
    state = UploadState(src)
    state.ack(4)
    state.close()

    report, dest = _salvage(src, tmp_path)

    assert report.complete
    assert (report.copied, report.first_seq, report.last_seq) == (9, 1, 9)
    assert (report.lost, report.broken_at, report.after_break, report.after_break_file) == ((), None, 0, None)
    assert report.acked_seq == 4 and report.after_break_held == 0
    assert "upload_state" in report.side_tables and "upload_outages" in report.side_tables
    assert report.damaged == () and report.dest_check.ok
    assert "immutable" in report.read_from
    assert not after_break_path(dest).exists()
    with Spool.open(dest, TERMINAL_ID, background_check=False) as sp:
        assert sp.check().ok
        got = {r.seq: (r, sp.history(r.record_id)) for r in sp.records(limit=100)}
        assert got == expected  # status, outcome, resolution, outage, refund, history: all of it
        assert sp.stats() == stats  # status_totals kept by the triggers
    copied = UploadState(dest)
    try:
        assert copied.acked_seq == 4
    finally:
        copied.close()


def test_a_pruned_spool_continues_from_its_checkpoint(tmp_path: Path) -> None:
    src = tmp_path / "src" / "spool.db"
    with Spool.open(src, TERMINAL_ID, background_check=False) as sp:
        for i in range(12):
            sp.append(make_request(f"k{i}"))
        sp.apply_outcomes([Outcome(seq, "settled", {"fund_paid_fen": 0}) for seq in range(1, 9)])
        assert sp.prune(0, now=datetime.now(UTC) + timedelta(days=1)) == 8
    report, dest = _salvage(src, tmp_path)
    assert report.complete
    assert (report.chain_start, report.copied, report.first_seq, report.last_seq) == (8, 4, 9, 12)
    assert [r.seq for r in _reopen(dest)] == [9, 10, 11, 12]


def test_the_mark_of_a_spool_restored_from_the_mirror_goes_along(tmp_path: Path) -> None:
    """The nhsa adapter holds a restored spool's pending records until staff checked them with the
    platform (spool/restored.py): a salvage of that spool must not release them."""
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 30)
    with Spool.open(src, TERMINAL_ID, background_check=False) as sp:
        sp.write(lambda conn: mark_in(conn, "mirror", 20, 20))
        marker = sp.restored_from()
    assert marker is not None and (marker.last_seq, marker.pending) == (20, 20)
    _tamper(src, "UPDATE records SET payload = json_set(payload, '$.total_fen', 99999) WHERE seq = 25")

    report, dest = _salvage(src, tmp_path)

    _broken(report, at=25, copied=24, after=6, last=30)
    with Spool.open(dest, TERMINAL_ID, background_check=False) as sp:
        assert sp.restored_from() == marker  # as it was: source, time, last seq, pending
    with Spool.open_readonly(dest, TERMINAL_ID) as sp:
        assert sp.restored_from() == marker

    # One never restored (or acknowledged since) gets no mark.
    plain = tmp_path / "plain" / "s.db"
    plain.parent.mkdir()
    _build(plain, 3)
    (tmp_path / "second").mkdir()
    report, dest = _salvage(plain, tmp_path / "second")
    assert report.complete
    with Spool.open_readonly(dest, TERMINAL_ID) as sp:
        assert sp.restored_from() is None


def test_an_untouched_crash_copy_is_copied_whole_with_what_only_its_wal_holds(tmp_path: Path) -> None:
    crashed = tmp_path / "crashed"
    _copy_while_open(tmp_path / "s.db", 50, crashed)
    report, dest = _salvage(crashed / "s.db", tmp_path)
    assert report.complete
    assert report.copied == 50 and report.witness_seq == 50
    assert "WAL" in report.read_from  # read from a private copy of SRC and its WAL
    assert [r.seq for r in _reopen(dest)] == list(range(1, 51))


def test_a_garbled_header_is_rebuilt_in_a_private_copy(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 5)
    wires = _wires(src)
    with src.open("r+b") as fh:  # as test_garbled_header_is_refused_at_open
        fh.write(b"\xde\xad" * 50)
    report, dest = _salvage(src, tmp_path)
    assert report.complete and report.copied == 5
    assert "header rebuilt" in report.read_from
    assert {r.seq: r.wire() for r in _reopen(dest)} == wires


def test_an_older_schema_is_copied_at_its_step_then_migrated_like_an_upgrade(tmp_path: Path) -> None:
    """A step-2 file: DEST gets the later steps' columns derived as `Spool.open` would derive them."""
    src = tmp_path / "src" / "spool.db"
    src.parent.mkdir()
    conn = connect(src)
    migrate(conn, NAMESPACE, STEPS[:2])
    conn.execute("INSERT INTO meta (key, value) VALUES ('terminal_id', ?)", (TERMINAL_ID,))
    prev = GENESIS_HASH
    for seq, offline in ((1, False), (2, True)):
        req = make_request(f"k{seq}", 1000 * seq, offline=offline,
                           offline_reason="upstream_unreachable" if offline else None)
        wire = {"record_id": f"01900000-0000-7000-8000-{seq:012d}", "seq": seq, "terminal_id": TERMINAL_ID,
                "kind": req.kind, "business_time": req.business_time, "spooled_at": "2026-11-23T10:15:00.000+08:00",
                "offline": offline, "offline_reason": req.offline_reason, "payload": req.payload, "prev_hash": prev}
        prev = record_hash(wire)
        conn.execute(
            "INSERT INTO records (seq, record_id, terminal_id, kind, business_time, business_date, spooled_at,"
            " offline, offline_reason, payload, prev_hash, hash, status, idempotency_key, request_digest,"
            " total_fen, updated_at, updated_epoch) VALUES (?, ?, ?, ?, ?, '2026-11-23', ?, ?, ?, ?, ?, ?,"
            " 'pending', ?, ?, ?, ?, 0)",
            (seq, wire["record_id"], TERMINAL_ID, req.kind, req.business_time, wire["spooled_at"], int(offline),
             req.offline_reason, canonical_json(req.payload).decode(), wire["prev_hash"], prev, req.idempotency_key,
             req.request_digest, 1000 * seq, wire["spooled_at"]))
    conn.close()

    report, dest = _salvage(src, tmp_path)

    assert report.complete and report.copied == 2
    records = _reopen(dest)
    assert [(r.seq, r.outage, r.outage_reason) for r in records] == [(1, None, None),
                                                                     (2, True, "upstream_unreachable")]


# -- damage: the chain stops at the first break, what follows goes to the side file --------------------


def test_an_edited_record_breaks_the_chain_at_its_seq(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 200)
    wires = _wires(src)
    _tamper(src, "UPDATE records SET payload = json_set(payload, '$.total_fen', 99999) WHERE seq = 11")

    report, dest = _salvage(src, tmp_path)

    _broken(report, at=11, copied=10, after=190, last=200)
    assert report.break_reason == f"seq 11: {HASH_MISMATCH}"
    assert report.lost == ()  # every row was readable
    assert [r.wire() for r in _reopen(dest)] == [wires[seq] for seq in range(1, 11)]
    side = _side(dest)
    assert [line["seq"] for line in side] == list(range(11, 201))
    assert side[0]["payload"]["total_fen"] == 99999  # as stored, for whoever sorts it out
    assert side[0]["salvage"] == {"problems": [f"seq 11: {HASH_MISMATCH}"], "links_to_previous": True}
    assert all(line["salvage"] == {"problems": [], "links_to_previous": True} for line in side[1:])
    assert all(line["status"] == "pending" and line["history"] == [] for line in side)


def test_a_deleted_record_is_a_missing_seq(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 30)
    _tamper(src, "DELETE FROM history WHERE seq = 3", "DELETE FROM records WHERE seq = 3")

    report, dest = _salvage(src, tmp_path)

    _broken(report, at=3, copied=2, after=27, last=30)
    assert report.lost == (LostRange(3, 3, "missing"),)
    assert report.break_reason == "seq 3: missing"
    assert [r.seq for r in _reopen(dest)] == [1, 2]
    side = _side(dest)
    assert [line["seq"] for line in side] == list(range(4, 31))
    assert side[0]["salvage"] == {"problems": [], "links_to_previous": None}  # its predecessor is gone
    assert all(line["salvage"]["links_to_previous"] is True for line in side[1:])


def test_a_garbled_page_loses_exactly_the_records_on_it(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 400, pad=300)
    conn = sqlite3.connect(src)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    leaves = [row[0] for row in conn.execute(
        "SELECT pageno FROM dbstat WHERE name = 'records' AND pagetype = 'leaf' ORDER BY pageno")]
    conn.close()
    victim = leaves[len(leaves) // 2]
    page = src.read_bytes()[(victim - 1) * page_size : victim * page_size]
    # The records whose cells are on that page: their payload names their key (k<i> is seq i + 1).
    on_page = sorted(int(k) + 1 for k in re.findall(rb'"idempotency_key":"k(\d+)"', page))
    first, last = on_page[0], on_page[-1]
    assert on_page == list(range(first, last + 1)) and first > 1 and last < 400
    with src.open("r+b") as fh:  # as test_garbled_page_is_found_and_stops_appends
        fh.seek((victim - 1) * page_size + 8)
        fh.write(b"\xff" * (page_size - 16))

    report, dest = _salvage(src, tmp_path)

    _broken(report, at=first, copied=first - 1, after=400 - last, last=400)
    assert report.lost == (LostRange(first, last, "unreadable"),)
    assert [r.seq for r in _reopen(dest)] == list(range(1, first))
    assert [line["seq"] for line in _side(dest)] == list(range(last + 1, 401))


def test_a_truncated_file_loses_its_tail_up_to_what_the_witness_knows(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 400, pad=300)
    conn = sqlite3.connect(src)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with src.open("r+b") as fh:
        fh.truncate(src.stat().st_size * 6 // 10 // page_size * page_size)
    still_there = sorted(int(k) + 1 for k in re.findall(rb'"idempotency_key":"k(\d+)"', src.read_bytes()))
    kept = still_there[-1]
    assert still_there == list(range(1, kept + 1)) and kept < 400

    report, dest = _salvage(src, tmp_path)

    _broken(report, at=kept + 1, copied=kept, after=0, last=400)
    assert report.lost == (LostRange(kept + 1, 400, "unreadable (the -seq witness knows of seq 400)"),)
    assert [r.seq for r in _reopen(dest)] == list(range(1, kept + 1))


def test_a_truncated_wal_loses_the_tail_the_witness_names(tmp_path: Path) -> None:
    crashed = tmp_path / "crashed"
    _copy_while_open(tmp_path / "s.db", 50, crashed)
    intact = tmp_path / "intact"
    shutil.copytree(crashed, intact)
    wal = crashed / "s.db-wal"
    with wal.open("r+b") as fh:  # as test_truncated_wal_is_refused_at_open
        fh.truncate(wal.stat().st_size // 2)

    report, dest = _salvage(crashed / "s.db", tmp_path)

    kept = report.copied
    assert kept < 50  # how much of the WAL survives depends on where the frames were cut
    _broken(report, at=kept + 1, copied=kept, after=0, last=50)
    assert report.lost == (
        LostRange(kept + 1, 50, "missing after the file's last record (the -seq witness knows of seq 50)"),)
    wires = _wires(intact / "s.db")
    assert [r.wire() for r in _reopen(dest)] == [wires[seq] for seq in range(1, kept + 1)]


def test_a_malformed_row_is_kept_aside_as_stored(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 20)
    _tamper(src, "UPDATE records SET payload = 'not json' WHERE seq = 5")

    report, dest = _salvage(src, tmp_path)

    _broken(report, at=5, copied=4, after=16, last=20)
    assert report.break_reason == "seq 5: record is malformed (payload unreadable)"
    assert report.lost == ()
    assert [r.seq for r in _reopen(dest)] == [1, 2, 3, 4]
    side = _side(dest)
    assert side[0]["seq"] == 5 and side[0]["malformed"]["payload"] == "not json"
    assert side[1]["seq"] == 6 and side[1]["salvage"] == {"problems": [], "links_to_previous": True}


def test_an_edited_tail_record_breaks_the_chain_near_the_end(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 30)
    _tamper(src, "UPDATE records SET business_time = '2026-11-24T10:15:00+08:00' WHERE seq = 29")
    report, dest = _salvage(src, tmp_path)
    _broken(report, at=29, copied=28, after=2, last=30)
    assert report.break_reason == f"seq 29: {HASH_MISMATCH}"
    assert [line["seq"] for line in _side(dest)] == [29, 30]


def test_an_edited_amount_column_is_recomputed_and_loses_nothing(tmp_path: Path) -> None:
    """The indexed amount is outside the hash: DEST takes the record's own, and says so."""
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 50)
    _tamper(src, "UPDATE records SET total_fen = 1 WHERE seq = 7")
    report, dest = _salvage(src, tmp_path)
    assert report.complete and report.copied == 50
    assert report.notes == (
        "seq 7: stored total_fen/business_date did not match the record; DEST has the record's own",)
    _reopen(dest)  # check() compares total_fen and status_totals with the records


# -- refusals ---------------------------------------------------------------------------------------------


def test_salvage_refuses_to_overwrite_to_guess_or_to_write_beside_src(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 3)
    before = _files(src.parent)
    out = tmp_path / "out"
    out.mkdir()
    taken = out / "taken.db"
    taken.write_bytes(b"keep me")
    with pytest.raises(InvalidRequest, match="exists"):
        salvage(src, taken)
    assert taken.read_bytes() == b"keep me"
    after_break_path(out / "new.db").write_text("keep me too")
    with pytest.raises(InvalidRequest, match="exists"):
        salvage(src, out / "new.db")
    with pytest.raises(InvalidRequest, match="no such spool"):
        salvage(tmp_path / "absent.db", out / "other.db")
    with pytest.raises(InvalidRequest, match="T0001"):
        salvage(src, out / "other.db", terminal_id="T9999")
    with pytest.raises(InvalidRequest, match="side files"):
        salvage(src, src.parent / "s.db-wal")
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(InvalidRequest, match="not a spool"):
        salvage(plain, out / "other.db")
    assert _files(src.parent) == before
    assert sorted(p.name for p in out.iterdir()) == ["new.db.after-break.jsonl", "taken.db"]


# -- the command ----------------------------------------------------------------------------------------


def _terminald(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "terminald.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False)


def test_the_command_reports_the_loss_and_central_s_cursor_and_exits_1_then_2(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 30)
    state = UploadState(src)
    state.ack(10)
    state.close()
    _tamper(src, "DELETE FROM history WHERE seq = 3", "DELETE FROM records WHERE seq = 3")
    before = _files(src.parent)
    dest = tmp_path / "out.db"

    result = _terminald("spool", "salvage", str(src), str(dest))

    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert "copied:    2 records, seq 1-2" in out
    assert "BROKEN    the chain stops at seq 3: seq 3: missing" in out
    assert "LOST      seq 3 (1): missing; central holds 1 of them" in out
    assert (f"27 readable records after the break (seq 4-30), not chainable, in {after_break_path(dest)}; "
            "central holds 7 of them") in out
    assert "central:   acknowledged up to seq 10" in out
    assert "central holds seq 3-10, which DEST's chain lacks" in out
    assert "INCOMPLETE" in out
    assert _files(src.parent) == before
    assert [r.seq for r in _reopen(dest)] == [1, 2]

    again = _terminald("spool", "salvage", str(src), str(dest))
    assert again.returncode == 2 and "exists" in again.stdout


def test_the_command_exits_0_when_everything_was_copied(tmp_path: Path) -> None:
    src = tmp_path / "src" / "s.db"
    src.parent.mkdir()
    _build(src, 5)
    result = _terminald("spool", "salvage", str(src), str(tmp_path / "out.db"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "COMPLETE" in result.stdout and "5 records" in result.stdout
