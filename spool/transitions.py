"""Status changes after an append, run inside the writer's transaction.

    pending ──settled──▶ settled
       └────rejected──▶ rejected ──resolve (self_pay | voided)──▶ resolved

Each change writes the row and one ``history`` line in the same transaction.
A record that is already final keeps its state: central answers the same
record again (``duplicate``) after any retry.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from spool.chain import canonical_json
from spool.errors import InvalidTransition, NotFound
from spool.ids import now_rfc3339
from spool.records import RECORD_COLUMNS, Outcome, Record

__all__ = ["apply_outcomes_in", "describe", "resolve_in"]


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
    row = conn.execute("SELECT seq, status FROM records WHERE record_id = ?", (record_id,)).fetchone()
    if row is None:
        raise NotFound(f"no record {record_id!r}")
    seq, status = row
    if status != "rejected":
        raise InvalidTransition(f"record seq {seq} is {status}; only rejected records can be resolved")
    now = now_rfc3339()
    body = {"resolution": resolution, "note": note, "at": now}
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
