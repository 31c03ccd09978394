"""A dead disk: the spool rebuilt from the mirror passes `terminald spool check` and is the spool that
died (records, statuses, outcomes, local facts; pending stays pending). And a copier killed with
kill -9 over and over leaves the mirror equal to the spool."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spool import Outcome, Spool
from terminald.mirror import MirrorCopier, RestoreFailed, restore_spool
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import TID, append, assert_mirror_equals_spool, prepare, run, settle_some
from tests.spool.factory import make_request
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]


def _varied_spool(path: Path) -> Spool:
    """Online and outage sales, settled, rejected, resolved, pending, a refund handed over, a revoke."""
    spool = Spool.open(path, TID, background_check=False)
    seqs = append(spool, 40) + append(spool, 20, prefix="off", offline=True)
    settle_some(spool, seqs[:50])
    outage = spool.get_seq(45)
    assert outage is not None and outage.status == "settled" and outage.refund_owed_fen > 0
    spool.refund(outage.record_id, outage.refund_owed_fen, {"staff": "王药师"})
    original = spool.get_seq(3)
    assert original is not None and original.status == "settled"
    revoke = spool.append(make_request("revoke-3", -original.total_fen, kind="revoke",
                                       extra={"original_record_id": original.record_id})).record
    spool.apply_outcomes([Outcome(revoke.seq, "settled", {"fund_paid_fen": -60, "account_paid_fen": -10})])
    return spool


def _state(spool: Spool) -> list[tuple[object, ...]]:
    return [(r.wire(), r.status, r.outcome, r.resolution, r.refund, r.outage, r.outage_reason, r.idempotency_key,
             r.request_digest, r.original_seq, r.revoked_by, r.contact_phone) for r in spool.records(limit=10_000)]


def test_restore_from_the_mirror_after_the_disk_died(pg_pair: PgPair, pg_database: str, tmp_path: Path) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    path = tmp_path / "spool.db"
    spool = _varied_spool(path)

    async def mirror() -> None:
        copier = MirrorCopier(spool, dsn)
        try:
            await copier.sync_once()
        finally:
            await copier.close()

    run(mirror())
    assert_mirror_equals_spool(pg_pair, pg_database, spool)
    before, stats = _state(spool), spool.stats()
    spool.close()
    for dead in tmp_path.glob("spool.db*"):
        dead.unlink()

    report = restore_spool(dsn, TID, path)
    assert report.check.ok and report.records == 61 and report.notes == ()
    assert report.by_status["pending"] == stats.pending
    with pytest.raises(RestoreFailed, match="never overwrites"):
        restore_spool(dsn, TID, path)

    config = tmp_path / "terminald.toml"
    config.write_text(f'[terminal]\nid = "{TID}"\n[spool]\npath = "{path}"\n', encoding="utf-8")
    check = subprocess.run([sys.executable, "-m", "terminald.cli", "spool", "check", "--config", str(config)],
                           capture_output=True, text=True, timeout=120, check=False, cwd=ROOT,
                           env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "COLUMNS": "200"})
    assert check.returncode == 0, check.stdout + check.stderr
    assert "61 records, chain and integrity verified" in check.stdout

    with Spool.open(path, TID, background_check=False) as restored:
        assert _state(restored) == before
        assert restored.stats() == stats
        assert restored.append(make_request("after-restore")).record.seq == 62  # the chain goes on


def test_a_broken_mirror_restores_nothing(pg_pair: PgPair, pg_database: str, tmp_path: Path) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    with Spool.open(tmp_path / "spool.db", TID, background_check=False) as spool:
        append(spool, 12)

        async def mirror() -> None:
            copier = MirrorCopier(spool, dsn)
            await copier.sync_once()
            await copier.close()

        run(mirror())
    with pg_pair.admin(pg_database) as conn:
        # The record is its text: the jsonb view is not read where the text is there.
        conn.execute("UPDATE terminald_records SET record = jsonb_set(record, '{payload,total_fen}', '1')"
                     " WHERE terminal_id = %s AND seq = 3", (TID,))
        conn.execute("UPDATE terminald_records SET record_text = replace(record_text, '\"total_fen\":104',"
                     " '\"total_fen\":1') WHERE terminal_id = %s AND seq = 5", (TID,))
    dest = tmp_path / "restored.db"
    with pytest.raises(RestoreFailed, match="seq 5: hash does not match") as failed:
        restore_spool(dsn, TID, dest)
    assert "jsonb" not in failed.value.detail
    assert list(tmp_path.glob("restored*")) == [] and list(tmp_path.glob(".spool-restore-*")) == []
    with pytest.raises(RestoreFailed, match="no terminal 'T0009'"):
        restore_spool(dsn, "T0009", dest)


def test_ten_kill9s_of_the_copier_while_mirroring(pg_pair: PgPair, pg_database: str, tmp_path: Path) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    path = tmp_path / "spool.db"

    def head() -> int:
        with pg_pair.admin(pg_database) as conn:
            row = conn.execute("SELECT last_seq FROM terminald_terminals WHERE terminal_id = %s", (TID,)).fetchone()
        return 0 if row is None else int(row[0])

    with Spool.open(path, TID, background_check=False) as spool:
        append(spool, 30)
        for kill in range(10):
            seqs = append(spool, 30, prefix=f"round{kill}")
            settle_some(spool, seqs)
            child = subprocess.Popen([sys.executable, "-m", "tests.mirror.copier_child", str(path), TID, dsn],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            try:
                assert child.stdout is not None and child.stdout.readline().strip() == "ready"
                start = head()

                def moved(start: int = start) -> bool:
                    return head() > start

                wait_for(moved, 20, f"child {kill} to mirror something", 0.01)
            finally:
                os.kill(child.pid, signal.SIGKILL)  # wherever it is: mid-batch, mid-commit, between
                child.wait(timeout=10)
        assert 0 < head() <= spool.stats().last_seq

        async def finish() -> None:
            copier = MirrorCopier(spool, dsn, batch_size=50)
            try:
                await copier.sync_once()
            finally:
                await copier.close()

        run(finish())
        assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 330
