"""Shared steps of the mirror tests: a database with the schema and terminal roles, appends, and
the one comparison that matters (the mirror holds exactly the spool's chain, statuses included)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from spool import Outcome, Spool
from terminald.mirror import MirrorCopier, init_db, role_name, role_statements
from terminald.mirror.rows import hashed_text, jsonb_safe, local_state
from tests.fixtures.postgres import PgPair
from tests.spool.factory import TERMINAL_ID, make_request

T = TypeVar("T")

TID = TERMINAL_ID  # the terminal of the `spool` fixture (tests/mirror/conftest.py)
OTHER = "T0002"


def prepare(pair: PgPair, dbname: str, *terminal_ids: str) -> dict[str, str]:
    """The schema and each terminal's role in ``dbname``; each terminal's DSN (as its own role)."""
    with pair.admin(dbname) as conn:
        init_db(conn)
        for line in role_statements(terminal_ids):
            if not line.startswith("--"):
                conn.execute(line)
    return {tid: pair.dsn(dbname, user=role_name(tid)) for tid in terminal_ids}


def append(spool: Spool, count: int, *, prefix: str = "k", offline: bool = False,
           wake: Callable[[], None] | None = None) -> list[int]:
    """``count`` sales (blocking: run in a thread while a copier runs); their seqs."""
    start = spool.stats().last_seq
    seqs = []
    for i in range(count):
        reason = "upstream_unreachable" if offline else None
        record = spool.append(make_request(f"{prefix}-{start + i}", 100 + i, offline=offline,
                                           offline_reason=reason)).record
        seqs.append(record.seq)
        if wake is not None:
            wake()
    return seqs


def settle_some(spool: Spool, seqs: list[int]) -> None:
    """Central answers: every third settled, every seventh rejected (and every 14th then resolved)."""
    outcomes = []
    for seq in seqs:
        if seq % 7 == 0:
            outcomes.append(Outcome(seq, "rejected", {"code": "card_frozen", "message": "欠费冻结"}))
        elif seq % 3 == 0:
            outcomes.append(Outcome(seq, "settled", {"fund_paid_fen": 60, "account_paid_fen": 10}))
    spool.apply_outcomes(outcomes)
    for seq in seqs:
        if seq % 14 == 0:
            record = spool.get_seq(seq)
            assert record is not None
            spool.resolve(record.record_id, "self_pay", "患者自付")


def mirrored_rows(pair: PgPair, dbname: str, terminal_id: str) -> list[tuple[Any, ...]]:
    with pair.admin(dbname) as conn:
        rows: list[tuple[Any, ...]] = conn.execute(
            "SELECT seq, record_id::text, prev_hash, hash, record, status, outcome, local_state, record_text"
            " FROM terminald_records WHERE terminal_id = %s ORDER BY seq", (terminal_id,)).fetchall()
    return rows


def assert_mirror_equals_spool(pair: PgPair, dbname: str, spool: Spool) -> int:
    """Every record of the spool is in the mirror once, in order, unchanged, with its status; the
    head row says the tail. Returns how many. (A pruned spool: its records, from its first.)"""
    records = spool.records(limit=100_000)
    rows = mirrored_rows(pair, dbname, spool.terminal_id)
    rows = [row for row in rows if not records or row[0] >= records[0].seq]
    first = records[0].seq if records else 1
    assert [row[0] for row in rows] == [r.seq for r in records] == list(range(first, first + len(records)))
    for record, (_seq, record_id, prev_hash, hash_, wire, status, outcome, local, text) in zip(records, rows,
                                                                                              strict=True):
        assert (record_id, prev_hash, hash_) == (record.record_id, record.prev_hash, record.hash)
        # The record verbatim: the very text its hash is computed from; the jsonb view equals it.
        assert text == hashed_text(record) and hashlib.sha256(text.encode()).hexdigest() == record.hash
        assert _numbers_as_floats(wire) == _numbers_as_floats(jsonb_safe(record.wire())), record.seq
        assert (status, outcome, local) == (record.status, jsonb_safe(record.outcome),
                                            jsonb_safe(local_state(record))), record.seq
    with pair.admin(dbname) as conn:
        head = conn.execute("SELECT last_seq, last_hash FROM terminald_terminals WHERE terminal_id = %s",
                            (spool.terminal_id,)).fetchone()
    assert head == (records[-1].seq, records[-1].hash)
    return len(records)


def _numbers_as_floats(value: Any) -> Any:
    """``value`` with every number a float: how the jsonb view is compared with the record (jsonb
    writes 1.5e300 as an integer of 301 digits, 1e16 as 10000000000000000, -0.0 as 0)."""
    if isinstance(value, dict):
        return {k: _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers_as_floats(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def mirror_pass(spool: Spool, dsn: str, **options: Any) -> MirrorCopier:
    """One copier pass (``sync_once``) of a fresh copier, closed after; the copier, for its status."""
    async def once() -> MirrorCopier:
        copier = MirrorCopier(spool, dsn, **options)
        try:
            await copier.sync_once()
        finally:
            await copier.close()
        return copier

    return run(once())


async def until(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Poll ``predicate`` on the loop (it must not block) until true; fail after ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                value = predicate()
                if value:
                    return value
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}") from None
