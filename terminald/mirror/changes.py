"""Which spool records changed since the mirror last looked: a cursor on the spool's ``history``.

Every change of a record after its append (central's outcome, a resolution, the outage fact, a
refund) writes one ``history`` row in the same transaction (spool/transitions.py), and history
ids only grow while their newest row exists. So "what changed since mark M" is one range scan of
the history's primary key, however long the spool: no scan of the records.

The cursor remembers the row it stopped at (id, seq, time). If that row is gone (a prune
deleted it, so ids may be handed out again) or is another row now, ``changes_after`` says
``broken`` and the caller compares every record that may still change instead (once).

These reads run on the spool's own pooled read connections (``Spool._read``): they belong in
``spool`` as a public ``Spool.changes_since``; the spool package is not the mirror's to change
today. Blocking: call them from a thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass

from spool import Record, Spool
from spool.records import RECORD_COLUMNS

__all__ = ["Changes", "HistoryMark", "changes_after", "newest_mark", "records_at"]

_CHUNK = 500


@dataclass(frozen=True)
class HistoryMark:
    """The history row the mirror has handled changes up to."""

    id: int
    seq: int
    at: str


@dataclass(frozen=True)
class Changes:
    seqs: tuple[int, ...]  # records changed after the mark, each once, in the order of their first change
    mark: HistoryMark | None  # where to continue from
    broken: bool  # the mark's row is gone: compare every record that may change instead


def newest_mark(spool: Spool) -> HistoryMark | None:
    """The newest history row now (None: no history yet)."""
    def q(conn: sqlite3.Connection) -> HistoryMark | None:
        row = conn.execute("SELECT id, seq, at FROM history ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else HistoryMark(int(row[0]), int(row[1]), str(row[2]))

    return spool._read(q)


def changes_after(spool: Spool, mark: HistoryMark | None, limit: int = 1000) -> Changes:
    """The records changed after ``mark`` (None: from the first history row), at most ``limit`` rows."""
    def q(conn: sqlite3.Connection) -> Changes:
        conn.execute("BEGIN")  # one snapshot: the mark's check and the range read agree
        try:
            if mark is not None:
                row = conn.execute("SELECT seq, at FROM history WHERE id = ?", (mark.id,)).fetchone()
                if row is None or int(row[0]) != mark.seq or str(row[1]) != mark.at:
                    newest = conn.execute("SELECT id, seq, at FROM history ORDER BY id DESC LIMIT 1").fetchone()
                    again = None if newest is None else HistoryMark(int(newest[0]), int(newest[1]), str(newest[2]))
                    return Changes(seqs=(), mark=again, broken=True)
            rows = conn.execute("SELECT id, seq, at FROM history WHERE id > ? ORDER BY id LIMIT ?",
                                (0 if mark is None else mark.id, limit)).fetchall()
        finally:
            conn.execute("COMMIT")
        if not rows:
            return Changes(seqs=(), mark=mark, broken=False)
        last = rows[-1]
        seqs = tuple(dict.fromkeys(int(r[1]) for r in rows))
        return Changes(seqs=seqs, mark=HistoryMark(int(last[0]), int(last[1]), str(last[2])), broken=False)

    return spool._read(q)


def records_at(spool: Spool, seqs: Sequence[int]) -> list[Record]:
    """The records with these seqs, as stored now, in seq order (a pruned one is left out)."""
    def q(conn: sqlite3.Connection) -> list[Record]:
        found: list[Record] = []
        wanted = sorted(set(seqs))
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = conn.execute(f"SELECT {RECORD_COLUMNS} FROM records WHERE seq IN ({marks}) ORDER BY seq", chunk)
            found += [Record.from_row(row) for row in rows]
        return found

    return spool._read(q)
