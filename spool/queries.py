"""The statements the writer and the readers share, each with its one job.

The writer's batch statements take a whole group commit at once (see
docs/spool.md, "Group commit"): their number must not grow with the batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from spool.chain import GENESIS_HASH
from spool.records import RECORD_COLUMNS, ChangeMark, Changes, Record, SpoolStats, Totals

__all__ = [
    "changes_since_in",
    "checkpoint_in",
    "insert_rows",
    "load_tail",
    "newest_change_in",
    "pending_offline_fen",
    "records_at_in",
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


def checkpoint_in(conn: sqlite3.Connection) -> tuple[int, str]:
    """(seq, hash) of the prune checkpoint, else (0, genesis): the chain held starts after it."""
    row = conn.execute("SELECT seq, hash FROM checkpoint WHERE id = 1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


def pending_offline_fen(conn: sqlite3.Connection) -> int:
    """The amount of the outage settlements (paid in full at the counter) still pending, in fen.

    Revokes are not counted: their negative amounts must never make room for more sales.
    """
    row = conn.execute(
        "SELECT COALESCE(SUM(amount), 0) FROM status_totals"
        " WHERE status = 'pending' AND kind = 'settlement' AND outage = 1"
    ).fetchone()
    return int(row[0])


def status_totals(conn: sqlite3.Connection) -> dict[tuple[str, str, bool], tuple[int, int]]:
    """(status, kind, outage) -> (count, amount in fen), from the trigger-kept table."""
    rows = conn.execute("SELECT status, kind, outage, count, amount FROM status_totals")
    return {(str(r[0]), str(r[1]), bool(r[2])): (int(r[3]), int(r[4])) for r in rows}


def revoke_target(conn: sqlite3.Connection, record_id: str) -> tuple[int, str, str, int, str | None] | None:
    """(seq, kind, status, total_fen, the revoke already cancelling it) of a revoke's original."""
    row = conn.execute(
        "SELECT seq, kind, status, total_fen,"
        " (SELECT r.record_id FROM records r WHERE r.original_seq = records.seq"
        "  AND r.status IN ('pending', 'settled') ORDER BY r.seq LIMIT 1)"
        " FROM records WHERE record_id = ?",
        (record_id,),
    ).fetchone()
    if row is None:
        return None
    return int(row[0]), str(row[1]), str(row[2]), int(row[3]), row[4]


