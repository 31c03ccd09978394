"""CardReads: a card_read_id backs one sale (one Idempotency-Key); retries of that sale pass."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from terminald.api.problems import from_exception
from terminald.cardreads import CardReads, CardReadUsed
from terminald.errors import CardReadNotFound


def _read(number: str = "A10000123") -> SimpleNamespace:
    return SimpleNamespace(card=SimpleNamespace(card_number=number))


def test_one_read_one_sale_and_its_retries() -> None:
    reads = CardReads()
    read = _read()
    rid = reads.remember(read)
    assert reads.claim(rid, "sale-1") is read
    assert reads.claim(rid, "sale-1") is read  # the same sale, retried
    with pytest.raises(CardReadUsed) as info:
        reads.claim(rid, "sale-2")
    assert info.value.code == "card_read_used" and info.value.status == 422
    assert reads.claim(rid, "sale-1") is read  # the refusal changed nothing
    assert reads.get(rid) is read  # looking is not claiming


def test_a_new_read_of_the_same_card_backs_the_next_sale() -> None:
    reads = CardReads()
    first, second = reads.remember(_read()), reads.remember(_read())
    reads.claim(first, "sale-1")
    assert reads.claim(second, "sale-2").card.card_number == "A10000123"


def test_unknown_and_expired_reads() -> None:
    reads = CardReads(ttl_s=0.0)
    rid = reads.remember(_read())
    with pytest.raises(CardReadNotFound):
        reads.claim(rid, "sale-1")
    with pytest.raises(CardReadNotFound):
        CardReads().claim("cr_nope", "sale-1")
    with pytest.raises(ValueError):
        CardReads().claim(CardReads().remember(_read()), "")


def test_release_frees_the_read_only_for_the_key_that_holds_it() -> None:
    reads = CardReads()
    rid = reads.remember(_read())
    reads.claim(rid, "sale-1")
    reads.release(rid, "sale-2")  # not the holder: nothing happens
    with pytest.raises(CardReadUsed):
        reads.claim(rid, "sale-2")
    reads.release(rid, "sale-1")  # sale-1 was refused with nothing recorded
    reads.claim(rid, "sale-2")
    reads.release("cr_unknown", "sale-2")  # harmless


def test_racing_sales_one_wins() -> None:
    reads = CardReads()
    rid = reads.remember(_read())
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def sale(key: str) -> None:
        barrier.wait()
        try:
            reads.claim(rid, key)
            outcomes.append("ok")
        except CardReadUsed:
            outcomes.append("used")

    threads = [threading.Thread(target=sale, args=(f"k{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == ["ok"] + ["used"] * 7


def test_card_read_used_is_a_422_problem() -> None:
    response = from_exception(CardReadUsed("this card_read_id already backs another sale"))
    assert response.status_code == 422
    assert b'"code": "card_read_used"' in response.body
