"""Every SQLite statement a process runs, with the thread that ran it.

`SqlTrace.install(monkeypatch)` wraps `sqlite3.connect`, so every connection opened from then
on (the spool's, the events writer's, the print queue's, the upload state's, a reader's) gets a
trace callback. SQLite calls it on the thread that executes the statement, so a statement is
attributed to the thread that really ran it (the event loop, the spool's writer, a worker).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Any

import pytest

# What takes or needs the write lock. Trigger bodies are reported as "-- TRIGGER name": skipped.
WRITE_VERBS = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")


@dataclass(frozen=True)
class Statement:
    thread: str
    thread_id: int
    path: str
    sql: str
    conn: int  # which connection (the order of opening)

    @property
    def writes(self) -> bool:
        head = self.sql.lstrip().upper()
        if head.startswith("BEGIN IMMEDIATE") or head.startswith("BEGIN EXCLUSIVE"):
            return True
        return head.split(None, 1)[0] in WRITE_VERBS if head else False

    def table(self) -> str:
        """The table a write names (INSERT INTO t / UPDATE t / DELETE FROM t), else ""."""
        words = self.sql.replace("(", " ").split()
        upper = [w.upper() for w in words]
        for marker in ("INTO", "UPDATE", "FROM"):
            if marker in upper:
                at = upper.index(marker) + 1
                if at < len(words):
                    return words[at]
        return ""


class SqlTrace:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._statements: list[Statement] = []
        self._connections = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> SqlTrace:
        real = sqlite3.connect

        def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            conn: sqlite3.Connection = real(database, *args, **kwargs)
            path = _path_of(str(database))
            with self._lock:
                self._connections += 1
                number = self._connections
            conn.set_trace_callback(lambda sql: self._note(path, sql, number))
            return conn

        monkeypatch.setattr(sqlite3, "connect", connect)
        return self

    def _note(self, path: str, sql: str, conn: int) -> None:
        thread = threading.current_thread()
        with self._lock:
            self._statements.append(Statement(thread.name, thread.ident or 0, path, sql, conn))

    def clear(self) -> None:
        with self._lock:
            self._statements = []

    def mark(self) -> int:
        """Where the trace is now: `statements(since=mark)` gives what ran after this moment."""
        with self._lock:
            return len(self._statements)

    def statements(self, path: str | os.PathLike[str] | None = None, since: int = 0) -> list[Statement]:
        with self._lock:
            found = self._statements[since:]
        if path is None:
            return found
        wanted = os.path.realpath(path)
        return [s for s in found if s.path == wanted]


def _path_of(database: str) -> str:
    """The file a connect() argument names: a plain path or a file: URI (read-only opens)."""
    if database.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return os.path.realpath(unquote(urlparse(database).path))
    return os.path.realpath(database)


def outside_migrations(statements: list[Statement]) -> list[Statement]:
    """`statements` less the namespaced migrations (`spool.store.migrate`: a BEGIN IMMEDIATE
    whose next statement on that connection creates `schema_migrations`, up to its COMMIT)."""
    kept: list[Statement] = []
    migrating: set[int] = set()
    last: dict[int, Statement] = {}
    for s in statements:
        head = s.sql.lstrip().upper()
        begun = last.get(s.conn)
        last[s.conn] = s
        if s.conn in migrating:
            if head.startswith(("COMMIT", "ROLLBACK")):
                migrating.discard(s.conn)
            continue
        if (head.startswith("CREATE TABLE IF NOT EXISTS SCHEMA_MIGRATIONS") and begun is not None
                and begun.sql.lstrip().upper().startswith("BEGIN IMMEDIATE")):
            migrating.add(s.conn)
            if kept and kept[-1] is begun:
                kept.pop()
            continue
        kept.append(s)
    return kept
