"""Whole-file operations: verification at open, full check, export, prune.

These read through their own connections (or the writer's transaction for
prune) so a long check or export never holds the lock the API's reads use.
"""

from __future__ import annotations

import csv
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from spool.chain import GENESIS_HASH, verify_links
from spool.errors import InvalidRequest, SpoolCorrupt, SpoolError
from spool.ids import now_rfc3339
from spool.records import RECORD_COLUMNS, CheckReport, Record
from spool.store import connect, translate

__all__ = ["EXPORT_FORMATS", "check_file", "export_file", "prune_in", "verify_tail"]

EXPORT_FORMATS = ("jsonl", "csv", "sqlite")
TAIL_RECORDS = 64
_CHUNK = 2000
_CSV_FIELDS = (
    "seq",
    "record_id",
    "terminal_id",
    "kind",
    "business_time",
    "spooled_at",
    "offline",
    "offline_reason",
    "total_fen",
    "status",
    "idempotency_key",
    "updated_at",
    "prev_hash",
    "hash",
    "payload",
    "outcome",
    "resolution",
)


def _checkpoint(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM checkpoint WHERE id = 1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS_HASH)


def _records_from(conn: sqlite3.Connection, after_seq: int) -> Iterator[Record]:
    while True:
        rows = conn.execute(
            f"SELECT {RECORD_COLUMNS} FROM records WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, _CHUNK)
        ).fetchall()
        for row in rows:
            yield Record.from_row(row)
        if len(rows) < _CHUNK:
            return
        after_seq = rows[-1][1]


def verify_tail(conn: sqlite3.Connection, path: Path, terminal_id: str) -> tuple[int, str]:
    """Cheap open-time check: no gaps and the newest records hash and link; return the tail.

    Raises SpoolCorrupt naming the file and the seq.
    """
    base_seq, base_hash = _checkpoint(conn)
    first, last, count = conn.execute("SELECT MIN(seq), MAX(seq), COUNT(*) FROM records").fetchone()
    if count == 0:
        return base_seq, base_hash
    if first != base_seq + 1 or last - first + 1 != count:
        raise SpoolCorrupt(
            f"{path}: seq is not gapless (first {first}, last {last}, {count} records, checkpoint {base_seq})"
        )
    start = max(first, last - TAIL_RECORDS + 1)
    prev_hash = base_hash
    if start > first:
        row = conn.execute("SELECT hash FROM records WHERE seq = ?", (start - 1,)).fetchone()
        prev_hash = str(row[0])
    rows = conn.execute(
        f"SELECT {RECORD_COLUMNS} FROM records WHERE seq >= ? ORDER BY seq", (start,)
    ).fetchall()
    records = [Record.from_row(row) for row in rows]
    problems = verify_links((r.wire() for r in records), start - 1, prev_hash, terminal_id)
    if problems:
        raise SpoolCorrupt(f"{path}: hash chain broken near the tail: {problems[0]}")
    return records[-1].seq, records[-1].hash


def check_file(path: Path, terminal_id: str) -> CheckReport:
    """Walk the whole chain and run PRAGMA integrity_check; every problem names a seq or page."""
    wal = path.with_name(path.name + "-wal")
    unopened = not wal.exists()
    report = _check_file(path, terminal_id)
    if not report.ok and unopened and wal.exists():
        # Read as immutable (nobody had the file open), and a writer opened it meanwhile: a
        # checkpoint may have moved pages under the walk. Read it again, through the WAL now.
        report = _check_file(path, terminal_id)
    return report


def _check_file(path: Path, terminal_id: str) -> CheckReport:
    problems: list[str] = []
    records = 0
    try:
        conn = connect(path, readonly=True)
    except SpoolError as exc:
        return CheckReport(ok=False, records=0, problems=[str(exc)])
    try:
        for line in conn.execute("PRAGMA integrity_check"):
            if line[0] != "ok":
                problems.append(f"sqlite: {line[0]}")
        base_seq, base_hash = _checkpoint(conn)
        conn.execute("BEGIN")  # one snapshot for the whole walk
        counted: list[int] = [0]

        def wires() -> Iterator[dict[str, Any]]:
            for record in _records_from(conn, base_seq):
                counted[0] += 1
                yield record.wire()

        try:
            problems.extend(verify_links(wires(), base_seq, base_hash, terminal_id))
        finally:
            records = counted[0]
        problems.extend(_derived_column_problems(conn))
        conn.execute("COMMIT")
    except (sqlite3.Error, SpoolCorrupt) as exc:
        problems.append(f"{path}: unreadable after {records} good records ({type(exc).__name__}: {exc})")
    finally:
        conn.close()
    return CheckReport(ok=not problems, records=records, problems=problems)