_INSERT = (
    "INSERT INTO records (seq, record_id, terminal_id, kind, business_time, business_date,"
    " spooled_at, offline, offline_reason, payload, prev_hash, hash, status, idempotency_key,"
    " request_digest, total_fen, updated_at, updated_epoch, original_seq, outage, outage_reason,"
    " contact_phone) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_ON_TAKEN_KEY = " ON CONFLICT (idempotency_key) DO NOTHING"
# Rows (or keys) per statement: well under SQLite's bound-variable limit, and few enough
# statement shapes (one per length) to stay in the connection's statement cache.
_ROWS_PER_INSERT = 32


# The statement for n rows, built once: sqlite3's statement cache is keyed by the SQL text,
# which would otherwise be joined and hashed again for every batch (0.4 KB for one row, 2.8 KB for 32).
_INSERT_SQL = {n: _INSERT + ", ".join([_ROW] * n) + _ON_TAKEN_KEY for n in range(1, _ROWS_PER_INSERT + 1)}


def insert_rows(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> int:
    """Insert new records; how many went in (a row whose idempotency key is taken does not)."""
    if len(rows) == 1:  # one appender: the usual batch
        return int(conn.execute(_INSERT_SQL[1], rows[0]).rowcount)
    inserted = 0
    for chunk in _chunks(rows):
        inserted += conn.execute(_INSERT_SQL[len(chunk)], [value for row in chunk for value in row]).rowcount
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


def newest_change_in(conn: sqlite3.Connection) -> ChangeMark | None:
    row = conn.execute("SELECT id, seq, at FROM history ORDER BY id DESC LIMIT 1").fetchone()
    return None if row is None else ChangeMark(int(row[0]), int(row[1]), str(row[2]))


def changes_since_in(conn: sqlite3.Connection, mark: ChangeMark | None, limit: int) -> Changes:
    """See ``Spool.changes_since``: one snapshot, so the mark's check and the range read agree."""
    conn.execute("BEGIN")
    try:
        if mark is not None:
            row = conn.execute("SELECT seq, at FROM history WHERE id = ?", (mark.id,)).fetchone()
            if row is None or int(row[0]) != mark.seq or str(row[1]) != mark.at:
                return Changes(seqs=(), mark=newest_change_in(conn), broken=True)
        rows = conn.execute("SELECT id, seq, at FROM history WHERE id > ? ORDER BY id LIMIT ?",
                            (0 if mark is None else mark.id, limit)).fetchall()
    finally:
        conn.execute("COMMIT")
    if not rows:
        return Changes(seqs=(), mark=mark, broken=False)
    last = rows[-1]
    seqs = tuple(dict.fromkeys(int(r[1]) for r in rows))
    return Changes(seqs=seqs, mark=ChangeMark(int(last[0]), int(last[1]), str(last[2])), broken=False)


_SEQS_PER_SELECT = 500  # well below SQLite's limit on bound parameters


def records_at_in(conn: sqlite3.Connection, seqs: Sequence[int]) -> list[Record]:
    found: list[Record] = []
    wanted = sorted(set(seqs))
    for start in range(0, len(wanted), _SEQS_PER_SELECT):
        chunk = wanted[start : start + _SEQS_PER_SELECT]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE seq IN ({marks}) ORDER BY seq", chunk)
        found += [Record.from_row(row) for row in rows]
    return found


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

    def both(status: str) -> tuple[int, int]:  # every kind, outage or not
        parts = [value for key, value in totals.items() if key[0] == status]
        return sum(p[0] for p in parts), sum(p[1] for p in parts)

    pending, amount = both("pending")
    return SpoolStats(
        pending=pending,
        pending_amount_fen=amount,
        oldest_pending_at=oldest,
        rejected_unresolved=both("rejected")[0],
        settled_total=both("settled")[0],
        last_seq=last_seq,
        last_hash=last_hash,
        pending_offline_fen=totals.get(("pending", "settlement", True), (0, 0))[1],
    )


def _outcome_part(key: str) -> str:
    """SQL: the integer ``key`` of a record's stored outcome, else NULL (never an error on bad JSON)."""
    return (
        f"CASE WHEN json_valid(outcome) THEN CASE WHEN json_type(outcome, '$.{key}') = 'integer'"
        f" THEN json_extract(outcome, '$.{key}') END END"
    )


# Local status -> how central names it in `totals.by_status` (upstream-v1).
_CENTRAL_WORDS = {"settled": "accepted", "rejected": "rejected", "resolved": "rejected", "pending": "pending"}
_UNCERTAIN_LISTED = 1000


def totals_on(conn: sqlite3.Connection, date: str) -> Totals:
    """The business date ``date`` (YYYY-MM-DD) as central counts it: see ``Totals``.

    Settled records (accepted by central) are counted and summed (revokes are negative);
    every record is counted in ``by_status``; pending records and settled ones whose outcome
    lacks the fund/account figures are named as ``uncertain``. One snapshot.
    """
    fund, account = _outcome_part("fund_paid_fen"), _outcome_part("account_paid_fen")
    uncertain_where = (
        f"business_date = ? AND (status NOT IN ('settled', 'rejected', 'resolved')"
        f" OR (status = 'settled' AND ({fund} IS NULL OR {account} IS NULL)))"
    )
    conn.execute("BEGIN")
    try:
        rows = conn.execute(
            f"SELECT status, COUNT(*), COALESCE(SUM(total_fen), 0), COALESCE(SUM({fund}), 0),"
            f" COALESCE(SUM({account}), 0) FROM records WHERE business_date = ? GROUP BY status",
            (date,),
        ).fetchall()
        listed = conn.execute(
            # With each record its revoke link, so a difference on a revoked sale reads as one.
            "SELECT record_id, seq, kind, status, total_fen,"
            " json_extract(CASE WHEN json_valid(payload) THEN payload END, '$.original_record_id'),"
            " (SELECT r.record_id FROM records r WHERE r.original_seq = records.seq"
            "  AND r.status IN ('pending', 'settled') ORDER BY r.seq LIMIT 1)"
            f" FROM records WHERE {uncertain_where}"
            f" ORDER BY seq LIMIT {_UNCERTAIN_LISTED}",
            (date,),
        ).fetchall()
        uncertain_count = len(listed)
        if uncertain_count == _UNCERTAIN_LISTED:
            uncertain_count = int(conn.execute(f"SELECT COUNT(*) FROM records WHERE {uncertain_where}", (date,))
                                  .fetchone()[0])
    finally:
        conn.execute("COMMIT")
    by_status: dict[str, int] = {}
    settled = (0, 0, 0, 0)
    for status, count, total, fund_sum, account_sum in rows:
        word = _CENTRAL_WORDS.get(str(status), str(status))
        by_status[word] = by_status.get(word, 0) + int(count)
        if status == "settled":
            settled = (int(count), int(total), int(fund_sum), int(account_sum))
    uncertain = tuple(
        {
            "record_id": str(r[0]),
            "seq": int(r[1]),
            "kind": str(r[2]),
            "status": str(r[3]),
            "total_fen": int(r[4]),
            "why": "outcome_missing" if r[3] == "settled" else "pending" if r[3] == "pending" else "unknown_status",
            "original_id": r[5],
            "revoked_by": r[6],
        }
        for r in listed
    )
    return Totals(
        date=date,
        count=settled[0],
        total_fen=settled[1],
        fund_paid_fen=settled[2],
        account_paid_fen=settled[3],
        by_status=by_status,
        uncertain=uncertain,
        uncertain_count=uncertain_count,
    )
