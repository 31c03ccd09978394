"""The Spool API: appends, idempotency, the chain, state changes, reads, export, prune."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import itertools
import json
import re
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import spool as spool_pkg
from spool import (
    GENESIS_HASH,
    AppendRequest,
    IdempotencyConflict,
    InvalidRequest,
    InvalidTransition,
    NotFound,
    Outcome,
    Spool,
    SpoolClosed,
    SpoolError,
)
from tests.fixtures.spool import TERMINAL_ID, make_request

RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


def _independent_hash(wire: dict[str, object]) -> str:
    body = {k: v for k, v in wire.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_append_builds_a_contract_record(tmp_spool: Spool) -> None:
    req = make_request("k1", 2500, offline=True, offline_reason="upstream_unreachable")
    result = tmp_spool.append(req)
    rec = result.record
    assert result.created
    assert rec.seq == 1 and rec.prev_hash == GENESIS_HASH
    assert rec.terminal_id == TERMINAL_ID and rec.status == "pending"
    assert rec.payload == req.payload and rec.total_fen == 2500
    assert RFC3339_MS.match(rec.spooled_at)
    assert uuid.UUID(rec.record_id).version == 7
    wire = rec.wire()
    assert list(wire) == [
        "record_id", "seq", "terminal_id", "kind", "business_time", "spooled_at",
        "offline", "offline_reason", "payload", "prev_hash", "hash",
    ]  # fmt: skip
    assert wire["hash"] == _independent_hash(wire)
    assert tmp_spool.get(rec.record_id) == rec == tmp_spool.get_seq(1) == tmp_spool.find_by_key("k1")


def test_seq_is_gapless_and_chained(tmp_spool: Spool) -> None:
    records = [tmp_spool.append(make_request(f"k{i}", i)).record for i in range(20)]
    assert [r.seq for r in records] == list(range(1, 21))
    for prev, cur in itertools.pairwise(records):
        assert cur.prev_hash == prev.hash
        assert cur.hash == _independent_hash(cur.wire())
    ids = [r.record_id for r in records]
    assert ids == sorted(ids)  # time-ordered


def test_idempotency_same_body_returns_existing_other_body_conflicts(tmp_spool: Spool) -> None:
    first = tmp_spool.append(make_request("k", 100)).record
    again = tmp_spool.append(make_request("k", 100))
    assert not again.created and again.record == first
    with pytest.raises(IdempotencyConflict) as info:
        tmp_spool.append(make_request("k", 999))
    assert info.value.code == "idempotency_conflict"
    assert info.value.existing == first
    assert tmp_spool.stats().last_seq == 1


def test_concurrent_duplicates_create_one_record(tmp_spool: Spool) -> None:
    results = []
    lock = threading.Lock()

    def go() -> None:
        r = tmp_spool.append(make_request("same", 5))
        with lock:
            results.append(r)

    threads = [threading.Thread(target=go) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.created for r in results) == 1
    assert {r.record.seq for r in results} == {1}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"business_time": "2026-11-23T10:15:00"}, "offset"),
        ({"business_time": "yesterday"}, "RFC 3339"),
        ({"kind": ""}, "kind"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"payload": {"x": float("nan")}}, "JSON"),
        ({"payload": {"x": object()}}, "JSON"),
        ({"payload": ["not", "a", "dict"]}, "payload"),
        ({"offline": "yes"}, "offline"),
    ],
)
def test_bad_requests_get_invalid_request(tmp_spool: Spool, change: dict[str, object], message: str) -> None:
    base = make_request("k")
    fields = {f: getattr(base, f) for f in AppendRequest.__dataclass_fields__} | change
    with pytest.raises(InvalidRequest, match=message) as info:
        tmp_spool.append(AppendRequest(**fields))
    assert info.value.code == "validation_failed"
    assert tmp_spool.stats().last_seq == 0


def test_outcomes_resolve_and_history(tmp_spool: Spool) -> None:
    a, b, c = (tmp_spool.append(make_request(k, 100)).record for k in "abc")
    out = tmp_spool.apply_outcomes(
        [
            Outcome(a.seq, "settled", {"central_ref": "C1", "fund_paid_fen": 80}),
            Outcome(b.seq, "rejected", {"code": "card_frozen", "message": "欠费冻结"}),
        ]
    )
    assert [r.status for r in out] == ["settled", "rejected"]
    assert out[0].outcome == {"central_ref": "C1", "fund_paid_fen": 80}
    # Already final: left as is.
    again = tmp_spool.apply_outcomes([Outcome(a.seq, "rejected", {"code": "x"})])
    assert again[0].status == "settled" and again[0].outcome == {"central_ref": "C1", "fund_paid_fen": 80}
    with pytest.raises(InvalidTransition):
        tmp_spool.resolve(a.record_id, "self_pay")
    with pytest.raises(InvalidTransition):
        tmp_spool.resolve(c.record_id, "voided")
    with pytest.raises(NotFound):
        tmp_spool.resolve("nope", "voided")
    with pytest.raises(InvalidRequest):
        tmp_spool.resolve(b.record_id, "forgiven")
    resolved = tmp_spool.resolve(b.record_id, "self_pay", "患者现金自付")
    assert resolved.status == "resolved"
    assert resolved.resolution is not None and resolved.resolution["resolution"] == "self_pay"
    assert resolved.resolution["note"] == "患者现金自付"
    assert [t.status for t in tmp_spool.history(b.record_id)] == ["pending", "rejected", "resolved"]
    assert "card_frozen" in tmp_spool.history(b.record_id)[1].detail
    with pytest.raises(NotFound):
        tmp_spool.history("nope")
    assert resolved.hash == b.hash  # local state is not part of the hashed record


def test_apply_outcomes_is_one_transaction(tmp_spool: Spool) -> None:
    a = tmp_spool.append(make_request("a")).record
    with pytest.raises(NotFound):
        tmp_spool.apply_outcomes([Outcome(a.seq, "settled", {}), Outcome(99, "settled", {})])
    assert tmp_spool.get_seq(a.seq) is not None and tmp_spool.get_seq(a.seq).status == "pending"  # type: ignore[union-attr]
    with pytest.raises(InvalidRequest):
        tmp_spool.apply_outcomes([Outcome(a.seq, "done", {})])


def test_reads_backlog_records_stats_totals(tmp_spool: Spool) -> None:
    times = ["2026-11-23T23:30:00-05:00", "2026-11-24T00:10:00+08:00", "2026-11-23T08:00:00+08:00"]
    recs = [
        tmp_spool.append(make_request(f"k{i}", 100 * (i + 1), times[i % 3], offline=i % 2 == 0)).record
        for i in range(9)
    ]
    tmp_spool.apply_outcomes(
        [Outcome(recs[0].seq, "settled", {}), Outcome(recs[1].seq, "rejected", {"code": "x"})]
    )
    assert [r.seq for r in tmp_spool.backlog()] == list(range(3, 10))
    assert [r.seq for r in tmp_spool.backlog(after_seq=5, limit=2)] == [6, 7]
    assert [r.seq for r in tmp_spool.records(limit=3)] == [1, 2, 3]
    assert [r.seq for r in tmp_spool.records("rejected")] == [2]
    with pytest.raises(InvalidRequest):
        tmp_spool.records("lost")
    with pytest.raises(InvalidRequest):
        tmp_spool.backlog(limit=0)
    stats = tmp_spool.stats()
    assert stats.pending == 7 and stats.rejected_unresolved == 1 and stats.settled_total == 1
    assert stats.pending_amount_fen == sum(r.total_fen for r in recs[2:])
    assert stats.oldest_pending_at == recs[2].spooled_at
    assert stats.last_seq == 9 and stats.last_hash == recs[-1].hash
    assert stats.pending_offline_fen == sum(r.total_fen for r in recs[2:] if r.offline)
    # The date of business_time in its own offset, not converted to local or UTC.
    # Central's view of the day: money it accepted (settled here) only; every record by status.
    day = tmp_spool.totals("2026-11-23")
    on_23 = [r for r in recs if r.business_time.startswith("2026-11-23")]
    assert len(on_23) == 6 and on_23[0].seq == recs[0].seq
    assert day.count == 1 and day.total_fen == recs[0].total_fen
    assert day.by_status == {"accepted": 1, "pending": 5}
    assert day.uncertain_count == 6  # 5 pending, and the settled one has no fund/account figures
    assert tmp_spool.totals("2026-11-25").count == 0
    with pytest.raises(InvalidRequest):
        tmp_spool.totals("23/11/2026")


def test_totals_query_uses_the_index(tmp_spool: Spool) -> None:
    conn = sqlite3.connect(tmp_spool.path)
    plan = " ".join(
        str(row)
        for row in conn.execute("EXPLAIN QUERY PLAN SELECT * FROM records WHERE business_date = '2026-11-23'")
    )
    conn.close()
    assert "records_business_date" in plan


def test_failing_on_commit_hook_does_not_fail_the_append(tmp_path: Path) -> None:
    def hook(seconds: float) -> None:
        raise RuntimeError("metrics down")

    with Spool.open(tmp_path / "s.db", TERMINAL_ID, on_commit=hook, background_check=False) as sp:
        assert sp.append(make_request("k")).created


def test_failed_commit_fails_the_whole_batch_and_the_writer_recovers(tmp_spool: Spool) -> None:
    # A trigger makes one key's insert fail inside the writer's transaction.
    conn = sqlite3.connect(tmp_spool.path)
    conn.execute(
        "CREATE TRIGGER boom BEFORE INSERT ON records WHEN NEW.idempotency_key = 'bad'"
        " BEGIN SELECT RAISE(ABORT, 'injected'); END"
    )
    conn.commit()
    tmp_spool.append(make_request("a"))
    with pytest.raises(SpoolError, match="injected"):
        tmp_spool.append(make_request("bad"))
    assert tmp_spool.append(make_request("b")).record.seq == 2
    conn.execute("DROP TRIGGER boom")
    conn.commit()
    conn.close()
    assert tmp_spool.append(make_request("bad")).record.seq == 3
    assert tmp_spool.check().ok


def test_export_jsonl_csv_sqlite(tmp_spool: Spool, tmp_path: Path) -> None:
    for i in range(5):
        tmp_spool.append(make_request(f"k{i}", i))
    assert tmp_spool.export(tmp_path / "out.jsonl") == 5
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text("utf-8").splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4, 5]
    assert lines[0]["payload"]["card"]["name"] == "张三"
    assert lines[4]["hash"] == _independent_hash({k: lines[4][k] for k in tmp_spool.get_seq(5).wire()})  # type: ignore[union-attr]
    assert tmp_spool.export(tmp_path / "out.csv", "csv") == 5
    with (tmp_path / "out.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4, 5] and json.loads(rows[2]["payload"])[
        "total_fen"
    ] == 2
    assert tmp_spool.export(tmp_path / "copy.db", "sqlite") == 5
    with Spool.open(tmp_path / "copy.db", TERMINAL_ID, background_check=False) as copy:
        assert copy.check().records == 5
    with pytest.raises(InvalidRequest):
        tmp_spool.export(tmp_path / "x.xml", "xml")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".spool-export")) == []


def test_prune_keeps_a_verifiable_chain(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        recs = [sp.append(make_request(f"k{i}")).record for i in range(10)]
        sp.apply_outcomes([Outcome(r.seq, "settled", {}) for r in recs[:4]] + [Outcome(6, "settled", {})])
        assert sp.prune(30) == 0  # not old enough
        later = datetime.now(UTC) + timedelta(days=31)
        assert sp.prune(30, now=later) == 4  # stops at seq 5 (pending): only a prefix goes
        assert sp.get_seq(4) is None and sp.get_seq(6) is not None
        report = sp.check()
        assert report.ok and report.records == 6
        with pytest.raises(InvalidRequest):
            sp.prune(-1)
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        assert sp.stats().last_seq == 10
        sp.apply_outcomes([Outcome(s, "settled", {}) for s in range(5, 11)])
        assert sp.prune(0, now=datetime.now(UTC) + timedelta(seconds=1)) == 6
        assert sp.stats().last_seq == 10 and sp.stats().last_hash == recs[-1].hash
        nxt = sp.append(make_request("after-prune")).record
        assert nxt.seq == 11 and nxt.prev_hash == recs[-1].hash
        assert sp.check().ok


def test_closed_spool_raises(tmp_path: Path) -> None:
    sp = Spool.open(tmp_path / "s.db", TERMINAL_ID)
    sp.close()
    sp.close()  # idempotent
    for call in (lambda: sp.append(make_request("k")), lambda: sp.stats(), lambda: sp.get_seq(1), sp.check):
        with pytest.raises(SpoolClosed):
            call()


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    with Spool.open(path, TERMINAL_ID) as sp:
        first = [sp.append(make_request(f"k{i}")).record for i in range(3)]
    with Spool.open(path, TERMINAL_ID) as sp:
        assert sp.records() == first
        assert not sp.append(make_request("k1")).created
        assert sp.append(make_request("k9")).record.prev_hash == first[-1].hash


def test_other_terminal_is_refused(tmp_path: Path) -> None:
    Spool.open(tmp_path / "s.db", TERMINAL_ID).close()
    with pytest.raises(SpoolError, match="T0001"):
        Spool.open(tmp_path / "s.db", "T0002")
    with pytest.raises(InvalidRequest):
        Spool.open(tmp_path / "s.db", "")


def test_background_check_reports_ok(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db", TERMINAL_ID) as sp:
        deadline = time.monotonic() + 10
        while sp.integrity == "checking" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sp.integrity == "ok" and sp.integrity_error is None


def test_public_names_are_pinned() -> None:
    assert sorted(spool_pkg.__all__) == sorted(
        [
            "GENESIS_HASH", "AppendRequest", "AppendResult", "CheckReport", "IdempotencyConflict",
            "InvalidRequest", "InvalidTransition", "NotFound", "NotRevocable", "OfflineLimitExceeded", "Outcome",
            "Record", "RefundMismatch", "RestoredFrom",
            "Spool", "SpoolClosed",
            "SpoolCorrupt", "SpoolError", "SpoolFull", "SpoolIOError", "SpoolStats", "Totals", "Transition",
            "canonical_json", "connect", "digest", "migrate", "record_hash",
        ]
    )  # fmt: skip
    for name in spool_pkg.__all__:
        assert hasattr(spool_pkg, name)


def test_error_codes_are_stable() -> None:
    expected: dict[type[SpoolError], str] = {
        spool_pkg.SpoolError: "spool_unavailable",
        spool_pkg.SpoolFull: "spool_full",
        spool_pkg.SpoolIOError: "spool_unavailable",
        spool_pkg.SpoolCorrupt: "spool_unavailable",
        spool_pkg.SpoolClosed: "spool_unavailable",
        spool_pkg.IdempotencyConflict: "idempotency_conflict",
        spool_pkg.NotFound: "not_found",
        spool_pkg.OfflineLimitExceeded: "offline_limit_exceeded",
        spool_pkg.InvalidTransition: "invalid_transition",
        spool_pkg.InvalidRequest: "validation_failed",
    }
    for cls, code in expected.items():
        assert cls.code == code and issubclass(cls, SpoolError)


def test_two_handles_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    # E.g. the daemon and a CLI: the tail is read under the write lock, never cached.
    path = tmp_path / "s.db"
    with (
        Spool.open(path, TERMINAL_ID, background_check=False) as a,
        Spool.open(path, TERMINAL_ID, background_check=False) as b,
    ):
        seqs = [(a if i % 3 else b).append(make_request(f"k{i}")).record.seq for i in range(30)]
        assert seqs == list(range(1, 31))
        assert a.check().ok and b.stats().last_seq == 30


def test_checkpoints_run_off_the_writer_thread(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db", TERMINAL_ID, background_check=False) as sp:
        writer = sp._writer
        assert writer is not None
        assert writer._conn is not None
        assert writer._conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        size_before = (tmp_path / "s.db").stat().st_size
        for i in range(210):
            sp.append(make_request(f"k{i}"))
        deadline = time.monotonic() + 10
        while writer._checkpointer.checkpoints < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer._checkpointer.checkpoints >= 1
        assert (tmp_path / "s.db").stat().st_size > size_before  # frames were copied into the main file


def test_reconciliation_names_records_with_their_revoke_links(tmp_spool: Spool) -> None:
    sale = tmp_spool.append(make_request("sale", 2500)).record
    tmp_spool.apply_outcomes([Outcome(sale.seq, "settled", {"central_ref": "C1"})])  # no fund/account figures
    revoke = tmp_spool.append(dataclasses.replace(
        make_request("revoke", -2500, kind="revoke", extra={"original_record_id": sale.record_id}),
        original_record_id=sale.record_id)).record
    named = {r["record_id"]: r for r in tmp_spool.totals("2026-11-23").uncertain}
    assert named[sale.record_id]["revoked_by"] == revoke.record_id and named[sale.record_id]["original_id"] is None
    assert named[revoke.record_id]["original_id"] == sale.record_id and named[revoke.record_id]["why"] == "pending"


def test_a_restored_spool_says_so_until_acknowledged(tmp_path: Path) -> None:
    from spool.restored import mark_in

    with Spool.open(tmp_path / "s.db", "T0001", background_check=False) as spool:
        assert spool.restored_from() is None
        spool.write(lambda conn: mark_in(conn, "mirror", 7, 3))
        marker = spool.restored_from()
        assert marker is not None and (marker.source, marker.last_seq, marker.pending) == ("mirror", 7, 3)
        spool.write(lambda conn: conn.execute("UPDATE meta SET value = 'not json' WHERE key = 'restored_from'"))
        unreadable = spool.restored_from()  # read as "everything unknown", never as "not restored"
        assert unreadable is not None and unreadable.last_seq > 10**15
        spool.acknowledge_restore()
        assert spool.restored_from() is None
    with Spool.open_readonly(tmp_path / "s.db", "T0001") as again:
        assert again.restored_from() is None
