"""Status changes after an append, run inside the writer's transaction.

    pending ──settled──▶ settled ──refund (an outage sale: the fund's share handed over)
       └────rejected──▶ rejected ──resolve (self_pay | voided)──▶ resolved

Each change writes the row and one ``history`` line in the same transaction.
A record that is already final keeps its state: central answers the same
record again (``duplicate``) after any retry.

Besides the status, two money facts are fixed here, once: whether the patient
paid in full at the counter (``mark_outage_in``: the POS was answered
"pending"), and the hand-over of what the fund then owes them (``refund_in``).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from spool.chain import canonical_json
from spool.errors import InvalidTransition, NotFound, RefundMismatch
from spool.ids import now_rfc3339
from spool.records import RECORD_COLUMNS, Outcome, Record

__all__ = ["apply_outcomes_in", "describe", "mark_outage_in", "refund_in", "resolve_in"]


def describe(detail: dict[str, Any]) -> str:
    """A one-line history text for central's outcome detail."""
    if "code" in detail:
        return f"{detail['code']}: {detail.get('message', '')}".rstrip(": ")
    return canonical_json(detail).decode("utf-8")


def _fetch(conn: sqlite3.Connection, seq: int) -> Record:
    row = conn.execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE seq = ?", (seq,)).fetchone()
    return Record.from_row(row)


def apply_outcomes_in(conn: sqlite3.Connection, outcomes: Sequence[Outcome]) -> list[Record]:
    now, epoch = now_rfc3339(), time.time()
    result: list[Record] = []
    for outcome in outcomes:
        row = conn.execute("SELECT status FROM records WHERE seq = ?", (outcome.seq,)).fetchone()
        if row is None:
            raise NotFound(f"no record with seq {outcome.seq}")
        if row[0] == "pending":
            conn.execute(
                "UPDATE records SET status = ?, outcome = ?, updated_at = ?, updated_epoch = ? WHERE seq = ?",
                (outcome.status, canonical_json(outcome.detail).decode(), now, epoch, outcome.seq),
            )
            conn.execute(
                "INSERT INTO history (seq, at, status, detail) VALUES (?, ?, ?, ?)",
                (outcome.seq, now, outcome.status, describe(outcome.detail)),
            )
        result.append(_fetch(conn, outcome.seq))
    return result


def resolve_in(conn: sqlite3.Connection, record_id: str, resolution: str, note: str | None) -> Record:
    row = conn.execute("SELECT seq, status, kind, outage, total_fen FROM records WHERE record_id = ?",
                       (record_id,)).fetchone()
    if row is None:
        raise NotFound(f"no record {record_id!r}")
    seq, status, kind, outage, total_fen = row
    if status != "rejected":
        raise InvalidTransition(f"record seq {seq} is {status}; only rejected records can be resolved")
    now = now_rfc3339()
    # What voiding owes the patient, decided here, once (Record.refund_owed_fen reads it): all they
    # paid for an outage sale, unless a revoke of it was ever recorded: the counter handed the
    # money back with that revoke, whatever central later said of it.
    owed = 0
    if resolution == "voided" and kind == "settlement" and outage == 1:
        revoked = conn.execute("SELECT 1 FROM records WHERE original_seq = ? LIMIT 1", (seq,)).fetchone()
        owed = 0 if revoked is not None else int(total_fen)
    body = {"resolution": resolution, "note": note, "at": now, "owed_fen": owed}
    conn.execute(
        "UPDATE records SET status = 'resolved', resolution = ?, updated_at = ?, updated_epoch = ?"
        " WHERE seq = ?",
        (json.dumps(body, ensure_ascii=False), now, time.time(), seq),
    )
    detail = resolution if not note else f"{resolution}: {note}"
    conn.execute(
        "INSERT INTO history (seq, at, status, detail) VALUES (?, ?, 'resolved', ?)", (seq, now, detail)
    )
    return _fetch(conn, seq)


def mark_outage_in(conn: sqlite3.Connection, record_id: str, reason: str) -> Record:
    """The POS is told "pending": the patient pays in full. Only while central has not decided.

    Returns the record as stored: if central's outcome was applied first, it is no outage sale
    (the caller answers with that outcome instead); a fact already decided is kept as it is.
    """
    row = conn.execute("SELECT seq FROM records WHERE record_id = ?", (record_id,)).fetchone()
    if row is None:
        raise NotFound(f"no record {record_id!r}")
    seq = int(row[0])
    changed = conn.execute(
        "UPDATE records SET outage = 1, outage_reason = ? WHERE seq = ? AND status = 'pending' AND outage IS NULL",
        (reason, seq),
    ).rowcount
    if changed:
        conn.execute("INSERT INTO history (seq, at, status, detail) VALUES (?, ?, 'pending', ?)",
                     (seq, now_rfc3339(), f"answered pending ({reason}): the patient pays in full"))
    return _fetch(conn, seq)


def refund_in(conn: sqlite3.Connection, record_id: str, paid_fen: int, operator: dict[str, Any]) -> Record:
    """Record that what an outage sale owed the patient (``Record.refund_owed_fen``) was handed
    over; once, exactly."""
    row = conn.execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE record_id = ?", (record_id,)).fetchone()
    if row is None:
        raise NotFound(f"no record {record_id!r}")
    record = Record.from_row(row)
    if record.refund is not None:
        raise InvalidTransition(f"record seq {record.seq}: the refund was handed over already")
    owed = record.refund_owed_fen
    if owed <= 0:
        raise InvalidTransition(f"record seq {record.seq}: nothing is owed to the patient")
    if paid_fen != owed:
        raise RefundMismatch(f"record seq {record.seq}: {owed} fen is owed, not {paid_fen}", owed)
    now = now_rfc3339()
    body = {"paid_fen": paid_fen, "operator": operator, "at": now}
    conn.execute("UPDATE records SET refund = ?, updated_at = ?, updated_epoch = ? WHERE seq = ?",
                 (json.dumps(body, ensure_ascii=False), now, time.time(), record.seq))
    conn.execute("INSERT INTO history (seq, at, status, detail) VALUES (?, ?, ?, ?)",
                 (record.seq, now, record.status, f"refund of {paid_fen} fen handed to the patient"))
    return _fetch(conn, record.seq)
