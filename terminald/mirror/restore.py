"""Rebuild a terminal's spool from the mirror, after its disk died.

``restore_from(conn, terminal_id, dest)`` reads the terminal's head row and its records from
seq 1 (or from where its chain starts in the mirror: the head row's ``base_seq``/``base_hash``,
the prune checkpoint of a spool pruned before it was mirrored, which the rebuilt spool keeps as
its own checkpoint), in one read-only snapshot, verifies the hash chain as it goes (the same
check central and ``terminald spool check`` make: each record's hash from its content, each
link, no gap, the terminal's id) and that the rows end exactly at the head, each record read
from its verbatim text (``record_text``, rows.py; the ``record`` jsonb only for a row written
before that column existed), and writes a new spool file the way ``spool salvage`` does: in a
private directory beside DEST, through the spool's own schema (its migrations, its triggers
keeping the totals), checked with ``spool check``'s own check, and (``mark_restored``: for a
terminal whose upstream has no idempotency key, nhsa) marked as rebuilt from a copy
(spool/restored.py), then linked into place. DEST is never overwritten; nothing is written if
anything is wrong.

Statuses, central's outcomes, resolutions, refunds and the outage facts come back as the mirror
last had them; a pending record stays pending (the uploader sends it again, and central's
cursor and record ids make that safe). The uploader's own tables start empty: the daemon asks
central for its cursor.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from spool import GENESIS_HASH, CheckReport, InvalidRequest, canonical_json
from spool.chain import verify_links
from spool.ids import now_rfc3339
from spool.maintenance import check_file
from spool.records import STATUSES, business_date_of
from spool.restored import mark_in as write_restored_marker
from spool.schema import NAMESPACE, STEPS
from spool.store import connect, fsync_dir, migrate
from spool.transitions import describe
from terminald.mirror.connect import conninfo, sync_connect
from terminald.mirror.errors import MirrorUnavailable, RestoreFailed
from terminald.mirror.rows import SELECT_MIRRORED, SELECT_MIRRORED_OLD, MirroredRecord

__all__ = ["SPOOL_MODE", "RestoreReport", "restore_from", "restore_spool"]

SPOOL_MODE = 0o600  # as the daemon's umask (0077) makes it: the spool holds every patient's identity

_PAGE = 1000
_COLUMNS = (
    "seq", "record_id", "terminal_id", "kind", "business_time", "business_date", "spooled_at", "offline",
    "offline_reason", "payload", "prev_hash", "hash", "status", "outcome", "resolution", "idempotency_key",
    "request_digest", "total_fen", "updated_at", "updated_epoch", "original_seq", "outage", "outage_reason",
    "contact_phone", "refund",
)  # fmt: skip
_INSERT = f"INSERT INTO records ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"


@dataclass(frozen=True)
class RestoreReport:
    dest: Path
    terminal_id: str
    records: int
    last_seq: int
    last_hash: str
    by_status: dict[str, int]
    check: CheckReport  # DEST through `terminald spool check`'s check
    notes: tuple[str, ...] = field(default_factory=tuple)  # what could not be put back exactly
    first_seq: int = 1  # the chain restored starts here (after the mirror's base: a prune checkpoint)


def restore_spool(dsn: str, terminal_id: str, dest: str | Path, *, password: str | None = None,
                  owner: tuple[int, int] | None = None, mark_restored: bool = True) -> RestoreReport:
    """Connect to the mirror at ``dsn`` and ``restore_from`` it."""
    with sync_connect(conninfo(dsn, password=password, application_name="terminald restore")) as conn:
        return restore_from(conn, terminal_id, Path(dest), owner=owner, mark_restored=mark_restored)


def restore_from(conn: psycopg.Connection[Any], terminal_id: str, dest: Path, *,
                 owner: tuple[int, int] | None = None, mark_restored: bool = True) -> RestoreReport:
    """Write the spool ``dest`` from the mirror's copy of ``terminal_id`` (see the module doc).

    The file is 0600 (the daemon's own, whatever the umask) and, with ``owner`` (uid, gid),
    given to that user before it appears at DEST: run as root, the daemon's user must own it.
    ``mark_restored``: the file says it was rebuilt from a copy (spool/restored.py), so that an
    upstream without an idempotency key (nhsa) holds its pending records until staff checked
    them; only the nhsa adapter ever clears it, so ``terminald spool restore`` passes False for
    a terminal that speaks another protocol (v1: central's record ids make re-sending safe).
    True by default: the side that never sends a sale twice.
    RestoreFailed if DEST (or a side file of it) exists, the mirror has no such terminal, or its
    copy is not one whole verified chain; MirrorUnavailable if the connection is lost.
    """
    dest = Path(dest)
    _refuse_existing(dest)
    work = Path(tempfile.mkdtemp(prefix=".spool-restore-", dir=dest.parent))
    try:
        tmp = work / dest.name
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")  # head and rows from one snapshot
            try:
                head, base = _head(conn, terminal_id)
                counts, notes, last = _write(conn, terminal_id, tmp, head, base, mark_restored)
            finally:
                if not conn.closed:
                    conn.execute("COMMIT")
        except psycopg.OperationalError as exc:
            raise MirrorUnavailable(f"the mirror went away during the restore: {exc}") from exc
        except psycopg.Error as exc:
            raise RestoreFailed(f"reading the mirror failed: {exc}") from exc
        check = check_file(tmp, terminal_id)
        if not check.ok:
            raise RestoreFailed(f"the rebuilt spool fails its check: {check.problems[0]}")
        # Before it is linked into place: a daemon started at that moment finds it usable, and
        # every patient's identity is never readable by others, not even for an instant.
        try:
            os.chmod(tmp, SPOOL_MODE)
            if owner is not None:
                os.chown(tmp, owner[0], owner[1])
        except OSError as exc:
            raise RestoreFailed(f"cannot give the rebuilt spool its owner and mode: {exc.strerror or exc}") from exc
        _link_into_place(tmp, dest)
        fsync_dir(dest.parent)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RestoreReport(dest=dest, terminal_id=terminal_id, records=sum(counts.values()), last_seq=last[0],
                         last_hash=last[1], by_status=counts, check=check, notes=tuple(notes), first_seq=base[0] + 1)


def _refuse_existing(dest: Path) -> None:
    if not dest.parent.is_dir():
        raise RestoreFailed(f"{dest.parent}: no such directory")
    for suffix in ("", "-wal", "-shm", "-seq", "-journal"):
        path = dest.with_name(dest.name + suffix)
        if os.path.lexists(path):
            raise RestoreFailed(f"{path} exists: a restore writes a new spool and never overwrites one "
                                "(move the old files aside first)")


def _head(conn: psycopg.Connection[Any], terminal_id: str) -> tuple[tuple[int, str], tuple[int, str]]:
    """The terminal's head (last_seq, last_hash) and where its chain starts (base_seq, base_hash)."""
    base = "base_seq, base_hash" if _has_column(conn, "terminald_terminals", "base_seq") else f"0, '{GENESIS_HASH}'"
    row = conn.execute(f"SELECT last_seq, last_hash, {base} FROM terminald_terminals WHERE terminal_id = %s",
                       (terminal_id,)).fetchone()
    if row is None:
        raise RestoreFailed(f"the mirror has no terminal {terminal_id!r} (or this role may not see it)")
    return (int(row[0]), str(row[1])), (int(row[2]), str(row[3]))


def _has_column(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    """Whether the mirror's schema has this column (init-db run since it was added)."""
    row = conn.execute("SELECT EXISTS (SELECT FROM pg_attribute WHERE attrelid = to_regclass(%s)"
                       " AND attname = %s AND NOT attisdropped)", (table, column)).fetchone()
    return bool(row and row[0])


def _pages(conn: psycopg.Connection[Any], terminal_id: str, after: int, upto: int) -> Iterator[list[MirroredRecord]]:
    select = SELECT_MIRRORED if _has_column(conn, "terminald_records", "record_text") else SELECT_MIRRORED_OLD
    while True:
        rows = conn.execute(f"{select} WHERE terminal_id = %s AND seq > %s AND seq <= %s"
                            " ORDER BY seq LIMIT %s", (terminal_id, after, upto, _PAGE)).fetchall()
        if not rows:
            return
        try:
            page = [MirroredRecord.from_row(row) for row in rows]
        except (ValueError, TypeError) as exc:  # a record_text that is not a JSON object
            raise RestoreFailed(f"the mirror's chain of {terminal_id} is broken: {exc}") from exc
        yield page
        after = page[-1].seq


def _write(conn: psycopg.Connection[Any], terminal_id: str, tmp: Path, head: tuple[int, str],
           base: tuple[int, str], mark: bool) -> tuple[dict[str, int], list[str], tuple[int, str]]:
    counts: dict[str, int] = {}
    notes: list[str] = []
    last = base
    out = connect(tmp)
    try:
        migrate(out, NAMESPACE, STEPS)
        out.execute("BEGIN IMMEDIATE")
        out.execute("INSERT INTO meta (key, value) VALUES ('terminal_id', ?)", (terminal_id,))
        if base[0] > 0:
            # The chain starts after a prune checkpoint (the spool was pruned before it was
            # mirrored): the rebuilt spool's chain starts there too, as a pruned spool's does.
            out.execute("INSERT INTO checkpoint (id, seq, hash, pruned, at) VALUES (1, ?, ?, ?, ?)",
                        (base[0], base[1], base[0], now_rfc3339()))
            notes.append(f"the mirror holds {terminal_id} from seq {base[0] + 1}: the records up to seq {base[0]} "
                         "were pruned from the spool before the mirror began; the restored spool starts after "
                         f"them, at its prune checkpoint (seq {base[0]}, hash {base[1][:12]}…)")
        out.execute("COMMIT")
        for page in _pages(conn, terminal_id, base[0], head[0]):
            problems = verify_links([r.wire for r in page], last[0], last[1], terminal_id)
            if problems:
                raise RestoreFailed(f"the mirror's chain of {terminal_id} is broken: {problems[0]}"
                                    f"{_old_row_hint(page, problems[0])}")
            out.execute("BEGIN IMMEDIATE")
            for record in page:
                status = _insert(out, record, notes)
                counts[status] = counts.get(status, 0) + 1
            out.execute("COMMIT")
            last = (page[-1].seq, str(page[-1].wire["hash"]))
        if last != head:
            raise RestoreFailed(f"the mirror's rows of {terminal_id} end at seq {last[0]}, its head says seq "
                                f"{head[0]}: records are missing")
        if mark and counts.get("pending", 0):
            # The file says it was rebuilt from a copy (spool/restored.py): an upstream without an
            # idempotency key holds the pending records up to here until staff have checked them.
            # (With none pending there is nothing to hold, and nothing for staff to clear.)
            out.execute("BEGIN IMMEDIATE")
            write_restored_marker(out, "mirror", last[0], counts.get("pending", 0))
            out.execute("COMMIT")
        out.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as exc:
        raise RestoreFailed(f"writing {tmp.name} failed: {exc}") from exc
    finally:
        out.close()
    return counts, notes, last


def _old_row_hint(page: list[MirroredRecord], problem: str) -> str:
    """Why a row written before ``record_text`` existed may fail its hash: its jsonb copy."""
    for record in page:
        if not record.verbatim and problem.startswith(f"seq {record.seq}:"):
            return (" (a row mirrored before the record_text column existed, read from its jsonb copy, which "
                    "does not keep every number as written, e.g. 1e16 or -0.0)")
    return ""


def _insert(out: sqlite3.Connection, record: MirroredRecord, notes: list[str]) -> str:
    wire, local, seq = record.wire, record.local, record.seq
    payload: dict[str, Any] = wire["payload"]
    status = record.status
    if status not in STATUSES:
        notes.append(f"seq {seq}: status {status!r} unknown; restored as pending (the uploader asks central again)")
        status = "pending"
    key = local.get("idempotency_key")
    if not isinstance(key, str) or not key:
        key = f"restored:{wire['record_id']}"
        notes.append(f"seq {seq}: no idempotency key in the mirror; restored as {key!r}")
    digest = local.get("request_digest")
    if not isinstance(digest, str) or not digest:
        digest = "unknown"
        notes.append(f"seq {seq}: no request digest in the mirror (a POS retry with its key will conflict)")
    stored_at = local.get("updated_at")
    updated_at = stored_at if isinstance(stored_at, str) else str(wire["spooled_at"])
    amount = payload.get("total_fen", 0)
    total_fen = amount if isinstance(amount, int) and not isinstance(amount, bool) else 0
    try:
        business_date = business_date_of(wire["business_time"])
    except InvalidRequest:
        business_date = str(wire["business_time"])[:10]
    outage = local.get("outage")
    values = (
        seq, wire["record_id"], wire["terminal_id"], wire["kind"], wire["business_time"], business_date,
        wire["spooled_at"], int(bool(wire["offline"])), wire["offline_reason"],
        canonical_json(payload).decode("utf-8"), wire["prev_hash"], wire["hash"], status,
        None if record.outcome is None else canonical_json(record.outcome).decode("utf-8"),
        _json(local.get("resolution")), key, digest, total_fen, updated_at, _epoch(updated_at, wire["spooled_at"]),
        local.get("original_seq"), None if outage is None else int(bool(outage)), local.get("outage_reason"),
        local.get("contact_phone"), _json(local.get("refund")),
    )  # fmt: skip
    out.execute(_INSERT, values)
    if status != "pending":
        detail = "restored from the mirror"
        if record.outcome:
            detail += f": {describe(record.outcome)}"
        out.execute("INSERT INTO history (seq, at, status, detail) VALUES (?, ?, ?, ?)",
                    (seq, updated_at, status, detail))
    return status


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def _epoch(updated_at: str, fallback: str) -> float:
    for text in (updated_at, fallback):
        try:
            return datetime.fromisoformat(text).timestamp()
        except (TypeError, ValueError):
            continue
    return 0.0


def _link_into_place(tmp: Path, final: Path) -> None:
    """Move ``tmp`` to ``final`` without ever replacing a file that appeared meanwhile."""
    try:
        os.link(tmp, final)
    except FileExistsError as exc:
        raise RestoreFailed(f"{final} appeared during the restore; not replaced") from exc
    except OSError:  # no hard links here (a FAT stick): check, then rename
        if os.path.lexists(final):
            raise RestoreFailed(f"{final} appeared during the restore; not replaced") from None
        os.rename(tmp, final)
        return
    tmp.unlink()
