"""A spool ``Record`` as a mirror row, and what a restore needs from a mirror row.

The ``record_text`` column is the record itself: the canonical JSON the spool hashed (the
upstream-v1 wire record without ``hash``, ``spool.chain.canonical_json``), byte for byte, so
``sha256(record_text) = hash`` and a restore rebuilds the chain from it exactly. The ``record``
column is a queryable view of the same wire record (``hash`` included) for IT: ``jsonb`` is not
verbatim (it rewrites ``1e16`` as ``10000000000000000``, ``-0.0`` as ``0``, and cannot hold
U+0000, which is replaced by U+FFFD there), so nothing is verified against it. Rows written
before ``record_text`` existed have it NULL: a restore falls back to their ``record``.

``status``/``outcome``/``status_at`` are central's answer as the spool holds it; ``local_state``
carries the local facts the wire record does not (see schema.py), so a restored spool is the one
that died, up to its last mirrored change. They are ``jsonb`` too (outside the chain): a U+0000 in
them is stored as U+FFFD, so that such a value is never refused (and never stops the mirror).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from psycopg.types.json import Jsonb

from spool import Record
from spool.chain import record_text

__all__ = [
    "INSERT_BATCH_SQL",
    "INSERT_SQL",
    "SELECT_MIRRORED",
    "SELECT_MIRRORED_OLD",
    "STATUS_FROM",
    "UPDATE_STATUS_SQL",
    "MirroredRecord",
    "batch_param",
    "batch_text",
    "hashed_text",
    "insert_params",
    "jsonb_safe",
    "local_state",
    "status_params",
]

INSERT_SQL = (
    "INSERT INTO terminald_records (terminal_id, seq, record_id, prev_hash, hash, kind, business_time,"
    " total_fen, offline, record, record_text, status, outcome, status_at, local_state)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::timestamptz, %s, %s, %s, %s, %s, %s, %s::timestamptz, %s)"
)

# Without the default separators' spaces: a fifth less time in json.dumps (one C call that
# holds the GIL throughout) and fewer bytes to send; the server parses both alike.
_compact_json = partial(json.dumps, separators=(",", ":"))

# How json.dumps (ensure_ascii or not) and canonical_json write U+0000 in a string: the one
# character jsonb refuses (UntranslatableCharacter). Found in a JSON text it may also be part of
# a literal backslash and "u0000" (written \\u0000): a false alarm, which only costs the slow path.
_NUL_ESCAPE = "\\u0000"
_NUL_STAND_IN = "\ufffd"
# batch_text's stand-in for each record's view until the batch's text is written: dumped as
# '"\\u0000"', so that a batch whose text holds exactly one U+0000 escape per row has nothing
# else that looks like it (see _batch_dumps).
_SLOT = "\x00"
_SLOT_TEXT = '"\\u0000"'

# INSERT_SQL's rows for a whole batch as one parameter: a JSON array of batch_text's objects,
# unpacked by the server. One statement and one json.dumps per batch instead of a bound statement
# and three JSON dumps per row: the copier's share of the daemon's GIL is mostly this per-row work.
# The recordset's types are the columns' own, so each value is read as INSERT_SQL's would be.
# Each record is encoded once, as its hashed text: in the array as a JSON string (record_text: a
# jsonb string keeps it verbatim) and spliced in as the object the ``record`` view is parsed from
# (plus its hash), so neither the client nor the server encodes or parses it a second time.
_BATCH_COLUMNS = (
    "terminal_id text, seq bigint, record_id uuid, prev_hash char(64), hash char(64), kind text,"
    " business_time timestamptz, total_fen bigint, offline boolean, record jsonb, record_text text, status text,"
    " outcome jsonb, status_at timestamptz, local_state jsonb"
)
INSERT_BATCH_SQL = (
    "INSERT INTO terminald_records (terminal_id, seq, record_id, prev_hash, hash, kind, business_time,"
    " total_fen, offline, record, record_text, status, outcome, status_at, local_state)"
    " SELECT terminal_id, seq, record_id, prev_hash, hash, kind, business_time, total_fen, offline, record,"
    f" record_text, status, outcome, status_at, local_state FROM jsonb_to_recordset(%s) AS r({_BATCH_COLUMNS})"
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


def hashed_text(record: Record) -> str:
    """The text ``record.hash`` is the SHA-256 of: the canonical JSON of its wire record without
    ``hash`` (spool/chain.py's ``record_text``, the very bytes the spool and central hash)."""
    return record_text(record.wire())


def jsonb_safe(value: Any) -> Any:
    """``value`` with U+0000 in any string (or key) replaced by U+FFFD: what jsonb can hold."""
    if isinstance(value, str):
        return value.replace("\x00", _NUL_STAND_IN) if "\x00" in value else value
    if isinstance(value, dict):
        return {jsonb_safe(k): jsonb_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonb_safe(v) for v in value]
    return value


def _jsonb_dumps(value: Any) -> str:
    """json.dumps for a jsonb value: compact, and U+0000 made U+FFFD (found by its escape, so the
    usual value costs one search of its text, no walk)."""
    text = _compact_json(value)
    return _compact_json(jsonb_safe(value)) if _NUL_ESCAPE in text else text


def _view(text: str, hash_: str) -> dict[str, Any]:
    """The ``record`` view of a record from its hashed text, as an object (the slow path)."""
    wire: dict[str, Any] = json.loads(text)
    wire["hash"] = hash_
    return dict(jsonb_safe(wire))


def _batch_dumps(rows: list[dict[str, Any]]) -> str:
    """The text of batch_text's rows: each ``record`` slot filled with its record's hashed text
    plus its hash (an object, in the text as it is), U+0000 anywhere made U+FFFD where jsonb has
    to hold it (never in ``record_text``, which holds the escape, not the character)."""
    text = _compact_json(rows)
    if text.count(_NUL_ESCAPE) == len(rows):  # the slots only: no U+0000 anywhere else
        parts = text.split(_SLOT_TEXT)
        if len(parts) == len(rows) + 1:
            out = [parts[0]]
            for row, part in zip(rows, parts[1:], strict=True):
                # An object's key order does not matter to jsonb: hash goes last.
                out += (row["record_text"][:-1], ',"hash":"', row["hash"], '"}', part)
            return "".join(out)
    for row in rows:
        row["record"] = _view(row["record_text"], row["hash"])
    return _compact_json(jsonb_safe(rows))


def insert_params(record: Record) -> tuple[Any, ...]:
    """The values of INSERT_SQL for ``record``."""
    return (
        record.terminal_id, record.seq, record.record_id, record.prev_hash, record.hash, record.kind,
        record.business_time, record.total_fen, record.offline, Jsonb(record.wire(), dumps=_jsonb_dumps),
        hashed_text(record), record.status,
        None if record.outcome is None else Jsonb(record.outcome, dumps=_jsonb_dumps), record.updated_at,
        Jsonb(local_state(record), dumps=_jsonb_dumps),
    )  # fmt: skip


def batch_text(records: Sequence[Record]) -> str:
    """The JSON text of INSERT_BATCH_SQL's one value for ``records``: insert_params's values, by
    column. Blocking (the copier builds the next batch's in a thread while one is written)."""
    return _batch_dumps([{
        "terminal_id": r.terminal_id, "seq": r.seq, "record_id": r.record_id, "prev_hash": r.prev_hash,
        "hash": r.hash, "kind": r.kind, "business_time": r.business_time, "total_fen": r.total_fen,
        "offline": r.offline, "record": _SLOT, "record_text": hashed_text(r), "status": r.status,
        "outcome": r.outcome, "status_at": r.updated_at, "local_state": local_state(r),
    } for r in records])  # fmt: skip


def batch_param(records: Sequence[Record], text: str | None = None) -> Jsonb:
    """INSERT_BATCH_SQL's one value for ``records``; ``text``: their batch_text, if built already."""
    return Jsonb(batch_text(records) if text is None else text, dumps=_as_is)


def _as_is(text: str) -> str:
    return text


def status_params(record: Record) -> dict[str, Any]:
    """The values of UPDATE_STATUS_SQL for ``record`` as the spool holds it now."""
    return {
        "status": record.status,
        "outcome": None if record.outcome is None else Jsonb(record.outcome, dumps=_jsonb_dumps),
        "status_at": record.updated_at,
        "local": Jsonb(local_state(record), dumps=_jsonb_dumps),
        "terminal_id": record.terminal_id,
        "seq": record.seq,
        "hash": record.hash,
        "from": STATUS_FROM.get(record.status, [record.status]),
    }


# The columns MirroredRecord.from_row reads, in its order: the record's hashed text, and its
# jsonb view only where there is no text (a row written before the column existed).
SELECT_MIRRORED = ("SELECT seq, record_text, hash, CASE WHEN record_text IS NULL THEN record END,"
                   " status, outcome, local_state FROM terminald_records")
# The same for a database whose schema predates record_text (init-db not run since the upgrade).
SELECT_MIRRORED_OLD = ("SELECT seq, NULL::text, hash, record, status, outcome, local_state"
                       " FROM terminald_records")


@dataclass(frozen=True)
class MirroredRecord:
    """One row read back from the mirror, for a restore."""

    seq: int
    wire: dict[str, Any]
    status: str
    outcome: dict[str, Any] | None
    local: dict[str, Any]
    verbatim: bool = True  # False: read from the jsonb view (a row older than record_text)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> MirroredRecord:
        seq, text, hash_, view, status, outcome, local = row
        if text is not None:
            wire = json.loads(text)  # canonical JSON: parsed and encoded again, the same bytes
            if not isinstance(wire, dict):
                raise ValueError(f"seq {seq}: record_text is not a JSON object")
            wire["hash"] = str(hash_)
        else:
            wire = dict(view)
        return cls(seq=int(seq), wire=wire, status=str(status), outcome=None if outcome is None else dict(outcome),
                   local=dict(local or {}), verbatim=text is not None)
