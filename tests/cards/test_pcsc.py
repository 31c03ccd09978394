"""Card reads through real pcscd + vpcd with emulated cards: fields, errors, events, busy, restarts."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from smartcard import scard

from drivers.cards import CardRead, CardService, CardUnreadable, NoCard, NoReader, ReaderBusy
from drivers.cards.errors import CardError, PcscdUnavailable
from terminald.sim.card import CardDescription, load_card
from tests.cards.expected import ERRORS, READS
from tests.fixtures.pcsc import Pcscd, VCard, reader_name, wait_until

pytestmark = pytest.mark.pcsc

CARD, PSAM = reader_name(0), reader_name(1)


class Events:
    def __init__(self) -> None:
        self.queue: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()

    def __call__(self, name: str, data: dict[str, Any]) -> None:
        self.queue.put((name, data))

    def next(self, name: str, reader: str, timeout_s: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            got, data = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if got == name and data["reader"] == reader:
                return data


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def service(pcscd: Pcscd, vpcd_slots: None, events: Events) -> Iterator[CardService]:
    svc = CardService(readers=["Virtual PCD*"], psam_reader=PSAM, on_event=events, poll_s=0.2)
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


@pytest.mark.parametrize("card", sorted(READS))
def test_every_readable_card(card: str, service: CardService, vcard: VCard) -> None:
    vcard("psam", slot=1)
    vcard(card)
    result = service.read(CARD, timeout_s=5)
    assert isinstance(result, CardRead)
    assert result.reader == CARD
    assert result.atr == load_card(card).atr.hex().upper()
    got = result.card.as_dict()
    for key, value in READS[card].items():
        assert got[key] == value, key
    assert result.apdus >= 14


@pytest.mark.parametrize("card", sorted(ERRORS))
def test_error_cards(card: str, service: CardService, vcard: VCard) -> None:
    code, fragment, sw = ERRORS[card]
    vcard(card)
    with pytest.raises(CardError) as info:
        service.read(CARD, timeout_s=5)
    assert (info.value.code, getattr(info.value, "sw", None)) == (code, sw)
    assert fragment in info.value.detail


def test_removed_mid_read_is_unreadable_with_retry(
    service: CardService, vcard: VCard, events: Events
) -> None:
    vcard("removed_mid_read")
    with pytest.raises(CardUnreadable) as info:
        service.read(CARD, timeout_s=5)
    assert info.value.retry_allowed
    assert info.value.sw is None
    events.next("card.removed", CARD)


def test_3_0_card_without_psam_reader(pcscd: Pcscd, vcard: VCard) -> None:
    vcard("ssc3")
    with pytest.raises(CardUnreadable) as info:
        CardService().read(CARD, timeout_s=5)
    assert info.value.detail == "PSAM required"
    assert info.value.sw_hex == "6982"


def test_3_0_card_with_an_empty_psam_slot(pcscd: Pcscd, vcard: VCard) -> None:
    vcard("ssc3")
    with pytest.raises(CardUnreadable) as info:
        CardService(psam_reader=PSAM).read(CARD, timeout_s=5)
    assert info.value.detail == "PSAM required"


def test_insert_and_remove_events_carry_no_personal_data(
    service: CardService, vcard: VCard, events: Events
) -> None:
    card = vcard("ssc2")
    inserted = events.next("card.inserted", CARD)
    assert inserted == {"reader": CARD, "atr": "3B6D00000087CF20018649618C009773F5"}
    card.remove()
    assert events.next("card.removed", CARD) == {"reader": CARD}


def test_readers_and_state(service: CardService, vcard: VCard) -> None:
    vcard("psam", slot=1)
    wait_until(lambda: any(r.card_present for r in service.readers() if r.name == PSAM), 10, "PSAM seen")
    infos = {r.name: r for r in service.readers()}
    assert service.state == "ok"
    assert infos[PSAM].kind == "psam" and infos[PSAM].state == "ok"
    assert infos[CARD].kind == "pcsc" and infos[CARD].state == "no_card" and not infos[CARD].card_present


def test_no_card_within_timeout_and_unknown_reader(service: CardService) -> None:
    started = time.monotonic()
    with pytest.raises(NoCard):
        service.read(CARD, timeout_s=0.3)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(NoReader, match="no card reader named"):
        service.read("Virtual PCD 00 07", timeout_s=0)
    with pytest.raises(NoReader, match="not a configured card reader"):
        service.read("ACS ACR122U 00 00", timeout_s=0)
    with pytest.raises(NoReader, match="not a configured card reader"):
        service.read(PSAM, timeout_s=0)  # the PSAM slot is never read as a card
    with pytest.raises(ValueError):
        service.read(CARD, timeout_s=float("nan"))


def test_read_waits_for_a_card_to_be_inserted(service: CardService, vcard: VCard) -> None:
    timer = threading.Timer(0.5, lambda: vcard("ssc2", wait=False))
    timer.start()
    try:
        result = service.read(timeout_s=10)  # any card reader: the PSAM slot is never read as a card
    finally:
        timer.join()
    assert result.card.card_number == "A10000123"


def test_second_exchange_on_the_same_reader_is_busy(service: CardService, vcard: VCard) -> None:
    slow = CardDescription.from_dict("slow", {**_raw("ssc2"), "answer_delay_ms": 60})
    vcard(slow)
    results: list[object] = []
    reader = threading.Thread(target=lambda: results.append(service.read(CARD, timeout_s=5)))
    reader.start()
    wait_until(lambda: any(r.state == "busy" for r in service.readers()), 5, "the reader to be busy")
    with pytest.raises(ReaderBusy):
        service.read(CARD)
    reader.join(10)
    assert isinstance(results[0], CardRead)


def test_reader_held_by_another_program_is_busy(service: CardService, vcard: VCard) -> None:
    vcard("ssc2")
    _, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    hresult, card, _ = scard.SCardConnect(ctx, CARD, scard.SCARD_SHARE_EXCLUSIVE, scard.SCARD_PROTOCOL_T0)
    assert hresult == scard.SCARD_S_SUCCESS
    try:
        with pytest.raises(ReaderBusy):
            service.read(CARD, timeout_s=1)
    finally:
        scard.SCardDisconnect(card, scard.SCARD_LEAVE_CARD)
        scard.SCardReleaseContext(ctx)
    assert service.read(CARD).card.card_number == "A10000123"


def test_pcscd_killed_and_restarted_during_a_wait(
    pcscd: Pcscd, service: CardService, vcard: VCard, events: Events, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pcscd.owned:
        pytest.skip("pcscd was already running: only a pcscd this session started may be killed")
    wait_until(lambda: service.state == "ok", 10, "the monitor to see the readers")
    monitor_contexts = service.open_contexts
    results: list[object] = []

    def wait_for_card() -> None:
        try:
            results.append(service.read(CARD, timeout_s=30))
        except CardError as exc:
            results.append(exc)

    # The read starts with pcscd up and an empty reader: it establishes its context, then waits.
    waiter = threading.Thread(target=wait_for_card)
    waiter.start()
    wait_until(lambda: service.open_contexts > monitor_contexts, 10, "the read to talk to pcscd")
    pcscd.kill()
    wait_until(lambda: service.state == "pcscd_unavailable", 10, "the monitor to notice pcscd is gone")
    assert service.readers() == []
    # A read that starts now has nothing to wait for: it answers at once, whatever its timeout
    # (one attempt at a context, no retry loop until timeout_s).
    attempts = _count_establish(monkeypatch)
    with pytest.raises(PcscdUnavailable) as info:
        service.read(CARD, timeout_s=10)
    assert info.value.code == "no_reader"
    assert attempts.count(threading.get_ident()) == 1, attempts
    assert waiter.is_alive() and not results, results  # the earlier read rides the restart out

    pcscd.start()
    vcard("ssc2")
    waiter.join(35)
    assert isinstance(results[0], CardRead), results
    assert results[0].card.card_number == "A10000123"
    wait_until(lambda: service.state == "ok", 10, "the monitor to recover")
    events.next("card.inserted", CARD)


def test_stop_releases_every_context_it_established(
    pcscd: Pcscd, vpcd_slots: None, vcard: VCard, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monitor's context and the one each reading thread keeps are all released by stop()."""
    live: set[int] = set()
    establish, release = scard.SCardEstablishContext, scard.SCardReleaseContext

    def counting_establish(scope: int) -> Any:
        hresult, handle = establish(scope)
        if hresult == scard.SCARD_S_SUCCESS:
            live.add(handle)
        return hresult, handle

    def counting_release(handle: int) -> Any:
        live.discard(handle)
        return release(handle)

    monkeypatch.setattr(scard, "SCardEstablishContext", counting_establish)
    monkeypatch.setattr(scard, "SCardReleaseContext", counting_release)
    vcard("ssc2")
    before = set(live)  # none of ours yet (the fixture releases what it opens)
    svc = CardService(readers=["Virtual PCD*"], psam_reader=PSAM, poll_s=0.2)
    svc.start()
    wait_until(lambda: svc.state == "ok", 10, "the monitor to see the readers")
    # Two reads in two threads (the API reads on a thread pool), one in this thread.
    for _ in range(2):
        worker = threading.Thread(target=svc.read, args=(CARD, 5))
        worker.start()
        worker.join(30)
    assert svc.read(CARD, timeout_s=5).card.card_number == "A10000123"
    assert svc.open_contexts == 4 and len(live - before) == 4  # monitor + three reading threads
    svc.stop()
    assert svc.open_contexts == 0
    assert live - before == set(), "PC/SC contexts left established after stop()"
    with pytest.raises(PcscdUnavailable, match="stopping"):
        svc.read(CARD, timeout_s=5)  # stopped: no new context behind stop()'s back
    assert live - before == set()


def _count_establish(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the thread of every SCardEstablishContext call."""
    calls: list[int] = []
    real = scard.SCardEstablishContext

    def establish(scope: int) -> Any:
        calls.append(threading.get_ident())
        return real(scope)

    monkeypatch.setattr(scard, "SCardEstablishContext", establish)
    return calls


def _raw(name: str) -> dict[str, Any]:
    import tomllib

    from terminald.sim.card import CARDS_DIR

    return tomllib.loads((CARDS_DIR / f"{name}.toml").read_text(encoding="utf-8"))
