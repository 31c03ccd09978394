"""A spool ``Record`` as a mirror row, and what a restore needs from a mirror row.

The ``record`` column is the upstream-v1 wire record, unchanged (``Record.wire()``): the hash
chain is recomputed from it. ``status``/``outcome``/``status_at`` are central's answer as the
spool holds it; ``local_state`` carries the local facts the wire record does not (see schema.py),
so a restored spool is the one that died, up to its last mirrored change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from psycopg.types.json import Jsonb

from spool import Record

__all__ = [
    "INSERT_BATCH_SQL",
    "INSERT_SQL",
    "SELECT_MIRRORED",
    "STATUS_FROM",
    "UPDATE_STATUS_SQL",
    "MirroredRecord",
    "batch_param",
    "insert_params",
    "local_state",
    "status_params",
]

INSERT_SQL = (
    "INSERT INTO terminald_records (terminal_id, seq, record_id, prev_hash, hash, kind, business_time,"
    " total_fen, offline, record, status, outcome, status_at, local_state)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::timestamptz, %s, %s, %s, %s, %s, %s::timestamptz, %s)"
)

_compact_json = partial(json.dumps, separators=(",", ":"))

# INSERT_SQL's rows for a whole batch as one parameter: a JSON array of batch_param's objects,
# unpacked by the server. One statement and one json.dumps per batch instead of a bound statement
# and three JSON dumps per row: the copier's share of the daemon's GIL is mostly this per-row work.
# The recordset's types are the columns' own, so each value is read as INSERT_SQL's would be.
_BATCH_COLUMNS = (
    "terminal_id text, seq bigint, record_id uuid, prev_hash char(64), hash char(64), kind text,"
    " business_time timestamptz, total_fen bigint, offline boolean, record jsonb, status text, outcome jsonb,"
    " status_at timestamptz, local_state jsonb"
)
INSERT_BATCH_SQL = (
    "INSERT INTO terminald_records (terminal_id, seq, record_id, prev_hash, hash, kind, business_time,"
    " total_fen, offline, record, status, outcome, status_at, local_state)"
    " SELECT terminal_id, seq, record_id, prev_hash, hash, kind, business_time, total_fen, offline, record,"
    f" status, outcome, status_at, local_state FROM jsonb_to_recordset(%s) AS r({_BATCH_COLUMNS})"
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


def batch_param(records: Sequence[Record]) -> Jsonb:
    """The one value of INSERT_BATCH_SQL for ``records``: insert_params's values, by column."""
    # Without the default separators' spaces: a fifth less time in json.dumps (one C call that
    # holds the GIL throughout) and fewer bytes to send; the server parses both alike.
    return Jsonb([{
        "terminal_id": r.terminal_id, "seq": r.seq, "record_id": r.record_id, "prev_hash": r.prev_hash,
        "hash": r.hash, "kind": r.kind, "business_time": r.business_time, "total_fen": r.total_fen,
        "offline": r.offline, "record": r.wire(), "status": r.status, "outcome": r.outcome,
        "status_at": r.updated_at, "local_state": local_state(r),
    } for r in records], dumps=_compact_json)  # fmt: skip


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
