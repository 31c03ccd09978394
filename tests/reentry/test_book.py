"""ReentryBook alone (no network): which pending records wait for their patient, and releases.

The book is the uploader's `eligible` hook with `[nhsa] reentry = "patient_present"`: an outage
sale waits until it is released, and every later record of the same person waits behind it, so
each person's records still reach central in seq order.
"""

from __future__ import annotations

import datetime
import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from spool import AppendRequest, Outcome, Record, Spool
from terminald.config import Config
from terminald.followups import followups_of
from terminald.reentry import ReentryBook, patient_present
from terminald.upstream import nhsa
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


class Clock:
    """The card reads' monotonic clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def book_of(cfg: Config, clock: Clock | None = None, standing: set[str] | None = None,
            spool: Spool | None = None) -> ReentryBook:
    """The book as the daemon builds it: the nhsa package says who a record is about and what
    stands at the platform."""
    return ReentryBook(cfg, person_of=nhsa.person_key,
                       standing_records=(lambda: nhsa.standing_records(spool.path)) if spool is not None
                       else (lambda: set(standing or ())),
                       clock=clock or Clock())


LATER = 1600.0  # a release's end: the card read's, 10 minutes after the clock's start


def card_person(card: Any) -> str:
    return book_of(config()).card_person(card)


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
    book = ReentryBook(cfg)  # nothing to know of persons: nothing waits
    sale = record(P1)
    assert book.eligible(sale) and not book.awaiting(sale)
    assert book.release(card_person(SimpleNamespace(**P1)), until=LATER) == []
    assert book.awaiting_count() == 0
    assert book.waiting_ids() == []


def test_an_outage_sale_waits_until_released_and_so_does_its_persons_later_records() -> None:
    book = book_of(config())
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
    freed = book.release(person, until=LATER)
    assert [s.record_id for s in freed] == [outage.record_id]
    assert freed[0].pos_order_id == outage.payload["meta"]["pos_order_id"]
    for r in (outage, revoke, later_sale_p1):
        assert book.eligible(r) and not book.awaiting(r)
    assert book.released(outage.record_id)
    assert not book.eligible(other_person)  # another person's sale still waits


def test_release_through_a_record_frees_only_up_to_it_in_seq_order() -> None:
    book = book_of(config())
    first, second, third = record(P1), record(P1), record(P1)
    for r in (first, second, third):
        book.observe(r)
    freed = book.release("id:" + P1["ssn"], until=LATER, through=second)
    assert [s.seq for s in freed] == [first.seq, second.seq]
    assert book.eligible(first) and book.eligible(second)
    assert not book.eligible(third) and book.awaiting(third)
    assert book.released(second.record_id) and not book.released(third.record_id)


def test_a_decided_record_waits_for_nobody() -> None:
    book = book_of(config())
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
    book = book_of(config())
    sale = record(P1)
    book.observe(sale)
    book.release("id:" + P1["ssn"], until=LATER)
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

    book = book_of(config(), spool=spool)
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
    book = book_of(config())
    assert book.load(spool) == 120
    book.release("id:" + P2["ssn"], until=LATER)  # the even ones
    assert [r.record_id for r in book.records_waiting(spool)] == [s.record_id for s in sales[1::2]]


def test_load_of_a_spool_without_a_call_log(spool: Spool) -> None:
    a = append(spool, P1, "a")
    book = book_of(config(), spool=spool)
    assert book.load(spool) == 1 and book.waiting_ids() == [a.record_id]
    # Another protocol: nothing read, nothing waits.
    assert book_of(config("v1")).load(spool) == 0


# -- releases last as long as the card read; who waits is counted -----------------------------------
def test_a_release_lapses_with_its_card_read_and_the_unsent_sale_waits_again() -> None:
    clock = Clock()
    book = book_of(config(), clock)
    sale = record(P1)
    revoke = record(P1, kind="revoke", outage=False, original=sale.record_id)
    book.observe(sale)
    book.release("id:" + P1["ssn"], until=LATER, through=sale, read_id="cr_1")
    assert book.eligible(sale) and book.eligible(revoke) and book.lapsed_read(sale.record_id) is None
    clock.now = LATER  # the card read has ended: the link was down all along, nothing was sent
    assert not book.eligible(sale) and book.awaiting(sale) and not book.released(sale.record_id)
    assert not book.eligible(revoke)  # behind it again
    assert book.waiting_ids() == [sale.record_id] and book.lapsed_read(sale.record_id) == "cr_1"
    # The patient back with a new read: released again, for that read's lifetime.
    book.release("id:" + P1["ssn"], until=LATER + 600, read_id="cr_2")
    assert book.eligible(sale) and book.lapsed_read(sale.record_id) is None


def test_a_new_sale_of_a_present_patient_answered_pending_does_not_wait_while_the_read_lasts() -> None:
    clock = Clock()
    book = book_of(config(), clock)
    earlier = record(P1)
    book.observe(earlier)
    new = record(P1, outage=None)  # central is to decide it; the POS waits
    book.release("id:" + P1["ssn"], until=LATER, through=new)
    book.observe(new)
    answered_pending = record(P1, seq=new.seq)  # the POS's wait ran out first: `mark_outage`
    book.observe(answered_pending)
    assert book.eligible(answered_pending) and not book.awaiting(answered_pending)
    assert book.waiting_ids() == [] and book.awaiting_count() == 0
    clock.now = LATER  # neither was sent while the patient was there: both wait for them again
    assert book.waiting_ids() == [earlier.record_id, new.record_id]
    assert book.awaiting(answered_pending)


def test_a_later_read_extends_the_persons_earlier_releases() -> None:
    """The patient is still here (a new read): a release from their first read must not lapse
    first and hold this visit's sale behind it."""
    clock = Clock()
    book = book_of(config(), clock)
    first = record(P1)
    book.observe(first)
    book.release("id:" + P1["ssn"], until=LATER, through=first)
    new = record(P1, outage=None)
    book.release("id:" + P1["ssn"], until=LATER + 300, through=new)
    book.observe(new)
    clock.now = LATER + 1
    assert book.eligible(first) and book.eligible(new)


