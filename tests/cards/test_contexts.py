"""CardService's PC/SC contexts against a fake pcscd (no hardware, no pcscd needed).

The fake stands in for `drivers.cards.pcsc.PcscContext`: it counts every
context established and released, can be "killed" (every context goes stale,
new ones fail) and "started" again, and its status wait blocks until a card
is inserted, the wait is cancelled or its timeout passes, like pcsc-lite's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from drivers.cards import CardService
from drivers.cards.errors import PcscdUnavailable
from drivers.cards.pcsc import STATE_PRESENT, ReaderState
from tests.waiting import wait_for

READER = "Fake Reader 00 00"


class Connected(Exception):
    """Raised by the fake's connect: the read found a card (the APDU part is tested elsewhere)."""


@dataclass
class FakePcscd:
    up: bool = True
    generation: int = 0
    present: set[str] = field(default_factory=set)
    established: list[FakeContext] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)  # thread of each establish attempt
    max_attempts_per_thread: int = 1000
    cond: threading.Condition = field(default_factory=threading.Condition)

    def kill(self) -> None:
        with self.cond:
            self.up = False
            self.generation += 1
            self.cond.notify_all()

    def start(self) -> None:
        with self.cond:
            self.up = True
            self.cond.notify_all()

    def insert(self, reader: str = READER) -> None:
        with self.cond:
            self.present.add(reader)
            self.cond.notify_all()

    def attempts_in(self, thread: int) -> int:
        with self.cond:
            return sum(1 for t in self.attempts if t == thread)

    @property
    def open(self) -> list[FakeContext]:
        with self.cond:
            return [c for c in self.established if not c.closed]


FAKE = FakePcscd()


class FakeContext:
    def __init__(self) -> None:
        me = threading.get_ident()
        with FAKE.cond:
            FAKE.attempts.append(me)
            if sum(1 for t in FAKE.attempts if t == me) > FAKE.max_attempts_per_thread:
                raise AssertionError("the read kept trying to reach pcscd instead of answering")
            if not FAKE.up:
                raise PcscdUnavailable("establish context: pcscd is not running")
            self.generation = FAKE.generation
            self.released = False
            self._cancelled = False
            FAKE.established.append(self)

    @property
    def closed(self) -> bool:
        return self.released

    def _check(self) -> None:
        if self.released:
            raise PcscdUnavailable("the PC/SC context was released")
        if not FAKE.up or self.generation != FAKE.generation:
            raise PcscdUnavailable("pcscd is not running")

    def list_readers(self) -> list[str]:
        with FAKE.cond:
            self._check()
            return [READER]

    def wait(self, known: Sequence[tuple[str, int]], timeout_ms: int) -> list[ReaderState] | None:
        deadline = time.monotonic() + timeout_ms / 1000
        with FAKE.cond:
            while True:
                self._check()
                states = [ReaderState(n, STATE_PRESENT if n in FAKE.present else 0, b"\x3b\x00")
                          for n, _ in known]
                if any(s.flags != flags & ~0x2 for s, (_, flags) in zip(states, known, strict=True)):
                    return states
                if self._cancelled:
                    self._cancelled = False
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                FAKE.cond.wait(remaining)

    def cancel(self) -> None:
        with FAKE.cond:
            self._cancelled = True
            FAKE.cond.notify_all()

    def close(self) -> None:
        with FAKE.cond:
            self.released = True
            FAKE.cond.notify_all()

    def connect(self, reader: str, exclusive: bool = True, atr: bytes | None = None) -> object:
        with FAKE.cond:
            self._check()
        raise Connected(reader)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePcscd]:
    global FAKE
    FAKE = FakePcscd()
    monkeypatch.setattr("drivers.cards.service.PcscContext", FakeContext)
    monkeypatch.setattr("drivers.cards.monitor.PcscContext", FakeContext)
    yield FAKE
    FAKE.start()  # wake anything still waiting


@pytest.fixture
def service(fake: FakePcscd) -> Iterator[CardService]:
    svc = CardService(poll_s=0.05)
    yield svc
    svc.stop()


def _read_in_thread(svc: CardService, timeout_s: float) -> tuple[threading.Thread, list[BaseException]]:
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            svc.read(READER, timeout_s=timeout_s)
        except BaseException as exc:  # handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_without_pcscd_a_read_answers_at_once_whatever_its_timeout(
    fake: FakePcscd, service: CardService
) -> None:
    fake.kill()
    fake.max_attempts_per_thread = 2  # a third attempt means the read is waiting for pcscd
    with pytest.raises(PcscdUnavailable) as info:
        service.read(READER, timeout_s=10)
    assert info.value.code == "no_reader"
    assert fake.attempts_in(threading.get_ident()) == 1
    assert service.open_contexts == 0


def test_a_stale_context_from_an_earlier_read_is_replaced_at_once(
    fake: FakePcscd, service: CardService
) -> None:
    fake.insert()
    with pytest.raises(Connected):
        service.read(READER, timeout_s=0)
    first = fake.open
    assert len(first) == 1
    fake.kill()
    fake.start()  # pcscd restarted between two reads: the kept context is stale
    with pytest.raises(Connected):
        service.read(READER, timeout_s=0)  # even with no time to wait, the read goes through
    assert first[0].closed
    assert fake.attempts_in(threading.get_ident()) == 2
    assert service.open_contexts == 1


def test_pcscd_lost_during_a_wait_is_ridden_out(fake: FakePcscd, service: CardService) -> None:
    thread, outcome = _read_in_thread(service, timeout_s=30)
    wait_for(lambda: fake.open, 10, "the read to establish its context")
    fake.kill()
    tries = fake.attempts_in(thread.ident or 0)
    wait_for(lambda: fake.attempts_in(thread.ident or 0) > tries, 10, "the read to try pcscd again")
    assert thread.is_alive() and not outcome
    fake.start()
    fake.insert()
    thread.join(10)
    assert [type(e) for e in outcome] == [Connected]


def test_stop_releases_every_context_the_service_established(fake: FakePcscd) -> None:
    svc = CardService(poll_s=0.05)
    svc.start()
    wait_for(lambda: svc.state == "ok", 10, "the monitor to see the reader")
    fake.insert()
    for _ in range(2):  # the API reads on a thread pool: one context kept per thread
        thread, outcome = _read_in_thread(svc, timeout_s=5)
        thread.join(10)
        assert [type(e) for e in outcome] == [Connected]
    with pytest.raises(Connected):
        svc.read(READER, timeout_s=5)
    assert svc.open_contexts == 3 + 1  # three reading threads and the monitor
    svc.stop()
    assert fake.established and all(c.closed for c in fake.established)
    assert svc.open_contexts == 0
    count = len(fake.established)
    with pytest.raises(PcscdUnavailable, match="stopping"):
        svc.read(READER, timeout_s=5)
    assert len(fake.established) == count  # nothing established behind stop()'s back
    svc.start()  # and it starts again
    wait_for(lambda: svc.state == "ok", 10, "the monitor to see the reader again")
    with pytest.raises(Connected):
        svc.read(READER, timeout_s=5)
    svc.stop()
    assert all(c.closed for c in fake.established)


def test_stop_ends_a_read_that_is_waiting(fake: FakePcscd, service: CardService) -> None:
    service.start()
    thread, outcome = _read_in_thread(service, timeout_s=60)
    wait_for(lambda: len(fake.open) == 2, 10, "the read to wait with its own context")
    service.stop()
    thread.join(10)
    assert not thread.is_alive()
    assert [type(e) for e in outcome] == [PcscdUnavailable]
    assert all(c.closed for c in fake.established)
