"""A pruned spool and the mirror: a counter in service longer than the retention before the mirror
was set up starts the mirror at its prune checkpoint; a counter idle for longer than the retention
(the head's own record pruned) is checked against the checkpoint, not taken for a fork; a restore
rebuilds a spool whose chain starts at that checkpoint. Records pruned after the mirror's head
before they were mirrored stay a gap alarm, and nothing is written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from spool import GENESIS_HASH, Outcome, Spool
from terminald.mirror import MirrorFork, restore_spool
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import (
    TID,
    append,
    assert_mirror_equals_spool,
    mirror_pass,
    mirrored_rows,
    prepare,
    settle_some,
)
from tests.spool.factory import make_request

LATER = datetime.now(UTC) + timedelta(days=500)  # past any retention below


def _settle(spool: Spool, seqs: list[int]) -> None:
    spool.apply_outcomes([Outcome(seq, "settled", {"fund_paid_fen": 60}) for seq in seqs])


def _head_row(pair: PgPair, dbname: str) -> tuple[Any, ...]:
    with pair.admin(dbname) as conn:
        row = conn.execute("SELECT last_seq, last_hash, base_seq, base_hash FROM terminald_terminals"
                           " WHERE terminal_id = %s", (TID,)).fetchone()
    assert row is not None
    return tuple(row)


def _state(spool: Spool) -> list[tuple[object, ...]]:
    return [(r.wire(), r.status, r.outcome, r.resolution, r.idempotency_key, r.request_digest)
            for r in spool.records(limit=10_000)]


def test_a_spool_pruned_before_the_mirror_began_starts_it_at_its_checkpoint(pg_pair: PgPair, pg_database: str,
                                                                            tmp_path: Path) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID, background_check=False)
    _settle(spool, append(spool, 8))
    assert spool.prune(400, LATER) == 8 and spool.stats().last_seq == 8
    checkpoint = spool.checkpoint()
    assert checkpoint[0] == 8 and spool.records() == []

    # Nothing held yet: the mirror starts at the checkpoint, with no row of its own.
    copier = mirror_pass(spool, dsn)
    assert copier.status().alarms == () and copier.status().mirrored_seq == 8
    assert _head_row(pg_pair, pg_database) == (8, checkpoint[1], 8, checkpoint[1])
    assert mirrored_rows(pg_pair, pg_database, TID) == []

    seqs = append(spool, 30, prefix="after")
    settle_some(spool, seqs)
    copier = mirror_pass(spool, dsn, batch_size=7)
    assert copier.status().alarms == () and copier.status().mirrored_seq == 38
    mirror_pass(spool, dsn)  # a pass with nothing new: the head verifies as usual
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 30
    assert _head_row(pg_pair, pg_database)[2:] == (8, checkpoint[1])

    before, stats = _state(spool), spool.stats()
    spool.close()
    for dead in tmp_path.glob("spool.db*"):
        dead.unlink()
    report = restore_spool(dsn, TID, path)
    assert report.check.ok and report.records == 30 and report.first_seq == 9 and report.last_seq == 38
    assert len(report.notes) == 1 and "from seq 9" in report.notes[0]
    with Spool.open(path, TID, background_check=False) as restored:
        assert restored.checkpoint() == checkpoint
        assert _state(restored) == before and restored.stats() == stats
        assert restored.check().ok
        assert restored.append(make_request("after-restore")).record.seq == 39


def test_a_spool_with_records_pruned_first_and_some_left(pg_pair: PgPair, pg_database: str, spool: Spool) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    seqs = append(spool, 10)
    _settle(spool, seqs[:6])  # 1-6 final, 7-10 pending: the prune stops at 7
    assert spool.prune(400, LATER) == 6
    copier = mirror_pass(spool, dsn, batch_size=3)
    assert copier.status().alarms == () and copier.status().mirrored_seq == 10
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 4
    assert _head_row(pg_pair, pg_database)[2] == 6


def test_the_heads_record_pruned_is_checked_against_the_checkpoint(pg_pair: PgPair, pg_database: str,
                                                                   tmp_path: Path) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID, background_check=False)
    _settle(spool, append(spool, 5))
    mirror_pass(spool, dsn)
    # A counter idle for longer than the retention: every record pruned, the head's own too.
    assert spool.prune(400, LATER) == 5 and spool.get_seq(5) is None
    for _ in range(2):
        copier = mirror_pass(spool, dsn)
        assert copier.status().alarms == () and copier.status().mirrored_seq == 5

    # A checkpoint with another hash at the head's seq: another chain, not this one.
    other = Spool.open(tmp_path / "other.db", TID, background_check=False)
    _settle(other, append(other, 5, prefix="other"))
    assert other.prune(400, LATER) == 5
    with pytest.raises(MirrorFork, match="prune checkpoint at seq 5"):
        mirror_pass(other, dsn)
    other.close()

    append(spool, 3, prefix="back")
    copier = mirror_pass(spool, dsn)
    assert copier.status().alarms == () and copier.status().mirrored_seq == 8
    assert assert_mirror_equals_spool(pg_pair, pg_database, spool) == 3
    assert _head_row(pg_pair, pg_database)[2:] == (0, GENESIS_HASH)  # the mirror starts at seq 1
    # A restore gives back every record the mirror holds, from seq 1.
    spool.close()
    dest = tmp_path / "restored"
    dest.mkdir()
    report = restore_spool(dsn, TID, dest / "spool.db")
    assert report.check.ok and report.records == 8 and report.first_seq == 1 and report.notes == ()


def test_records_pruned_before_they_were_mirrored_after_the_head_are_a_gap(pg_pair: PgPair, pg_database: str,
                                                                           spool: Spool) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    _settle(spool, append(spool, 3))
    mirror_pass(spool, dsn)
    _settle(spool, append(spool, 4, prefix="unmirrored"))  # 4-7, never mirrored
    assert spool.prune(400, LATER) == 7
    append(spool, 2, prefix="after")  # 8-9
    before = mirrored_rows(pg_pair, pg_database, TID)
    head = _head_row(pg_pair, pg_database)
    for _ in range(2):
        with pytest.raises(MirrorFork, match=r"records 4-7 .* were pruned from this spool before they were mirrored"):
            mirror_pass(spool, dsn)
    assert mirrored_rows(pg_pair, pg_database, TID) == before and _head_row(pg_pair, pg_database) == head
    assert head[:1] == (3,) and head[2:] == (0, GENESIS_HASH)  # no new start: the mirror held rows
