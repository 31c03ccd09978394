"""The fleet query: every counter's row of ``terminald_fleet``, what needs attention first.

``FLEET_SQL`` is the one query behind ``terminald fleet`` and the one docs/operations.md gives
for Grafana and psql, so IT sees the same order wherever it looks. The order, by ``attention``:

    0  an alarm, an overdue re-entry, or uploading halted: someone has to act
    1  offline (or in a planned downtime) with sales pending: money waits for central
    2  the mirror lags, or the counter has not been heard from for 10 minutes: the second copy
       is behind (or unknown), so a dead disk would lose records
    3  the rest

and inside each, the worst first (most alarms, most overdue, most money pending, longest lag,
longest silence), then the terminal id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

__all__ = ["ATTENTION", "FLEET_SQL", "SILENT_AFTER", "FleetRow", "fleet_rows"]

# A heartbeat goes every 30 s (copier.heartbeat_s); this much silence means the counter, its
# network or its mirror is down, or the PC is off for the night. (Written out in FLEET_SQL.)
SILENT_AFTER = "10 minutes"

ATTENTION = {0: "act now", 1: "offline, pending", 2: "mirror behind", 3: "ok"}

# The query as IT pastes it into psql or Grafana (docs/operations.md shows it verbatim: a test
# keeps the two equal). Alarms are a JSON array written by the heartbeat; anything else (a hand
# edit) counts as none rather than failing the whole query for one row.
FLEET_SQL = """\
SELECT f.terminal_id, f.mode, f.pending, f.pending_amount_fen, f.oldest_pending_at,
       f.overdue_reentries, f.outage_since, f.mirrored_seq, f.spool_last_seq,
       f.mirror_lag_records, f.mirror_lag, f.alarms, f.version, f.seen_at, f.since_seen,
       a.attention
FROM terminald_fleet f
CROSS JOIN LATERAL (SELECT CASE WHEN jsonb_typeof(f.alarms) = 'array'
                                THEN jsonb_array_length(f.alarms) ELSE 0 END AS alarms) n
CROSS JOIN LATERAL (SELECT CASE
    WHEN n.alarms > 0 OR COALESCE(f.overdue_reentries, 0) > 0 OR f.mode = 'halted' THEN 0
    WHEN COALESCE(f.mode, 'online') <> 'online' AND COALESCE(f.pending, 0) > 0 THEN 1
    WHEN f.mirror_lag_records > 0 OR f.seen_at IS NULL
         OR f.since_seen > interval '10 minutes' THEN 2
    ELSE 3 END AS attention) a
ORDER BY a.attention, n.alarms DESC, f.overdue_reentries DESC NULLS LAST,
         f.pending_amount_fen DESC NULLS LAST, f.mirror_lag DESC NULLS LAST,
         f.since_seen DESC NULLS FIRST, f.terminal_id;
"""


@dataclass(frozen=True)
class FleetRow:
    """One counter, as the fleet view shows it (None: not reported yet)."""

    terminal_id: str
    mode: str | None
    pending: int | None
    pending_amount_fen: int | None
    oldest_pending_at: datetime | None
    overdue_reentries: int | None
    outage_since: datetime | None
    mirrored_seq: int
    spool_last_seq: int | None
    mirror_lag_records: int
    mirror_lag: timedelta
    alarms: tuple[dict[str, Any], ...]
    version: str | None
    seen_at: datetime | None
    since_seen: timedelta | None
    attention: int

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> FleetRow:
        values = list(row)
        alarms = values[11]
        values[11] = tuple(a if isinstance(a, dict) else {"code": str(a)} for a in alarms) \
            if isinstance(alarms, list) else ()
        return cls(*values)

    @property
    def alarm_codes(self) -> list[str]:
        return [str(alarm.get("code", "?")) for alarm in self.alarms]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: times in RFC 3339, durations in seconds."""
        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        def seconds(value: timedelta | None) -> float | None:
            return None if value is None else round(value.total_seconds(), 3)

        return {
            "terminal_id": self.terminal_id, "attention": self.attention, "mode": self.mode,
            "pending": self.pending, "pending_amount_fen": self.pending_amount_fen,
            "oldest_pending_at": when(self.oldest_pending_at), "overdue_reentries": self.overdue_reentries,
            "outage_since": when(self.outage_since), "mirrored_seq": self.mirrored_seq,
            "spool_last_seq": self.spool_last_seq, "mirror_lag_records": self.mirror_lag_records,
            "mirror_lag_s": seconds(self.mirror_lag), "alarms": list(self.alarms), "version": self.version,
            "seen_at": when(self.seen_at), "since_seen_s": seconds(self.since_seen),
        }  # fmt: skip


def fleet_rows(conn: Any) -> list[FleetRow]:
    """Every counter (a psycopg ``Connection`` of a ``terminald_reader`` member or the owner),
    in ``FLEET_SQL``'s order."""
    return [FleetRow.from_row(row) for row in conn.execute(FLEET_SQL).fetchall()]
