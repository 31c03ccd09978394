"""The statements the writer and the readers share, each with its one job.

The writer's batch statements take a whole group commit at once (see
docs/spool.md, "Group commit"): their number must not grow with the batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any, TypeVar

from spool.chain import GENESIS_HASH
from spool.records import RECORD_COLUMNS, Record, SpoolStats, Totals

__all__ = [
    "insert_rows",
    "load_tail",
    "pending_offline_fen",
    "stats_in",
    "status_totals",
    "stored_with_keys",
    "totals_on",
]

T = TypeVar("T")


def load_tail(conn: sqlite3.Connection) -> tuple[int, str]:
    """(seq, hash) of the newest record, else of the prune checkpoint, else (0, genesis)."""
    row = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    if row is None:
        row = conn.execute("SELECT seq, hash FROM checkpoint WHERE id = 1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


def pending_offline_fen(conn: sqlite3.Connection) -> int:
    """The amount of the records pending that were taken offline, in fen."""
    row = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM status_totals WHERE status = 'pending' AND offline = 1"
    ).fetchone()
    return int(row[0])


def status_totals(conn: sqlite3.Connection) -> dict[tuple[str, bool], tuple[int, int]]:
    """(status, offline) -> (count, amount in fen), from the trigger-kept table."""
    rows = conn.execute("SELECT status, offline, count, amount FROM status_totals")
    return {(str(r[0]), bool(r[1])): (int(r[2]), int(r[3])) for r in rows}


_INSERT = (
    "INSERT INTO records (seq, record_id, terminal_id, kind, business_time, business_date,"
    " spooled_at, offline, offline_reason, payload, prev_hash, hash, status, idempotency_key,"
    " request_digest, total_fen, updated_at, updated_epoch) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)"
_ON_TAKEN_KEY = " ON CONFLICT (idempotency_key) DO NOTHING"
# Rows (or keys) per statement: well under SQLite's bound-variable limit, and few enough
# statement shapes (one per length) to stay in the connection's statement cache.
_ROWS_PER_INSERT = 32


def insert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Insert new records; how many went in (a row whose idempotency key is taken does not)."""
    inserted = 0
    for chunk in _chunks(rows):
        sql = _INSERT + ", ".join([_ROW] * len(chunk)) + _ON_TAKEN_KEY
        inserted += conn.execute(sql, [value for row in chunk for value in row]).rowcount
    return inserted


def stored_with_keys(conn: sqlite3.Connection, keys: list[str]) -> dict[str, Record]:
    """The records already holding any of ``keys``, by key (usually none: one statement)."""
    found: dict[str, Record] = {}
    for chunk in _chunks(list(dict.fromkeys(keys))):
        marks = ", ".join("?" * len(chunk))
        for row in conn.execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE idempotency_key IN ({marks})", chunk):
            record = Record.from_row(row)
            found[str(record.idempotency_key)] = record
    return found


def _chunks(items: list[T]) -> Iterator[list[T]]:
    for start in range(0, len(items), _ROWS_PER_INSERT):
        yield items[start : start + _ROWS_PER_INSERT]


def stats_in(conn: sqlite3.Connection) -> SpoolStats:
    """The numbers of the status page, from one snapshot."""
    conn.execute("BEGIN")
    try:
        totals = status_totals(conn)
        oldest_seq = conn.execute("SELECT MIN(seq) FROM records WHERE status = 'pending'").fetchone()[0]
        oldest = None
        if oldest_seq is not None:
            oldest = conn.execute("SELECT spooled_at FROM records WHERE seq = ?", (oldest_seq,)).fetchone()[0]
        last_seq, last_hash = load_tail(conn)
    finally:
        conn.execute("COMMIT")

    def both(status: str) -> tuple[int, int]:  # online and offline together
        online, offline = totals.get((status, False), (0, 0)), totals.get((status, True), (0, 0))
        return online[0] + offline[0], online[1] + offline[1]

    pending, amount = both("pending")
    return SpoolStats(
        pending=pending,
        pending_amount_fen=amount,
        oldest_pending_at=oldest,
        rejected_unresolved=both("rejected")[0],
        settled_total=both("settled")[0],
        last_seq=last_seq,
        last_hash=last_hash,
        pending_offline_fen=totals.get(("pending", True), (0, 0))[1],
    )


def totals_on(conn: sqlite3.Connection, date: str) -> Totals:
    """Count and sum of the records of business date ``date`` (YYYY-MM-DD), by status."""
    rows = conn.execute(
        "SELECT status, COUNT(*), COALESCE(SUM(total_fen), 0) FROM records WHERE business_date = ? GROUP BY status",
        (date,),
    ).fetchall()
    by_status = {row[0]: int(row[1]) for row in rows}
    return Totals(date=date, count=sum(by_status.values()), total_fen=sum(int(row[2]) for row in rows),
                  by_status=by_status)
