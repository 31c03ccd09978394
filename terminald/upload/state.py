"""The uploader's own tables, kept in the spool's SQLite file (namespace "upload").

- `upload_state`: key/value: the highest seq central acknowledged (`acked_seq`),
  the frozen-card list version, the downtime notices last received (those
  kept), the windows from central that staff cleared (until they end).
- `upload_frozen_cards`: the frozen-card list last synced from central.
- `upload_outages`: one row per offline period (open while `ended_at` is NULL);
  `checked_at` is the last time the outage was seen still going, so a daemon
  that was itself stopped does not report its own downtime as central's.

The disk is the record; memory answers. Everything is read once when the state
is made (the uploader's start) and every read after that is served from memory,
so the event loop never waits for SQLite: the offline policy asks `is_frozen` on
every sale. A change updates memory at once and is queued to the spool's writer
thread (`Spool.write_later`), the file's one writer: it shares that thread's
next group commit, never fsyncs on the caller's thread, and the changes land in
the order they were made. A write the disk refuses (disk full) is logged and
undone on disk alone (each change is one atomic write); memory keeps the value,
and the next change writes it again: a key's whole value, the whole frozen list
after a lost change of it.

Made with a path instead of a `Spool` (tools and tests with no spool open), the
state writes on a connection of its own, at once, as before.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from spool import Spool, SpoolError
from spool.store import connect, migrate

__all__ = ["MIGRATIONS", "NAMESPACE", "OUTAGES_TABLE", "UploadState"]

log = logging.getLogger("terminald.upload")

NAMESPACE = "upload"
OUTAGES_TABLE = "upload_outages"
MIGRATIONS = [
    """
    CREATE TABLE upload_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE upload_frozen_cards (card_number TEXT PRIMARY KEY);
    CREATE TABLE upload_outages (
      id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, ended_at TEXT, checked_at TEXT NOT NULL,
      cause TEXT NOT NULL, planned INTEGER NOT NULL);
    """,
]

Write = Callable[[sqlite3.Connection], object]


class UploadState:
    def __init__(self, target: Spool | str | Path) -> None:
        """Read the tables into memory (migrating them first); `target` is the spool whose
        writer writes them, or a path to write on a connection of this object's own."""
        self._spool = target if isinstance(target, Spool) else None
        path = target.path if isinstance(target, Spool) else Path(target)
        conn = connect(path)
        try:
            migrate(conn, NAMESPACE, MIGRATIONS)
            values = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM upload_state")}
            self._frozen = {str(r[0]) for r in conn.execute("SELECT card_number FROM upload_frozen_cards")}
            row = conn.execute(
                f"SELECT id, started_at, checked_at, cause, planned FROM {OUTAGES_TABLE}"
                " WHERE ended_at IS NULL ORDER BY id DESC LIMIT 1"
            ).fetchone()
        except BaseException:
            conn.close()
            raise
        # With a spool, this connection only read at start: the spool's writer does the writes.
        self._conn: sqlite3.Connection | None = None
        if self._spool is None:
            self._conn = conn
        else:
            conn.close()
        self._acked = int(values.get("acked_seq", "0"))
        self._frozen_version = int(values.get("frozen_version") or 0)
        self._notice_downtime: list[dict[str, str]] = _windows(values.get("notice_downtime"))
        self._dismissed: list[dict[str, str]] = _windows(values.get("dismissed_downtime"))
        self._open_outage: dict[str, Any] | None = None if row is None else {
            "id": row[0], "started_at": row[1], "checked_at": row[2], "cause": row[3], "planned": bool(row[4]),
        }
        self.write_failures = 0
        self._frozen_lost = False  # a change of the list did not land: write the whole list next

    def close(self) -> None:
        """Writes already queued to the spool's writer still land (it serves its queue before it
        stops); a path-made state closes its connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- writing ----------------------------------------------------------------------------------

    def _write(self, what: str, fn: Write, *, frozen: bool = False) -> None:
        """Queue `fn(conn)` to the spool's writer, or run it now on this state's own connection.
        `fn` must capture values, never this object's live collections: it runs later."""
        if self._spool is None:
            assert self._conn is not None, "upload state used after close()"
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                fn(self._conn)
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            return

        def done(_: object, error: BaseException | None) -> None:  # on the writer thread
            if error is not None:
                self._failed(what, error, frozen)

        try:
            self._spool.write_later(fn, done)
        except SpoolError as exc:
            self._failed(what, exc, frozen)

    def _failed(self, what: str, error: BaseException, frozen: bool = False) -> None:
        self.write_failures += 1
        if frozen:
            self._frozen_lost = True
        log.error("upload state: %s not written (%s: %s); kept in memory", what, type(error).__name__, error)

    def _set(self, key: str, value: str) -> None:
        self._write(key, lambda conn: _set(conn, key, value))

    # -- acknowledged cursor ----------------------------------------------------------------------

    @property
    def acked_seq(self) -> int:
        return self._acked

    def ack(self, seq: int) -> None:
        """Remember that central acknowledged up to `seq` (never goes down)."""
        if seq > self._acked:
            self._acked = seq
            self._set("acked_seq", str(seq))

    # -- notices ----------------------------------------------------------------------------------

    def frozen(self) -> tuple[int, set[str]]:
        """The list's version and the card numbers (the live set: read it, never change it)."""
        return self._frozen_version, self._frozen

    def replace_frozen(self, version: int, numbers: Iterable[str]) -> None:
        cards = tuple(dict.fromkeys(numbers))
        self._frozen_version, self._frozen = version, set(cards)
        self._write_frozen_list()

    def _write_frozen_list(self) -> None:
        cards, version = tuple(self._frozen), self._frozen_version
        self._frozen_lost = False

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM upload_frozen_cards")
            conn.executemany("INSERT OR IGNORE INTO upload_frozen_cards VALUES (?)", [(n,) for n in cards])
            _set(conn, "frozen_version", str(version))

        self._write("the frozen-card list", write, frozen=True)

    def change_frozen(self, version: int, added: Iterable[str], removed: Iterable[str]) -> None:
        plus, minus = tuple(added), tuple(removed)
        self._frozen.difference_update(minus)
        self._frozen.update(plus)
        self._frozen_version = version
        if self._frozen_lost:
            self._write_frozen_list()
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany("DELETE FROM upload_frozen_cards WHERE card_number = ?", [(n,) for n in minus])
            conn.executemany("INSERT OR IGNORE INTO upload_frozen_cards VALUES (?)", [(n,) for n in plus])
            _set(conn, "frozen_version", str(version))

        self._write("a change of the frozen-card list", write, frozen=True)

    def notice_downtime(self) -> list[dict[str, str]]:
        return [dict(w) for w in self._notice_downtime]

    def set_notice_downtime(self, windows: list[dict[str, str]]) -> None:
        self._notice_downtime = [dict(w) for w in windows]
        self._set("notice_downtime", json.dumps(windows, ensure_ascii=False))

    def dismissed_downtime(self) -> list[dict[str, str]]:
        """Windows from central that staff cleared (`upstream resume --clear-downtime`)."""
        return [dict(w) for w in self._dismissed]

    def set_dismissed_downtime(self, windows: list[dict[str, str]]) -> None:
        self._dismissed = [dict(w) for w in windows]
        self._set("dismissed_downtime", json.dumps(windows, ensure_ascii=False))

    # -- outages ----------------------------------------------------------------------------------

    def open_outage(self) -> dict[str, Any] | None:
        """The outage a previous run left open, as found at start (None: none was)."""
        return None if self._open_outage is None else dict(self._open_outage)

    def begin_outage(self, at: str, cause: str, planned: bool) -> None:
        self._write("the start of an outage", lambda conn: conn.execute(
            f"INSERT INTO {OUTAGES_TABLE} (started_at, ended_at, checked_at, cause, planned)"
            " VALUES (?, NULL, ?, ?, ?)",
            (at, at, cause, int(planned)),
        ))

    def touch_outage(self, at: str) -> None:
        self._write("an outage still going", lambda conn: conn.execute(
            f"UPDATE {OUTAGES_TABLE} SET checked_at = ? WHERE ended_at IS NULL", (at,)))

    def end_outage(self, at: str) -> None:
        self._write("the end of an outage", lambda conn: conn.execute(
            f"UPDATE {OUTAGES_TABLE} SET ended_at = ?, checked_at = ? WHERE ended_at IS NULL", (at, at)))


def _set(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute("INSERT OR REPLACE INTO upload_state (key, value) VALUES (?, ?)", (key, value))


def _windows(raw: str | None) -> list[dict[str, str]]:
    return list(json.loads(raw)) if raw else []
