"""Connections, pragmas, namespaced migrations and error translation."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from spool import SpoolCorrupt, SpoolError, SpoolFull, SpoolIOError, connect, migrate
from spool.store import schema_version, split_script, translate


def test_connect_sets_and_verifies_the_pragmas(tmp_path: Path) -> None:
    conn = connect(tmp_path / "a.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    conn.close()
    ro = connect(tmp_path / "a.db", readonly=True)
    with pytest.raises(sqlite3.OperationalError):
        ro.execute("CREATE TABLE t (x)")
    ro.close()


def test_connect_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 200)
    with pytest.raises(SpoolCorrupt, match=r"bad\.db"):
        connect(bad)


def test_connect_to_a_missing_directory_is_a_spool_error(tmp_path: Path) -> None:
    with pytest.raises(SpoolError):
        connect(tmp_path / "missing" / "a.db")


def test_migrations_are_namespaced_and_applied_once(tmp_path: Path) -> None:
    conn = connect(tmp_path / "a.db")
    steps = ["CREATE TABLE jobs (id INTEGER PRIMARY KEY); CREATE INDEX jobs_id ON jobs (id);"]
    migrate(conn, "daemon", steps)
    migrate(conn, "daemon", steps)  # no "table exists" error: applied once
    assert schema_version(conn, "daemon") == 1
    migrate(conn, "daemon", [*steps, "ALTER TABLE jobs ADD COLUMN state TEXT;"])
    assert schema_version(conn, "daemon") == 2
    migrate(conn, "other", ["CREATE TABLE other (x);"])
    assert schema_version(conn, "other") == 1 and schema_version(conn, "daemon") == 2
    assert [r[1] for r in conn.execute("PRAGMA table_info(jobs)")] == ["id", "state"]
    with pytest.raises(SpoolError, match="newer"):
        migrate(conn, "daemon", steps)
    conn.close()


def test_a_failing_step_rolls_back_the_whole_migration(tmp_path: Path) -> None:
    conn = connect(tmp_path / "a.db")
    with pytest.raises(SpoolError):
        migrate(conn, "daemon", ["CREATE TABLE a (x);", "CREATE TABLE b (x); THIS IS NOT SQL;"])
    assert schema_version(conn, "daemon") == 0
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'a'").fetchone() is None
    assert not conn.in_transaction
    with pytest.raises(SpoolError):
        migrate(conn, "", [])
    conn.close()


def test_split_script_keeps_semicolons_inside_strings() -> None:
    assert split_script("INSERT INTO t VALUES ('a;b'); CREATE TABLE u (x);") == [
        "INSERT INTO t VALUES ('a;b');",
        "CREATE TABLE u (x);",
    ]
    with pytest.raises(SpoolError):
        split_script("INSERT INTO t VALUES ('open string")


def _sqlite_error(code: int, name: str) -> sqlite3.Error:
    exc = sqlite3.OperationalError("boom")
    exc.sqlite_errorcode = code
    exc.sqlite_errorname = name
    return exc


def test_translate_maps_to_the_most_specific_error() -> None:
    assert isinstance(translate(_sqlite_error(13, "SQLITE_FULL"), "p", "x"), SpoolFull)
    assert isinstance(translate(_sqlite_error(1034, "SQLITE_IOERR_FSYNC"), "p", "x"), SpoolIOError)
    assert isinstance(translate(_sqlite_error(11, "SQLITE_CORRUPT"), "p", "x"), SpoolCorrupt)
    assert isinstance(translate(_sqlite_error(26, "SQLITE_NOTADB"), "p", "x"), SpoolCorrupt)
    assert isinstance(translate(OSError(errno.ENOSPC, "full"), "p", "x"), SpoolFull)
    assert isinstance(translate(OSError(errno.EIO, "io"), "p", "x"), SpoolIOError)
    busy = translate(_sqlite_error(5, "SQLITE_BUSY"), "p", "x")
    assert type(busy) is SpoolError and "SQLITE_BUSY" in str(busy)
