"""The SQLite file: connections, pragmas, namespaced migrations, error mapping.

Every connection runs in WAL mode with ``synchronous=FULL``, read back and
verified, because a commit is what the API acknowledges to the cashier: in
WAL mode ``NORMAL`` would only be durable up to the last checkpoint.

Migrations are namespaced so the daemon can keep its own tables (print jobs,
events, ...) in the same file: step *i* of a namespace is applied once, in a
``BEGIN IMMEDIATE`` transaction, and recorded in ``schema_migrations``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from spool.errors import SpoolCorrupt, SpoolError, SpoolFull, SpoolIOError

__all__ = ["BUSY_TIMEOUT_MS", "connect", "fsync_dir", "migrate", "schema_version", "split_script", "translate"]

BUSY_TIMEOUT_MS = 10_000
_SYNCHRONOUS_FULL = 2

# Primary SQLite result codes (the low byte of extended codes).
_SQLITE_FULL = 13
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def translate(exc: BaseException, path: str | Path, during: str) -> SpoolError:
    """Map a sqlite3/OS error to the most specific SpoolError (the caller raises it ``from exc``)."""
    where = f"{during} on {path}"
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    name = getattr(exc, "sqlite_errorname", type(exc).__name__)
    if primary == _SQLITE_FULL or (isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)):
        return SpoolFull(f"disk full during {where} ({name})")
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return SpoolCorrupt(f"{path} is corrupt ({name}: {exc}) during {during}")
    if primary == _SQLITE_IOERR or isinstance(exc, OSError):
        return SpoolIOError(f"I/O error during {where} ({name}); the outcome of the write is unknown")
    return SpoolError(f"SQLite error during {where} ({name}: {exc})")


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open ``path`` with the spool's pragmas; raise a SpoolError if they cannot be had.

    ``readonly``: read, and create or change no file. SQLite's ``mode=ro`` alone would create
    the ``-wal`` and ``-shm`` files of a WAL database beside it when they are missing (owned by
    whoever reads: root's, for a command run as root, which the daemon's user then cannot
    open). So: with no ``-wal`` (nobody has the file open, and every commit is in the main
    file) it is read as ``immutable`` (no lock, no side file); with one, through the existing
    ``-wal`` and ``-shm`` (the daemon's, while it runs). A non-empty ``-wal`` without its
    ``-shm`` (left by a crash) cannot be read without creating one: SpoolError.
    """
    path = Path(path)
    try:
        if readonly:
            conn = sqlite3.connect(
                _readonly_uri(path), uri=True, isolation_level=None, check_same_thread=False
            )
        else:
            conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise translate(exc, path, "open") from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise SpoolError(f"{path}: journal_mode is {mode!r}, WAL is required")
        conn.execute("PRAGMA synchronous = FULL")
        level = conn.execute("PRAGMA synchronous").fetchone()[0]
        if level != _SYNCHRONOUS_FULL:
            raise SpoolError(f"{path}: synchronous is {level}, FULL (2) is required for durable commits")
        conn.execute("PRAGMA foreign_keys = ON")
    except sqlite3.Error as exc:
        conn.close()
        raise translate(exc, path, "open") from exc
    except SpoolError:
        conn.close()
        raise
    return conn


def _readonly_uri(path: Path) -> str:
    """The URI that reads ``path`` without creating a file beside it (see ``connect``)."""
    if not path.exists():
        raise SpoolError(f"no spool at {path}")
    wal = path.with_name(path.name + "-wal")
    shm = path.with_name(path.name + "-shm")
    try:
        wal_size: int | None = wal.stat().st_size
    except FileNotFoundError:
        wal_size = None
    except OSError as exc:
        raise translate(exc, path, "open") from exc
    uri = path.resolve().as_uri()
    if wal_size is None or (wal_size == 0 and not shm.exists()):
        return f"{uri}?mode=ro&immutable=1"
    if not shm.exists():
        raise SpoolError(
            f"{wal} holds commits not yet in {path.name} and {shm.name} is missing: reading it would create "
            f"{shm.name}; let terminald open the spool first (or `terminald spool salvage`)"
        )
    return f"{uri}?mode=ro"


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries durable (a file just created or renamed into it)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def split_script(script: str) -> list[str]:
    """Split a migration step into complete SQL statements (executescript would COMMIT)."""
    statements: list[str] = []
    buf = ""
    for piece in script.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \t\r\n;"):
                statements.append(buf.strip())
            buf = ""
    if buf.strip(" \t\r\n;"):
        raise SpoolError(f"incomplete SQL statement in migration: {buf.strip()[:60]!r}")
    return statements


def schema_version(conn: sqlite3.Connection, namespace: str) -> int:
    """How many steps of ``namespace`` are applied (0 on a fresh file)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if not exists:
        return 0
    row = conn.execute("SELECT COUNT(*) FROM schema_migrations WHERE namespace = ?", (namespace,)).fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, namespace: str, steps: Sequence[str]) -> None:
    """Apply the steps of ``namespace`` not applied yet, each once, in one transaction.

    A file that has more steps than ``steps`` was written by a newer version:
    refuse it rather than run old code against a newer schema.
    """
    if not namespace:
        raise SpoolError("migration namespace must not be empty")
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " namespace TEXT NOT NULL, step INTEGER NOT NULL, applied_at TEXT NOT NULL,"
            " PRIMARY KEY (namespace, step))"
        )
        applied = schema_version(conn, namespace)
        if applied > len(steps):
            raise SpoolError(
                f"schema {namespace!r} is at step {applied}, this version knows {len(steps)}: "
                "the file was written by a newer terminald"
            )
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        for index in range(applied, len(steps)):
            for statement in split_script(steps[index]):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (namespace, step, applied_at) VALUES (?, ?, ?)",
                (namespace, index + 1, now),
            )
        if namespace == "spool":
            conn.execute(f"PRAGMA user_version = {len(steps)}")
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise translate(exc, _db_path(conn), f"migration of {namespace!r}") from exc
        raise


def _db_path(conn: sqlite3.Connection) -> str:
    for row in conn.execute("PRAGMA database_list"):
        if row[1] == "main":
            return str(row[2])
    return "?"
