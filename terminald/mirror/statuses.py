"""Status changes (settled, rejected, resolved, the outage fact, a refund) as updates of mirrored
rows, outside the chain: only the status columns, only forwards (rows.UPDATE_STATUS_SQL).

Async, on the mirror's connection; the spool is read in a thread (``changes``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import psycopg

from spool import Record, Spool
from terminald.mirror.changes import records_at
from terminald.mirror.rows import UPDATE_STATUS_SQL, jsonb_safe, local_state, status_params

__all__ = ["OPEN_ROWS_SQL", "push_statuses", "reconcile"]

# The mirrored rows whose state may still change (spool/transitions.py): pending (an outcome, the
# outage fact), rejected (a resolution), and an outage sale whose refund is not handed over yet
# (settled, or resolved: a voided one may owe all the patient paid).
OPEN_ROWS_SQL = (
    "SELECT seq, status, outcome, local_state FROM terminald_records WHERE terminal_id = %s AND seq <= %s"
    " AND (status IN ('pending', 'rejected')"
    "  OR (status IN ('settled', 'resolved') AND kind = 'settlement' AND local_state->>'outage' = 'true'"
    "      AND COALESCE(local_state->'refund', 'null'::jsonb) = 'null'::jsonb))"
)


async def push_statuses(conn: psycopg.AsyncConnection[Any], records: Sequence[Record]) -> None:
    """Bring the mirrored rows of ``records`` to their state in the spool, in one transaction."""
    if not records:
        return
    async with conn.transaction(), conn.cursor() as cur:
        await cur.executemany(UPDATE_STATUS_SQL, [status_params(record) for record in records])


async def reconcile(conn: psycopg.AsyncConnection[Any], spool: Spool, head_seq: int) -> int:
    """Compare every mirrored row that may still change with the spool and push the differences:
    after a start, or when the history cursor lost its place. Returns how many were pushed."""
    cur = await conn.execute(OPEN_ROWS_SQL, (spool.terminal_id, head_seq))
    mirrored = {int(seq): (status, outcome, local) for seq, status, outcome, local in await cur.fetchall()}
    if not mirrored:
        return 0
    current = await asyncio.to_thread(records_at, spool, list(mirrored))
    # As the mirror holds them: a U+0000 there is U+FFFD (rows.jsonb_safe).
    stale = [record for record in current
             if mirrored[record.seq] != (record.status, jsonb_safe(record.outcome), jsonb_safe(local_state(record)))]
    await push_statuses(conn, stale)
    return len(stale)

