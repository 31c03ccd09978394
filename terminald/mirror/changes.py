"""Which spool records changed since the mirror last looked: the spool's history cursor.

Thin names over the spool's public reads (``Spool.newest_change``, ``Spool.changes_since``,
``Spool.records_at``; docs/spool.md): a range scan of the history's key, however long the spool.
If the cursor's row is gone (a prune), ``changes_after`` says ``broken`` and the caller compares
every record that may still change instead (once). Blocking: call them from a thread.
"""

from __future__ import annotations

from collections.abc import Sequence

from spool import Record, Spool
from spool.records import ChangeMark, Changes

__all__ = ["Changes", "HistoryMark", "changes_after", "newest_mark", "records_at"]

HistoryMark = ChangeMark  # the mirror's older name for the same thing


def newest_mark(spool: Spool) -> HistoryMark | None:
    """The newest history row now (None: no history yet)."""
    return spool.newest_change()


def changes_after(spool: Spool, mark: HistoryMark | None, limit: int = 1000) -> Changes:
    """The records changed after ``mark`` (None: from the first history row), at most ``limit`` rows."""
    return spool.changes_since(mark, limit)


def records_at(spool: Spool, seqs: Sequence[int]) -> list[Record]:
    """The records with these seqs, as stored now, in seq order (a pruned one is left out)."""
    return spool.records_at(seqs)
