"""A spool rebuilt from a copy (``terminald spool restore --from-mirror``) says so.

The copy holds the records and their outcomes, not what other parts kept in the file (an
upstream adapter's call log, for one). So for every record that came back pending, this file
no longer knows whether it reached the upstream before the disk died. An upstream with an
idempotency key and a cursor finds out by itself; one without (the national platform) must not
send them again until a person has checked: the marker tells it which (``last_seq``: every
record up to it came from the copy), until ``Spool.acknowledge_restore`` removes it.

Kept in the ``meta`` table under one key, as JSON, written by the restore before the file is
put in place.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from spool.ids import now_rfc3339

__all__ = ["RestoredFrom", "clear_in", "mark_in", "read_in"]

KEY = "restored_from"


@dataclass(frozen=True)
class RestoredFrom:
    source: str  # where the records came from ("mirror")
    at: str  # RFC 3339, when the file was rebuilt
    last_seq: int  # every record up to this seq came from the copy
    pending: int  # how many of them were pending then


def mark_in(conn: sqlite3.Connection, source: str, last_seq: int, pending: int) -> None:
    """Within the restore's own transaction on the new file."""
    value = json.dumps({"source": source, "at": now_rfc3339(), "last_seq": last_seq, "pending": pending})
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (KEY, value))


def read_in(conn: sqlite3.Connection) -> RestoredFrom | None:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (KEY,)).fetchone()
    if row is None:
        return None
    try:
        value = json.loads(row[0])
        return RestoredFrom(str(value["source"]), str(value["at"]), int(value["last_seq"]), int(value["pending"]))
    except (ValueError, KeyError, TypeError):
        # Unreadable: the safe reading is "restored, everything up to now unknown".
        return RestoredFrom("unknown", "", 2**62, 0)


def clear_in(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM meta WHERE key = ?", (KEY,))
