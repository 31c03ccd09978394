"""The copier against a real PostgreSQL with a synchronous standby: the mirror equals the spool
(records, order, hashes, statuses), retries never double anything, and the fleet row shows lag."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from spool import Outcome, Spool
from terminald.mirror import Heartbeat, MirrorCopier, MirrorSchemaMissing, chain
from terminald.mirror.connect import async_connect, conninfo
from terminald.mirror.heartbeat import send_heartbeat
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import TID, append, assert_mirror_equals_spool, prepare, run, settle_some


def test_500_sales_while_postgres_is_up_then_status_changes(pg_pair: PgPair, pg_database: str,
                                                            spool: Spool) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]

    async def scenario() -> None:
        copier = MirrorCopier(spool, dsn, batch_size=64, poll_s=5)
        task = asyncio.create_task(copier.run())
        try:
            seqs = await asyncio.to_thread(append, spool, 500, wake=copier.wake)
            await copier.wait_mirrored(500, 30)
            assert copier.status().unmirrored == 0 and copier.status().lag_s == 0
            assert str(pg_pair.primary.port) in (copier.status().server or "")
            await asyncio.to_thread(settle_some, spool, seqs)
            await copier.sync_once()  # the history cursor: only the changed records
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(scenario())
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 500

    # Changes made while no copier ran (a restart of the daemon) are found by comparing the rows
    # that may still change, once, when the next copier starts.
    spool.apply_outcomes([Outcome(seq, "settled", {"fund_paid_fen": 1}) for seq in (1, 2, 4)])
    rejected = spool.get_seq(7)
    assert rejected is not None and rejected.status == "rejected"
    spool.resolve(rejected.record_id, "voided")

    async def restart() -> None:
        copier = MirrorCopier(spool, dsn)
        try:
            await copier.sync_once()
        finally:
            await copier.close()

    run(restart())
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 500


def test_a_retry_after_a_lost_commit_is_done_and_writes_nothing_twice(pg_pair: PgPair, pg_database: str,
                                                                       spool: Spool) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    append(spool, 10)
    batch = spool.records(limit=10)

    async def scenario() -> None:
        conn = await async_connect(conninfo(dsn))
        async with conn:
            assert await chain.ensure_head(conn, TID) == (0, batch[0].prev_hash)
            assert await chain.copy_batch(conn, batch) is True
            # The commit went through but its answer was lost: the same batch again moves no head,
            # and the head says the mirror holds these very records.
            assert await chain.copy_batch(conn, batch) is False
            head = await chain.read_head(conn, TID)
            assert head == (10, batch[-1].hash)
            await chain.already_there(conn, TID, batch, head)
            await chain.verify_head(conn, TID, head, batch[-1], 10)

    run(scenario())
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 10


def test_heartbeat_feeds_the_fleet_view(pg_pair: PgPair, pg_database: str, spool: Spool) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    append(spool, 3, offline=True)
    beat = Heartbeat(mode="offline", pending=3, pending_amount_fen=303, oldest_pending_at="2026-11-23T10:15:00+08:00",
                     outage_since="2026-11-23T09:00:00+08:00", overdue_reentries=1, version="0.1.0",
                     alarms=({"code": "reentry_deadline"},))

    async def scenario() -> None:
        copier = MirrorCopier(spool, dsn, heartbeat=lambda: beat, heartbeat_s=0)
        try:
            await copier.sync_once()
        finally:
            await copier.close()

    run(scenario())
    with pg_pair.admin(pg_database) as conn:
        row = conn.execute("SELECT mode, pending, pending_amount_fen, overdue_reentries, mirrored_seq, spool_last_seq,"
                           " mirror_lag_records, mirror_lag, alarms, version, since_seen < interval '1 minute'"
                           " FROM terminald_fleet WHERE terminal_id = %s", (TID,)).fetchone()
    assert row is not None
    assert row[:7] == ("offline", 3, 303, 1, 3, 3, 0)
    assert row[7].total_seconds() == 0 and row[8] == [{"code": "reentry_deadline"}] and row[9:] == ("0.1.0", True)

    # A terminal whose mirror is behind: the view shows how far, and for how long.
    async def behind() -> None:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            await send_heartbeat(conn, TID, beat, spool_last_seq=8, oldest_unmirrored_at="2026-11-23T10:15:00+08:00",
                                 mirror_alarms=[{"code": "mirror_unavailable"}])

    run(behind())
    with pg_pair.admin(pg_database) as conn:
        lag = conn.execute("SELECT mirror_lag_records, mirror_lag > interval '1 hour', alarms FROM terminald_fleet"
                           " WHERE terminal_id = %s", (TID,)).fetchone()
    assert lag == (5, True, [{"code": "reentry_deadline"}, {"code": "mirror_unavailable"}])


def test_no_schema_is_an_alarm_not_a_crash(pg_pair: PgPair, pg_database: str, spool: Spool) -> None:
    append(spool, 2)

    async def scenario() -> None:
        copier = MirrorCopier(spool, pg_pair.dsn(pg_database))
        try:
            with pytest.raises(MirrorSchemaMissing, match="mirror init-db"):
                await copier.sync_once()
            status = copier.status()
            assert [a.code for a in status.alarms] == ["mirror_schema_missing"] and status.connected
        finally:
            await copier.close()

    run(scenario())


def test_a_voided_sales_refund_reaches_the_mirror_after_a_reconnect(pg_pair: PgPair, pg_database: str,
                                                                    spool: Spool) -> None:
    """A voided outage sale owes the patient what they paid until the refund is recorded: its
    mirrored row may still change, so a new copier (a restart, a reconnect) compares it too.
    Otherwise the mirror would keep it owed, and a restore would owe it twice."""
    from dataclasses import replace

    from tests.mirror.helpers import mirror_pass
    from tests.spool.factory import make_request

    dsn = prepare(pg_pair, pg_database, TID)[TID]
    sale = spool.append(replace(make_request("void", 2500), outage_reason="upstream_unreachable")).record
    spool.apply_outcomes([Outcome(sale.seq, "rejected", {"code": "card_frozen", "message": "欠费冻结"})])
    assert spool.resolve(sale.record_id, "voided").refund_owed_fen == 2500
    mirror_pass(spool, dsn)
    spool.refund(sale.record_id, 2500, {"id": "op7", "name": "王芳"})
    mirror_pass(spool, dsn)  # a fresh copier: its history cursor starts at the newest change
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 1
    with pg_pair.admin(pg_database) as conn:
        row = conn.execute("SELECT local_state->'refund'->>'paid_fen' FROM terminald_records WHERE seq = %s",
                           (sale.seq,)).fetchone()
    assert row is not None and row[0] == "2500"
