"""ReentryBook alone (no network): which pending records wait for their patient, and releases.

The book is the uploader's `eligible` hook with `[nhsa] reentry = "patient_present"`: an outage
sale waits until it is released, and every later record of the same person waits behind it, so
each person's records still reach central in seq order.
"""

from __future__ import annotations

import datetime
import itertools
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from spool import AppendRequest, Outcome, Record, Spool
from terminald.config import Config
from terminald.followups import followups_of
from terminald.reentry import ReentryBook, card_person, patient_present
from terminald.upstream.nhsa.calllog import CallLog

TID = "T0001"
FIXMEDINS = "H11010100001"
P1 = {"card_number": "A10000123", "ssn": "110105198003150039", "name": "张伟", "issuer_code": ""}
P2 = {"card_number": "C30000789", "ssn": "650102197511200057", "name": "阿卜杜", "issuer_code": ""}
_seq = itertools.count(1)


def config(protocol: str = "nhsa", reentry: str = "patient_present") -> Config:
    """A Config with the upstream protocol set as given (model_copy: the name table decides which
    protocols exist, not this test)."""
    cfg = Config()
    return cfg.model_copy(update={
        "upstream": cfg.upstream.model_copy(update={"protocol": protocol}),
        "nhsa": cfg.nhsa.model_copy(update={"reentry": reentry, "fixmedins_code": FIXMEDINS}),
    })


def record(card: dict[str, str], *, kind: str = "settlement", outage: bool | None = True,
           status: str = "pending", seq: int | None = None, total: int = 2500,
           original: str | None = None) -> Record:
    n = next(_seq) if seq is None else seq
    payload: dict[str, Any] = {"card": card, "total_fen": total if kind == "settlement" else -total,
                               "meta": {"pos_order_id": f"P-{n}"}}
    if original:
        payload["original_record_id"] = original
    return Record(record_id=f"r{n}", seq=n, terminal_id=TID, kind=kind,
                  business_time="2026-11-23T10:15:00+08:00", spooled_at="2026-11-23T02:15:00Z",
                  offline=bool(outage), offline_reason="upstream_unreachable" if outage else None,
                  payload=payload, prev_hash="", hash="", status=status, outcome=None, resolution=None,
                  idempotency_key=f"k{n}", request_digest="d", updated_at="", outage=outage,
                  outage_reason="upstream_unreachable" if outage else None)


@pytest.mark.parametrize(("protocol", "reentry"), [("v1", "patient_present"), ("nhsa", "auto")])
def test_nothing_waits_unless_nhsa_and_patient_present(protocol: str, reentry: str) -> None:
    cfg = config(protocol, reentry)
    assert not patient_present(cfg)
    book = ReentryBook(cfg)
    sale = record(P1)
    assert book.eligible(sale) and not book.awaiting(sale)
    assert book.release(card_person(SimpleNamespace(**P1))) == []
    assert book.waiting_ids() == []


def test_an_outage_sale_waits_until_released_and_so_does_its_persons_later_records() -> None:
    book = ReentryBook(config())
    outage = record(P1)
    online_pending = record(P2, outage=None)  # central is deciding it: never waits
    revoke = record(P1, kind="revoke", outage=False, original=outage.record_id)
    other_person = record(P2)
    later_sale_p1 = record(P1, outage=None)

    assert not book.eligible(outage) and book.awaiting(outage)
    assert book.eligible(online_pending) and not book.awaiting(online_pending)
    # Behind the waiting sale of the same person: the revoke and a later sale wait too.
    assert not book.eligible(revoke) and book.awaiting(revoke)
    assert not book.eligible(later_sale_p1)
    assert not book.eligible(other_person)  # its own outage sale
    assert book.waiting_ids() == [outage.record_id, other_person.record_id]

    person = card_person(SimpleNamespace(card_number=P1["card_number"], ssn=P1["ssn"].lower()))
    assert person == "id:" + P1["ssn"]
    freed = book.release(person)
    assert [s.record_id for s in freed] == [outage.record_id]
    assert freed[0].pos_order_id == outage.payload["meta"]["pos_order_id"]
    for r in (outage, revoke, later_sale_p1):
        assert book.eligible(r) and not book.awaiting(r)
    assert book.released(outage.record_id)
    assert not book.eligible(other_person)  # another person's sale still waits


def test_release_through_a_record_frees_only_up_to_it_in_seq_order() -> None:
    book = ReentryBook(config())
    first, second, third = record(P1), record(P1), record(P1)
    for r in (first, second, third):
        book.observe(r)
    freed = book.release("id:" + P1["ssn"], through=second)
    assert [s.seq for s in freed] == [first.seq, second.seq]
    assert book.eligible(first) and book.eligible(second)
    assert not book.eligible(third) and book.awaiting(third)
    assert book.released(second.record_id) and not book.released(third.record_id)


