"""A spool ``Record`` as a mirror row, and what a restore needs from a mirror row.

The ``record`` column is the upstream-v1 wire record, unchanged (``Record.wire()``): the hash
chain is recomputed from it. ``status``/``outcome``/``status_at`` are central's answer as the
spool holds it; ``local_state`` carries the local facts the wire record does not (see schema.py),
so a restored spool is the one that died, up to its last mirrored change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from spool import Record

__all__ = [
    "INSERT_SQL",
    "SELECT_MIRRORED",
    "STATUS_FROM",
    "UPDATE_STATUS_SQL",
    "MirroredRecord",
    "insert_params",
    "local_state",
    "status_params",
]

INSERT_SQL = (
    "INSERT INTO terminald_records (terminal_id, seq, record_id, prev_hash, hash, kind, business_time,"
    " total_fen, offline, record, status, outcome, status_at, local_state)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::timestamptz, %s, %s, %s, %s, %s, %s::timestamptz, %s)"
)

# The statuses a record may be in before it reaches each one (spool/transitions.py): an update
# that arrives late never moves a mirrored record backwards.
STATUS_FROM: dict[str, list[str]] = {
    "pending": ["pending"],
    "settled": ["pending", "settled"],
    "rejected": ["pending", "rejected"],
    "resolved": ["pending", "rejected", "resolved"],
}

# Only the status columns, only of the record with this hash, only forwards, only if different.
UPDATE_STATUS_SQL = (
    "UPDATE terminald_records SET status = %(status)s, outcome = %(outcome)s,"
    " status_at = %(status_at)s::timestamptz, local_state = %(local)s"
    " WHERE terminal_id = %(terminal_id)s AND seq = %(seq)s AND hash = %(hash)s"
    " AND status = ANY(%(from)s)"
    " AND (status, outcome, local_state) IS DISTINCT FROM (%(status)s::text, %(outcome)s::jsonb, %(local)s::jsonb)"
)


def local_state(record: Record) -> dict[str, Any]:
    """The local facts outside the hashed record that a restore puts back."""
    return {
        "idempotency_key": record.idempotency_key,
        "request_digest": record.request_digest,
        "updated_at": record.updated_at,
        "resolution": record.resolution,
        "refund": record.refund,
        "outage": record.outage,
        "outage_reason": record.outage_reason,
        "contact_phone": record.contact_phone,
        "original_seq": record.original_seq,
    }


def insert_params(record: Record) -> tuple[Any, ...]:
    """The values of INSERT_SQL for ``record``."""
    return (
        record.terminal_id, record.seq, record.record_id, record.prev_hash, record.hash, record.kind,
        record.business_time, record.total_fen, record.offline, Jsonb(record.wire()), record.status,
        None if record.outcome is None else Jsonb(record.outcome), record.updated_at, Jsonb(local_state(record)),
    )  # fmt: skip


def status_params(record: Record) -> dict[str, Any]:
    """The values of UPDATE_STATUS_SQL for ``record`` as the spool holds it now."""
    return {
        "status": record.status,
        "outcome": None if record.outcome is None else Jsonb(record.outcome),
        "status_at": record.updated_at,
        "local": Jsonb(local_state(record)),
        "terminal_id": record.terminal_id,
        "seq": record.seq,
        "hash": record.hash,
        "from": STATUS_FROM.get(record.status, [record.status]),
    }


# The columns MirroredRecord.from_row reads, in its order.
SELECT_MIRRORED = "SELECT seq, record, status, outcome, local_state FROM terminald_records"


@dataclass(frozen=True)
class MirroredRecord:
    """One row read back from the mirror, for a restore."""

    seq: int
    wire: dict[str, Any]
    status: str
    outcome: dict[str, Any] | None
    local: dict[str, Any]

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> MirroredRecord:
        seq, wire, status, outcome, local = row
        return cls(seq=int(seq), wire=dict(wire), status=str(status),
                   outcome=None if outcome is None else dict(outcome), local=dict(local or {}))
