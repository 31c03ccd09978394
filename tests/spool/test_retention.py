"""Retention in the spool: `Spool.prune` takes exactly the prefix that may go, and the chain stays whole.

Real spool files. "Old" is either a `now` far in the future or `updated_epoch` moved back
behind the spool's back, as a person with sqlite3 would (see test_corruption.py).
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from spool import InvalidRequest, Outcome, Spool
from spool.records import Record
from tests.fixtures.spool import TERMINAL_ID, make_request
from tests.spool.factory import tamper as _tamper

FAR = datetime.now(UTC) + timedelta(days=3650)
OPERATOR = {"id": "op7", "name": "王芳"}




def _sale(sp: Spool, key: str, total: int = 2500, *, outage: bool = False) -> Record:
    req = make_request(key, total)
    if outage:  # spooled while central was unreachable: the POS answered "pending", the patient paid in full
        req = replace(req, outage_reason="upstream_unreachable")
    return sp.append(req).record


def _settle(sp: Spool, record: Record, fund: int = 1500, account: int = 500) -> Record:
    detail = {"central_ref": f"C-{record.seq}", "fund_paid_fen": fund, "account_paid_fen": account,
              "cash_paid_fen": record.total_fen - fund - account}
    [settled] = sp.apply_outcomes([Outcome(record.seq, "settled", detail)])
    return settled


def _reject(sp: Spool, record: Record) -> Record:
    [rejected] = sp.apply_outcomes([Outcome(record.seq, "rejected", {"code": "card_frozen", "message": "x"})])
    return rejected


def _revoke(sp: Spool, original: Record, key: str) -> Record:
    req = make_request(key, -original.total_fen, kind="revoke",
                       extra={"original_record_id": original.record_id})
    return sp.append(replace(req, original_record_id=original.record_id)).record


def _seqs(sp: Spool) -> list[int]:
    return [r.seq for r in sp.records(limit=1000)]


def _checkpoint(path: Path) -> tuple[int, str, int]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT seq, hash, pruned FROM checkpoint WHERE id = 1").fetchone()
        history = conn.execute("SELECT COUNT(*) FROM history WHERE seq <= ?", (row[0],)).fetchone()[0]
    finally:
        conn.close()
    assert history == 0, "history rows of pruned records must go with them"
    return int(row[0]), str(row[1]), int(row[2])


def test_prune_takes_exactly_the_prefix_that_nobody_acts_on(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        settled_old = _settle(sp, _sale(sp, "settled-old"))                              # 1
        resolved = _reject(sp, _sale(sp, "resolved-old"))                                  # 2
        sp.resolve(resolved.record_id, "self_pay", note="paid cash")
        refunded = _settle(sp, _sale(sp, "outage-refunded", outage=True))                  # 3
        assert refunded.refund_owed_fen == 2000
        sp.refund(refunded.record_id, 2000, OPERATOR)
        all_cash = _settle(sp, _sale(sp, "outage-all-cash", outage=True), fund=0, account=0)  # 4
        assert all_cash.refund_owed_fen == 0  # nothing to hand over: it must not hold retention up
        owed = _settle(sp, _sale(sp, "outage-owed", outage=True))                          # 5
        assert owed.refund_owed_fen == 2000
        _settle(sp, _sale(sp, "after-owed"))                                               # 6
        unresolved = _reject(sp, _sale(sp, "rejected-unresolved"))                         # 7
        _settle(sp, _sale(sp, "after-rejected"))                                           # 8
        pending = _sale(sp, "pending-old")                                                 # 9
        _settle(sp, _sale(sp, "after-pending"))                                            # 10
        hashes = {r.seq: r.hash for r in sp.records(limit=100)}
        assert settled_old.seq == 1 and pending.seq == 9

        assert sp.prune(30) == 0  # nothing is 30 days final yet
        # 1-4 go; 5 is an outage sale whose refund is still owed: it and everything after it stay.
        assert sp.prune(30, now=FAR) == 4
        assert _seqs(sp) == [5, 6, 7, 8, 9, 10]
        assert _checkpoint(path) == (4, hashes[4], 4)
        report = sp.check()
        assert report.ok, report.problems
        assert report.records == 6
        assert sp.prune(30, now=FAR) == 0  # the owed refund still holds it

        sp.refund(owed.record_id, 2000, OPERATOR)
        assert sp.prune(30, now=FAR) == 2  # 5 and 6; 7 is rejected and not resolved
        assert _seqs(sp)[0] == 7 and _checkpoint(path)[:2] == (6, hashes[6])

        sp.resolve(unresolved.record_id, "voided")
        assert sp.prune(30, now=FAR) == 2  # 7 and 8; 9 is pending
        assert _seqs(sp) == [9, 10] and _checkpoint(path) == (8, hashes[8], 8)
        assert sp.check().ok

        _settle(sp, pending)
        assert sp.prune(30, now=FAR) == 2
        assert _seqs(sp) == [] and _checkpoint(path) == (10, hashes[10], 10)
        stats = sp.stats()
        assert (stats.last_seq, stats.last_hash) == (10, hashes[10])  # last_seq never goes down
        assert sp.find_by_key("settled-old") is None  # keys of pruned records are forgotten
        assert sp.check().ok

        after = sp.append(make_request("after-prune")).record
        assert (after.seq, after.prev_hash) == (11, hashes[10])
        assert sp.check().ok

    # A reopen reads the checkpoint: the tail check and the -seq witness agree with it.
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        assert sp.stats().last_seq == 11
        nxt = sp.append(make_request("after-reopen")).record
        assert (nxt.seq, nxt.prev_hash) == (12, after.hash)
        report = sp.check()
        assert report.ok and report.records == 2


def test_a_record_final_too_recently_stops_the_prune(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        for n in range(4):
            _settle(sp, _sale(sp, f"k{n}"))
    old = (datetime.now(UTC) - timedelta(days=31)).timestamp()
    _tamper(path, f"UPDATE records SET updated_epoch = {old} WHERE seq IN (1, 2, 4)")
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        assert sp.prune(30) == 2  # 3 is settled but not 30 days ago: 4, old as it is, stays after it
        assert _seqs(sp) == [3, 4]
        assert sp.check().ok


def test_an_outage_sale_stays_while_its_revoke_may_still_be_rejected(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        owed = _settle(sp, _sale(sp, "outage", outage=True))
        revoke = _revoke(sp, owed, "revoke-1")
        assert sp.get(owed.record_id).revoked_by == revoke.record_id  # type: ignore[union-attr]
        # A pending revoke cancels the debt for now, but central may reject it: then it is owed again.
        assert sp.prune(30, now=FAR) == 0
        _reject(sp, revoke)
        assert sp.get(owed.record_id).refund_owed_fen == 2000  # type: ignore[union-attr]
        assert sp.prune(30, now=FAR) == 0
        second = _revoke(sp, owed, "revoke-2")
        _settle(sp, second, fund=-1500, account=-500)
        # Revoked for good: nothing is owed; the rejected revoke is resolved, so all of it may go.
        sp.resolve(revoke.record_id, "voided")
        assert sp.prune(30, now=FAR) == 3
        assert _seqs(sp) == [] and sp.check().ok


def test_prune_in_chunks_gives_the_same_result(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        records = [_sale(sp, f"k{n}") for n in range(25)]
        sp.apply_outcomes([Outcome(r.seq, "settled", {"central_ref": "c", "fund_paid_fen": 0,
                                                      "account_paid_fen": 0, "cash_paid_fen": 2500})
                           for r in records[:20]])
        done = [sp.prune(30, now=FAR, max_records=7) for _ in range(4)]
        assert done == [7, 7, 6, 0]  # 20 final ones, then 21 is pending
        assert _checkpoint(path) == (20, records[19].hash, 20)
        assert sp.check().ok
        for bad in (0, -1, 1.5, True):
            with pytest.raises(InvalidRequest):
                sp.prune(30, max_records=bad)  # type: ignore[arg-type]


def test_a_voided_outage_sale_owes_what_was_paid_and_stays_until_it_is_handed_over(tmp_path: Path) -> None:
    """Voiding a refused outage sale owes the patient all they paid (decided at the resolution);
    self-pay owes nothing. The follow-ups find it even behind a page of self-paid ones, and the
    prune keeps it (and everything after it) until the refund is recorded."""
    with Spool.open(tmp_path / "spool.db", TERMINAL_ID, background_check=False) as sp:
        self_paid = [_reject(sp, _sale(sp, f"self-{i}", outage=True)) for i in range(3)]
        voided = _reject(sp, _sale(sp, "void", outage=True))
        for record in self_paid:
            assert sp.resolve(record.record_id, "self_pay").refund_owed_fen == 0
        resolved = sp.resolve(voided.record_id, "voided")
        assert resolved.refund_owed_fen == 2500 and resolved.resolution["owed_fen"] == 2500  # type: ignore[index]
        assert [r.record_id for r in sp.followups(limit=2)] == [voided.record_id]
        assert sp.prune(30, now=FAR) == 3 and _seqs(sp) == [4]
        sp.refund(voided.record_id, 2500, OPERATOR)
        assert sp.get(voided.record_id).refund_owed_fen == 0  # type: ignore[union-attr]
        assert sp.followups() == [] and sp.prune(30, now=FAR) == 1


def test_voiding_a_sale_whose_revoke_handed_the_money_back_owes_nothing(tmp_path: Path) -> None:
    """The counter handed the money back with the revoke (its receipt says so); central then
    refused the sale, and the revoke with it. Voiding the sale must not owe it a second time."""
    with Spool.open(tmp_path / "spool.db", TERMINAL_ID, background_check=False) as sp:
        sale = _sale(sp, "outage", outage=True)
        revoke = _revoke(sp, sale, "revoke")
        _reject(sp, sale)
        _reject(sp, revoke)
        assert sp.get(sale.record_id).revoked_by is None  # type: ignore[union-attr]  # the rejected revoke cancelled nothing
        resolved = sp.resolve(sale.record_id, "voided")
        assert resolved.refund_owed_fen == 0 and resolved.resolution["owed_fen"] == 0  # type: ignore[index]
        assert sp.followups() == []


def test_follow_ups_find_an_owed_refund_behind_revoked_and_fund_less_outage_sales(tmp_path: Path) -> None:
    """Outage sales that owe nothing (revoked, or settled with no fund share) never fill the
    follow-ups' page ahead of one that owes: the page is chosen in SQL by what is owed."""
    with Spool.open(tmp_path / "spool.db", TERMINAL_ID, background_check=False) as sp:
        revoked = [_settle(sp, _sale(sp, f"revoked-{i}", outage=True)) for i in range(2)]
        for i, record in enumerate(revoked):
            _revoke(sp, record, f"revoke-{i}")
        _settle(sp, _sale(sp, "no-fund-share", outage=True), fund=0, account=0)
        owed = _settle(sp, _sale(sp, "owed", outage=True))
        assert [r.record_id for r in sp.followups(limit=2)] == [owed.record_id]
        assert [r.refund_owed_fen for r in sp.followups()] == [2000]