def test_a_decided_record_waits_for_nobody() -> None:
    book = ReentryBook(config())
    sale, revoke = record(P1), record(P1, kind="revoke", outage=False)
    book.observe(sale)
    assert not book.eligible(revoke)
    book.observe_event("transaction.settled", {"id": sale.record_id})
    assert book.eligible(revoke) and book.waiting_ids() == []
    # A record read as decided (the uploader's view) also leaves the book.
    other = record(P2)
    book.observe(other)
    decided = record(P2, seq=other.seq, status="rejected")
    assert book.eligible(decided) and book.waiting_ids() == []


def test_a_released_sale_answered_pending_again_is_not_held_back() -> None:
    """Released, then the POS's wait ended (`mark_outage` again): the release stands."""
    book = ReentryBook(config())
    sale = record(P1)
    book.observe(sale)
    book.release("id:" + P1["ssn"])
    book.observe(sale)
    assert book.eligible(sale)


# -- with a real spool ---------------------------------------------------------------------------------
@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool.open(tmp_path / "spool.db", TID)
    yield s
    s.close()


def append(spool: Spool, card: dict[str, str], key: str, *, outage: bool = True, kind: str = "settlement",
           original: Record | None = None, phone: str | None = None) -> Record:
    total = 2500 if original is None else -original.total_fen
    payload: dict[str, Any] = {"card": card, "total_fen": total, "items": [], "operator": {"id": "op7"},
                               "meta": {"pos_order_id": key}}
    if original is not None:
        payload["original_record_id"] = original.record_id
    req = AppendRequest(kind=kind, business_time="2026-11-23T10:15:00+08:00", payload=payload,
                        idempotency_key=key, request_digest=key, offline=outage,
                        offline_reason="upstream_unreachable" if outage else None,
                        outage_reason="upstream_unreachable" if outage else None,
                        original_record_id=original.record_id if original else None, contact_phone=phone)
    return spool.append(req).record


def test_load_finds_the_waiting_sales_and_releases_those_central_holds(spool: Spool) -> None:
    a = append(spool, P1, "a", phone="13800138000")
    b = append(spool, P2, "b")
    c = append(spool, P1, "c", outage=False)  # an online sale still pending: never waits itself
    revoke = append(spool, P1, "a-revoke", kind="revoke", outage=False, original=a)
    settled = append(spool, P2, "d")
    spool.apply_outcomes([Outcome(seq=settled.seq, status="settled", detail={"central_ref": "x"})])
    # b's 2102 stands at central (the daemon stopped before writing the outcome): no patient needed.
    with CallLog(spool, fixmedins_code=FIXMEDINS) as log:
        log.complete(log.begin("2102", record_id=b.record_id), "ok", output="{}")
        log.complete(log.begin("2102", record_id=a.record_id), "failed", err_msg="refused")

    book = ReentryBook(config())
    assert book.load(spool) == 1
    assert book.waiting_ids() == [a.record_id]
    assert book.eligible(b) and book.released(b.record_id)
    assert not book.eligible(c) and not book.eligible(revoke)  # behind a, the same person's
    assert [r.record_id for r in book.records_waiting(spool)] == [a.record_id]
    assert [s["id"] for s in book.sales_for_card(spool, SimpleNamespace(**P1))] == [a.record_id]
    [item] = book.sales_for_card(spool, SimpleNamespace(**P1))
    assert item == {"id": a.record_id, "seq": a.seq, "business_time": a.business_time, "total_fen": 2500,
                    "paid_at_counter_fen": 2500, "pos_order_id": "a", "revoked_by": revoke.record_id}
    assert book.sales_for_card(spool, SimpleNamespace(**P2)) == []

    # The follow-up list: the waiting sale, with its reason; nothing is owed yet.
    items = followups_of(spool.followups(), config(), datetime.date(2026, 11, 24),
                         book.records_waiting(spool))
    assert [(i.record.record_id, i.reason, i.owed_fen) for i in items] == [(a.record_id, "awaiting_patient", 0)]
    assert items[0].deadline is not None and not items[0].overdue


def test_many_waiting_sales_are_read_page_by_page(spool: Spool) -> None:
    decided = append(spool, P2, "first", outage=False)
    spool.apply_outcomes([Outcome(seq=decided.seq, status="settled", detail={"central_ref": "x"})])
    sales = [append(spool, P1 if n % 2 else P2, f"s{n}") for n in range(120)]
    book = ReentryBook(config())
    assert book.load(spool) == 120
    book.release("id:" + P2["ssn"])  # the even ones
    assert [r.record_id for r in book.records_waiting(spool)] == [s.record_id for s in sales[1::2]]


def test_load_of_a_spool_without_a_call_log(spool: Spool) -> None:
    a = append(spool, P1, "a")
    book = ReentryBook(config())
    assert book.load(spool) == 1 and book.waiting_ids() == [a.record_id]
    # Another protocol: nothing read, nothing waits.
    assert ReentryBook(config("v1")).load(spool) == 0
