"""Faults, for real: PostgreSQL down during offline sales, a kill -9 of the primary in the middle
of a batch with the standby promoted, a forged head row. Nothing lost, nothing twice, nothing
overwritten."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from spool import Spool
from terminald.mirror import MirrorCopier, MirrorFork
from terminald.mirror.heartbeat import Heartbeat
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import TID, append, assert_mirror_equals_spool, mirrored_rows, prepare, run, until


def _copier(spool: Spool, dsn: str, **options: float) -> MirrorCopier:
    settings = {"batch_size": 50, "poll_s": 5.0, "backoff_base_s": 0.05, "backoff_cap_s": 0.3,
                "call_timeout_s": 10.0, **options}
    return MirrorCopier(spool, dsn, **settings)  # type: ignore[arg-type]


def test_postgres_down_during_offline_sales_then_back_catches_up_once(
        pg_pair_factory: Callable[[], PgPair], spool: Spool) -> None:
    pair = pg_pair_factory()
    dsn = prepare(pair, "postgres", TID)[TID]

    async def scenario() -> None:
        copier = _copier(spool, dsn)
        task = asyncio.create_task(copier.run())
        try:
            await asyncio.to_thread(append, spool, 20, wake=copier.wake)
            await copier.wait_mirrored(20, 20)
            await asyncio.to_thread(pair.stop, pair.primary)  # the standby stays up, read-only
            await asyncio.to_thread(append, spool, 300, prefix="off", offline=True, wake=copier.wake)
            status = await until(lambda: (s := copier.status()).last_error and not s.connected and s, 20,
                                 "the copier to notice the primary is gone")
            assert status.mirrored_seq == 20 and status.unmirrored == 300 and status.lag_s is not None
            assert status.oldest_unmirrored_at == spool.get_seq(21).spooled_at  # type: ignore[union-attr]
            await asyncio.to_thread(pair.start, pair.primary)
            await copier.wait_mirrored(320, 30)
            assert copier.status().unmirrored == 0 and copier.status().alarms == ()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(scenario())
    assert assert_mirror_equals_spool(pair, "postgres", spool) == 320


def test_kill9_of_the_primary_mid_batch_then_the_standby_takes_over(
        pg_pair_factory: Callable[[], PgPair], spool: Spool) -> None:
    pair = pg_pair_factory()
    dsn = prepare(pair, "postgres", TID)[TID]
    blocker = psycopg.connect(pair.node_dsn(pair.primary))

    def copier_waits_on_the_lock() -> bool:
        with psycopg.connect(pair.node_dsn(pair.primary), autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'terminald-mirror%'"
                               " AND wait_event_type = 'Lock'").fetchone()
            return row is not None and row[0] > 0

    async def scenario() -> None:
        copier = _copier(spool, dsn)
        task = asyncio.create_task(copier.run())
        try:
            await asyncio.to_thread(append, spool, 100, wake=copier.wake)
            await copier.wait_mirrored(100, 20)
            # Hold the head row: the copier's next batch blocks inside its transaction (head moved,
            # inserts not yet sent), and the primary dies right there.
            blocker.execute("SELECT 1 FROM terminald_terminals WHERE terminal_id = %s FOR UPDATE", (TID,))
            await asyncio.to_thread(append, spool, 150, prefix="b", wake=copier.wake)
            await until(copier_waits_on_the_lock, 20, "the copier's batch to wait on the head row")
            await asyncio.to_thread(pair.kill9, pair.primary)
            await asyncio.to_thread(pair.promote_standby)
            await copier.wait_mirrored(250, 30)
            assert str(pair.standby.port) in (copier.status().server or "")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            with contextlib.suppress(psycopg.Error):
                blocker.close()

    run(scenario())
    assert assert_mirror_equals_spool(pair, "postgres", spool) == 250


def test_a_forged_head_raises_an_alarm_and_nothing_is_overwritten(pg_pair: PgPair, pg_database: str,
                                                                  spool: Spool, tmp_path: Path) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    append(spool, 30)

    async def sync(copier: MirrorCopier) -> None:
        await copier.sync_once()

    copier = _copier(spool, dsn)
    run(sync(copier))
    before = mirrored_rows(pg_pair, pg_database, TID)
    append(spool, 10, prefix="later")
    record20 = spool.get_seq(20)
    assert record20 is not None

    forgeries = [
        ("UPDATE terminald_terminals SET last_hash = repeat('f', 64) WHERE terminal_id = %s", (TID,)),
        # On the chain, but rows after it are there: the insert meets them and rolls back.
        ("UPDATE terminald_terminals SET last_seq = 20, last_hash = %s WHERE terminal_id = %s", (record20.hash, TID)),
        ("UPDATE terminald_terminals SET last_seq = 31 WHERE terminal_id = %s", (TID,)),
    ]
    for sql, args in forgeries:
        with pg_pair.admin(pg_database) as conn:
            head = conn.execute("SELECT last_seq, last_hash FROM terminald_terminals WHERE terminal_id = %s",
                                (TID,)).fetchone()
            conn.execute(sql, args)
        copier = _copier(spool, dsn)
        with pytest.raises(MirrorFork):
            run(sync(copier))
        alarms = copier.status().alarms
        assert [alarm.code for alarm in alarms] == ["mirror_fork"], sql
        assert mirrored_rows(pg_pair, pg_database, TID) == before, sql
        with pg_pair.admin(pg_database) as conn:
            conn.execute("UPDATE terminald_terminals SET last_seq = %s, last_hash = %s WHERE terminal_id = %s",
                         (*head, TID))

    # A spool that is not the mirrored one (an old copy put back, or a second PC with this id).
    with Spool.open(tmp_path / "other.db", TID, background_check=False) as other:
        append(other, 5, prefix="other")
        copier = _copier(other, dsn)
        with pytest.raises(MirrorFork, match="this spool ends at seq 5"):
            run(sync(copier))
    assert mirrored_rows(pg_pair, pg_database, TID) == before

    # The head put right: the alarm clears and the copier carries on.
    copier = _copier(spool, dsn)
    run(sync(copier))
    assert copier.status().alarms == ()
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 40

    # The fleet view (the heartbeat) shows a fork with the pass that found it, and its end with
    # the pass that found it gone: not one heartbeat period (30 s) later.
    def fleet_alarms() -> list[str]:
        with pg_pair.admin(pg_database) as conn:
            row = conn.execute("SELECT alarms FROM terminald_terminals WHERE terminal_id = %s", (TID,)).fetchone()
        return [a["code"] for a in (row[0] if row else [])]

    beating = MirrorCopier(spool, dsn, heartbeat=lambda: Heartbeat(
        mode="online", pending=0, pending_amount_fen=0, oldest_pending_at=None, outage_since=None,
        overdue_reentries=0, version="t", alarms=()))
    with pg_pair.admin(pg_database) as conn:
        head = conn.execute("SELECT last_seq, last_hash FROM terminald_terminals WHERE terminal_id = %s",
                            (TID,)).fetchone()
        conn.execute("UPDATE terminald_terminals SET last_hash = repeat('f', 64) WHERE terminal_id = %s", (TID,))
    with pytest.raises(MirrorFork):
        run(sync(beating))
    assert fleet_alarms() == ["mirror_fork"]
    with pg_pair.admin(pg_database) as conn:
        conn.execute("UPDATE terminald_terminals SET last_seq = %s, last_hash = %s WHERE terminal_id = %s",
                     (*head, TID))
    run(sync(beating))
    assert fleet_alarms() == []
    run(beating.close())