def test_awaiting_count_is_every_record_held_back_for_a_patient() -> None:
    book = book_of(config())
    a = record(P1)
    revoke = record(P1, kind="revoke", outage=False, original=a.record_id)
    later_p1 = record(P1, outage=None)
    other = record(P2, outage=None)  # nobody of P2 waits: it is sent
    for r in (a, revoke, later_p1, other):
        book.observe(r)
    assert book.awaiting_count() == 3
    book.observe_event("transaction.settled", {"id": a.record_id})
    assert book.awaiting_count() == 0
    b = record(P2)
    book.observe(b)
    assert book.awaiting_count() == 1  # `other` came before b: not behind it
    book.release("id:" + P2["ssn"], until=LATER)
    assert book.awaiting_count() == 0


def test_the_book_imports_nothing_of_a_protocol() -> None:
    """Protocol-neutral code is given who a record is about and what stands at central by the
    daemon (the composition root); it reaches into no adapter."""
    import ast

    root = Path(__file__).resolve().parents[2] / "terminald"
    for name in ("reentry.py", "transactions.py"):
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert [m for m in imported if m.startswith("terminald.upstream")] == [], name
        assert "nhsa_calls" not in (root / name).read_text(encoding="utf-8"), name


def test_the_standing_records_are_read_without_migrating_the_file(spool: Spool) -> None:
    a = append(spool, P1, "a")
    assert CallLog.standing_records(spool.path) == set()
    conn = sqlite3.connect(spool.path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert "nhsa_calls" not in tables
    with CallLog(spool, fixmedins_code=FIXMEDINS) as log:
        log.complete(log.begin("2102", record_id=a.record_id), "ok", output="{}")
        log.begin("1101", record_id=a.record_id)
    assert nhsa.standing_records(spool.path) == {a.record_id}