def _derived_column_problems(conn: sqlite3.Connection) -> list[str]:
    """Columns copied out of the hashed record for indexing (amounts, dates) must still match it:
    pending amounts and the offline limits are computed from them, not from the payload."""
    rows = conn.execute(
        "SELECT seq FROM records WHERE total_fen IS NOT COALESCE(json_extract(payload, '$.total_fen'), 0)"
        " OR business_date IS NOT substr(business_time, 1, 10) ORDER BY seq LIMIT 100"
    ).fetchall()
    problems = [f"seq {row[0]}: stored total_fen or business_date does not match the record's content"
                for row in rows]
    drift = conn.execute(
        "SELECT t.status, t.kind, t.outage FROM status_totals t LEFT JOIN"
        " (SELECT status, kind, COALESCE(outage, 0) AS outage, COUNT(*) AS n, COALESCE(SUM(total_fen), 0) AS fen"
        "  FROM records GROUP BY status, kind, COALESCE(outage, 0)) r"
        " ON r.status = t.status AND r.kind = t.kind AND r.outage = t.outage"
        " WHERE t.count IS NOT COALESCE(r.n, 0) OR t.amount IS NOT COALESCE(r.fen, 0)"
    ).fetchall()
    problems += [f"status_totals ({row[0]}, {row[1]}, outage={row[2]}) does not match the records"
                 for row in drift]
    return problems


def _snapshot(path: Path, dest: Path) -> None:
    """A consistent copy of the spool via the SQLite online backup API."""
    src = connect(path, readonly=True)
    try:
        out = sqlite3.connect(str(dest))
        try:
            src.backup(out)
        finally:
            out.close()
    except sqlite3.Error as exc:
        raise translate(exc, path, "export") from exc
    finally:
        src.close()


