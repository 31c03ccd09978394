"""The uploader's own tables, kept in the spool's SQLite file (namespace "upload").

- `upload_state`: key/value: the highest seq central acknowledged (`acked_seq`),
  the frozen-card list version, the downtime notices last received (those
  kept), the windows from central that staff cleared (until they end).
- `upload_frozen_cards`: the frozen-card list last synced from central.
- `upload_outages`: one row per offline period (open while `ended_at` is NULL);
  `checked_at` is the last time the outage was seen still going, so a daemon
  that was itself stopped does not report its own downtime as central's.

One connection, used from the uploader's event loop thread only.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from spool.store import connect, migrate

__all__ = ["MIGRATIONS", "NAMESPACE", "OUTAGES_TABLE", "UploadState"]

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


class UploadState:
    def __init__(self, path: str | Path) -> None:
        self._conn = connect(path)
        migrate(self._conn, NAMESPACE, MIGRATIONS)

    def close(self) -> None:
        self._conn.close()

    def _get(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM upload_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO upload_state (key, value) VALUES (?, ?)", (key, value))

    # -- acknowledged cursor ----------------------------------------------------------------------

    @property
    def acked_seq(self) -> int:
        value = self._get("acked_seq")
        return int(value) if value is not None else 0

    def ack(self, seq: int) -> None:
        """Remember that central acknowledged up to `seq` (never goes down)."""
        if seq > self.acked_seq:
            self._set("acked_seq", str(seq))

    # -- notices ----------------------------------------------------------------------------------

    def frozen(self) -> tuple[int, set[str]]:
        version = int(self._get("frozen_version") or 0)
        cards = {r[0] for r in self._conn.execute("SELECT card_number FROM upload_frozen_cards")}
        return version, cards

    def replace_frozen(self, version: int, numbers: tuple[str, ...]) -> None:
        with self._transaction():
            self._conn.execute("DELETE FROM upload_frozen_cards")
            self._conn.executemany(
                "INSERT OR IGNORE INTO upload_frozen_cards VALUES (?)", [(n,) for n in numbers]
            )
            self._set("frozen_version", str(version))

    def change_frozen(self, version: int, added: tuple[str, ...], removed: tuple[str, ...]) -> None:
        with self._transaction():
            self._conn.executemany(
                "DELETE FROM upload_frozen_cards WHERE card_number = ?", [(n,) for n in removed]
            )
            self._conn.executemany(
                "INSERT OR IGNORE INTO upload_frozen_cards VALUES (?)", [(n,) for n in added]
            )
            self._set("frozen_version", str(version))

    def notice_downtime(self) -> list[dict[str, str]]:
        raw = self._get("notice_downtime")
        return list(json.loads(raw)) if raw else []

    def set_notice_downtime(self, windows: list[dict[str, str]]) -> None:
        self._set("notice_downtime", json.dumps(windows, ensure_ascii=False))

    def dismissed_downtime(self) -> list[dict[str, str]]:
        """Windows from central that staff cleared (`upstream resume --clear-downtime`)."""
        raw = self._get("dismissed_downtime")
        return list(json.loads(raw)) if raw else []

    def set_dismissed_downtime(self, windows: list[dict[str, str]]) -> None:
        self._set("dismissed_downtime", json.dumps(windows, ensure_ascii=False))

    # -- outages ----------------------------------------------------------------------------------

    def open_outage(self) -> dict[str, Any] | None:
        row = self._conn.execute(
            f"SELECT id, started_at, checked_at, cause, planned FROM {OUTAGES_TABLE}"
            " WHERE ended_at IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        return {
            "id": row[0],
            "started_at": row[1],
            "checked_at": row[2],
            "cause": row[3],
            "planned": bool(row[4]),
        }

    def begin_outage(self, at: str, cause: str, planned: bool) -> None:
        self._conn.execute(
            f"INSERT INTO {OUTAGES_TABLE} (started_at, ended_at, checked_at, cause, planned)"
            " VALUES (?, NULL, ?, ?, ?)",
            (at, at, cause, int(planned)),
        )

    def touch_outage(self, at: str) -> None:
        self._conn.execute(f"UPDATE {OUTAGES_TABLE} SET checked_at = ? WHERE ended_at IS NULL", (at,))

    def end_outage(self, at: str) -> None:
        self._conn.execute(
            f"UPDATE {OUTAGES_TABLE} SET ended_at = ?, checked_at = ? WHERE ended_at IS NULL", (at, at)
        )

    def _transaction(self) -> _Tx:
        return _Tx(self._conn)


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("COMMIT" if exc_type is None else "ROLLBACK")
