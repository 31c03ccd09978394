"""The heartbeat: what the fleet view shows of a terminal, upserted into ``terminald_terminals``.

The daemon gives the values (its mode, backlog, outage, alarms, version); the copier adds its own
lag and alarms. ``seen_at`` is the server's clock, so every counter is measured by one clock.
The head (``last_seq``/``last_hash``) is never touched here: only the append rule moves it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from spool import GENESIS_HASH

__all__ = ["Heartbeat", "send_heartbeat"]

_UPSERT_SQL = (
    "INSERT INTO terminald_terminals (terminal_id, last_seq, last_hash, mode, pending, pending_amount_fen,"
    " oldest_pending_at, outage_since, alarms, version, seen_at, overdue_reentries, spool_last_seq,"
    " oldest_unmirrored_at)"
    " VALUES (%(terminal_id)s, 0, %(genesis)s, %(mode)s, %(pending)s, %(pending_amount_fen)s,"
    " %(oldest_pending_at)s::timestamptz, %(outage_since)s::timestamptz, %(alarms)s, %(version)s, now(),"
    " %(overdue_reentries)s, %(spool_last_seq)s, %(oldest_unmirrored_at)s::timestamptz)"
    " ON CONFLICT (terminal_id) DO UPDATE SET mode = EXCLUDED.mode, pending = EXCLUDED.pending,"
    " pending_amount_fen = EXCLUDED.pending_amount_fen, oldest_pending_at = EXCLUDED.oldest_pending_at,"
    " outage_since = EXCLUDED.outage_since, alarms = EXCLUDED.alarms, version = EXCLUDED.version,"
    " seen_at = EXCLUDED.seen_at, overdue_reentries = EXCLUDED.overdue_reentries,"
    " spool_last_seq = EXCLUDED.spool_last_seq, oldest_unmirrored_at = EXCLUDED.oldest_unmirrored_at"
)


@dataclass(frozen=True)
class Heartbeat:
    """The daemon's side of a terminal's fleet row. Times are RFC 3339 (the spool's) or None."""

    mode: str  # "online", "offline", "planned_downtime", ... as /v1/status says
    pending: int
    pending_amount_fen: int
    oldest_pending_at: str | None
    outage_since: str | None
    overdue_reentries: int  # pending re-entries past their deadline (DESIGN: 10 working days)
    version: str
    alarms: Sequence[dict[str, Any]] = field(default_factory=tuple)  # each at least {"code": ...}


async def send_heartbeat(conn: psycopg.AsyncConnection[Any], terminal_id: str, beat: Heartbeat, *,
                         spool_last_seq: int | None, oldest_unmirrored_at: str | None,
                         mirror_alarms: Sequence[dict[str, Any]] = ()) -> None:
    """Upsert ``beat`` with the copier's own figures; the terminal's alarms first, then the mirror's."""
    await conn.execute(_UPSERT_SQL, {
        "terminal_id": terminal_id,
        "genesis": GENESIS_HASH,
        "mode": beat.mode,
        "pending": beat.pending,
        "pending_amount_fen": beat.pending_amount_fen,
        "oldest_pending_at": beat.oldest_pending_at,
        "outage_since": beat.outage_since,
        "alarms": Jsonb([*map(dict, beat.alarms), *map(dict, mirror_alarms)]),
        "version": beat.version,
        "overdue_reentries": beat.overdue_reentries,
        "spool_last_seq": spool_last_seq,
        "oldest_unmirrored_at": oldest_unmirrored_at,
    })