def export_file(path: Path, dest: Path, fmt: str) -> int:
    """Write every record to ``dest`` as jsonl, csv or a sqlite copy; return the record count."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidRequest(f"export format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    dest = Path(dest)
    workdir = Path(tempfile.mkdtemp(prefix=".spool-export-", dir=dest.parent))
    try:
        snap = workdir / "snapshot.db"
        _snapshot(path, snap)
        conn = sqlite3.connect(str(snap))
        try:
            count = int(conn.execute("SELECT COUNT(*) FROM records").fetchone()[0])
            if fmt == "sqlite":
                conn.close()
                os.chmod(snap, 0o600)  # every patient's identity: the owner's eyes only
                os.replace(snap, dest)
                return count
            tmp = workdir / "out"
            # 0600 whatever the umask: the export holds every patient's full identity.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "w", encoding="utf-8", newline="") as fh:
                if fmt == "jsonl":
                    for record in _records_from(conn, -1):
                        full = record.wire() | {
                            "status": record.status,
                            "outcome": record.outcome,
                            "resolution": record.resolution,
                            "idempotency_key": record.idempotency_key,
                            "updated_at": record.updated_at,
                        }
                        fh.write(json.dumps(full, ensure_ascii=False, sort_keys=True) + "\n")
                else:
                    writer = csv.DictWriter(fh, fieldnames=_CSV_FIELDS)
                    writer.writeheader()
                    for record in _records_from(conn, -1):
                        row: dict[str, Any] = {name: getattr(record, name) for name in _CSV_FIELDS}
                        for name in ("payload", "outcome", "resolution"):
                            value = row[name]
                            row[name] = "" if value is None else json.dumps(value, ensure_ascii=False)
                        writer.writerow(row)
            os.replace(tmp, dest)
            return count
        finally:
            conn.close()
    except OSError as exc:
        raise translate(exc, dest, "export") from exc
    finally:
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()


def _refund_may_be_owed(conn: sqlite3.Connection, record: Record) -> bool:
    """Whether the fund's share of this outage sale may still have to be handed to the patient.

    ``Record.refund_owed_fen`` says what is owed now. A revoke central has not accepted yet
    (pending) cancels the debt there, but if central rejects it the debt is back: for pruning,
    only a settled revoke ends it.
    """
    if record.revoked_by is not None:
        settled = conn.execute(
            "SELECT 1 FROM records WHERE original_seq = ? AND status = 'settled' LIMIT 1", (record.seq,)
        ).fetchone()
        if settled is not None:
            return False
        record = replace(record, revoked_by=None)
    return record.refund_owed_fen > 0


def prune_in(
    conn: sqlite3.Connection, retention_days: int, now: datetime | None, max_records: int | None = None
) -> int:
    """Delete the oldest run of final records older than the retention; keep a checkpoint.

    Only a prefix of the chain is pruned, up to the first record someone may still act on:
    pending, rejected (not resolved), final for less than the retention (``updated_epoch``),
    or an outage sale whose refund may still be owed (``_refund_may_be_owed``). What stays is
    one verifiable chain starting after the checkpoint's (seq, hash). At most ``max_records``
    go per call (None: no bound), so a large backlog of old records is pruned in several short
    transactions rather than one that holds the write lock for seconds.
    """
    if not isinstance(retention_days, int) or retention_days < 0:
        raise InvalidRequest(f"retention_days must be a non-negative integer, got {retention_days!r}")
    if max_records is not None and (type(max_records) is not int or max_records < 1):
        raise InvalidRequest(f"max_records must be a positive integer or None, got {max_records!r}")
    moment = now if now is not None else datetime.now(UTC)
    if moment.tzinfo is None:
        raise InvalidRequest("now must be timezone-aware")
    cutoff = moment.timestamp() - retention_days * 86400
    # Two subqueries: each is one b-tree lookup, where MIN and MAX side by side scan the table.
    first, top = conn.execute("SELECT (SELECT MIN(seq) FROM records), (SELECT MAX(seq) FROM records)").fetchone()
    if first is None:
        return 0
    # Every statement below walks seq order from the first record and stops early: the cost
    # is the prefix examined (at most max_records), never the whole table.
    limit = int(top) + 1 if max_records is None else min(int(top) + 1, int(first) + max_records)
    row = conn.execute(
        "SELECT seq FROM records WHERE seq < ? AND (status NOT IN ('settled', 'resolved') OR updated_epoch >= ?)"
        " ORDER BY seq LIMIT 1",
        (limit, cutoff),
    ).fetchone()
    if row is not None:
        limit = int(row[0])
    owing = conn.execute(
        f"SELECT {RECORD_COLUMNS} FROM records WHERE status IN ('settled', 'resolved') AND seq < ?"
        " AND kind = 'settlement'"
        " AND outage = 1 AND refund IS NULL ORDER BY seq",
        (limit,),
    )
    try:
        for found in owing:
            record = Record.from_row(found)
            if _refund_may_be_owed(conn, record):
                limit = record.seq
                break
    finally:
        owing.close()
    last = conn.execute(
        "SELECT seq, hash FROM records WHERE seq < ? ORDER BY seq DESC LIMIT 1", (limit,)
    ).fetchone()
    if last is None:
        return 0
    # connect() turns foreign_keys on, so ON DELETE CASCADE would remove these too; deleting
    # them first keeps that from being the only thing between a prune and orphaned history.
    conn.execute("DELETE FROM history WHERE seq < ?", (limit,))
    deleted = conn.execute("DELETE FROM records WHERE seq < ?", (limit,)).rowcount
    conn.execute(
        "INSERT INTO checkpoint (id, seq, hash, pruned, at) VALUES (1, ?, ?, ?, ?)"
        " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
        " pruned = checkpoint.pruned + excluded.pruned, at = excluded.at",
        (last[0], last[1], deleted, now_rfc3339()),
    )
    return int(deleted)
