"""``Spool.newest_change`` / ``changes_since`` / ``records_at``: the history cursor a reader (the
mirror) follows to find changed records without scanning the spool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from spool import Outcome, Spool
from spool.records import ChangeMark
from tests.fixtures.spool import TERMINAL_ID, make_request


def test_the_cursor_finds_each_changed_record_once_in_order(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db", TERMINAL_ID, background_check=False) as sp:
        recs = [sp.append(make_request(f"k{i}")).record for i in range(6)]
        assert sp.newest_change() is None
        assert sp.changes_since(None).seqs == ()  # appends are not changes
        sp.apply_outcomes([Outcome(4, "settled", {}), Outcome(2, "rejected", {"code": "x"})])
        sp.resolve(recs[1].record_id, "self_pay")
        first = sp.changes_since(None)
        assert first.seqs == (4, 2) and not first.broken and first.mark == sp.newest_change()
        assert sp.changes_since(first.mark).seqs == ()  # nothing after the newest
        page = sp.changes_since(None, limit=1)
        assert page.seqs == (4,) and page.mark is not None
        assert sp.changes_since(page.mark).seqs == (2,)
        assert [r.seq for r in sp.records_at([5, 2, 2, 99])] == [2, 5]
        assert sp.records_at([]) == []


def test_a_mark_whose_row_is_gone_is_broken(tmp_path: Path) -> None:
    with Spool.open(tmp_path / "s.db", TERMINAL_ID, background_check=False) as sp:
        recs = [sp.append(make_request(f"k{i}")).record for i in range(3)]
        sp.apply_outcomes([Outcome(r.seq, "settled", {}) for r in recs[:2]])
        mark = sp.newest_change()
        assert mark is not None
        assert sp.prune(0, now=datetime.now(UTC) + timedelta(seconds=1)) == 2  # their history goes too
        gone = sp.changes_since(mark)
        assert gone.broken and gone.seqs == () and gone.mark is None
        stranger = ChangeMark(mark.id, mark.seq + 1, mark.at)
        assert sp.changes_since(stranger).broken
