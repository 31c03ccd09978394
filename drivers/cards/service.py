"""CardService: the one object the daemon uses to list readers and read cards.

One exchange at a time per reader (a second caller gets ReaderBusy at once),
every wait bounded with ``time.monotonic()``, and no exception other than
:class:`~drivers.errors.DriverError` subclasses leaves :meth:`CardService.read`.

Every PC/SC context the service establishes (the monitor's, one kept per
reading thread) is booked in one registry, and :meth:`CardService.stop`
releases them all.
"""

from __future__ import annotations

import datetime as _dt
import fnmatch
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from drivers.cards.channel import ApduSession
from drivers.cards.errors import CardUnreadable, NoCard, NoReader, PcscdUnavailable, ReaderBusy
from drivers.cards.model import CardRead, ReaderInfo
from drivers.cards.monitor import ReaderMonitor, probe, reader_condition
from drivers.cards.pcsc import PcscCard, PcscContext
from drivers.cards.profiles import PROFILES, CardProfile, get_profile

__all__ = ["CardService"]

log = logging.getLogger(__name__)

# A complete read is a few dozen APDUs; a card still talking after this is stuck.
READ_BUDGET_S = 10.0
# Two readers may share one PSAM; the second read waits this long for it.
PSAM_WAIT_S = 5.0
_WAIT_SLICE_MS = 500
CONNECT_GRACE_S = 1.0


class _Contexts:
    """The PC/SC contexts a service established and has not released yet."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[PcscContext] = set()
        self.closing = threading.Event()

    def establish(self) -> PcscContext:
        if self.closing.is_set():
            raise PcscdUnavailable("the card service is stopping")
        ctx = PcscContext()
        with self._lock:
            self._open = {c for c in self._open if not c.closed}
            self._open.add(ctx)
            late = self.closing.is_set()
        if late:  # stop() ran while this one was being established: it must not outlive it
            self.release(ctx)
            raise PcscdUnavailable("the card service is stopping")
        return ctx

    def release(self, ctx: PcscContext) -> None:
        ctx.close()
        with self._lock:
            self._open.discard(ctx)

    def release_all(self) -> int:
        """Wake and release every context; returns how many were still open."""
        with self._lock:
            contexts, self._open = [c for c in self._open if not c.closed], set()
        for ctx in contexts:
            ctx.cancel()  # a thread blocked in a status wait on it returns first
            ctx.close()
        return len(contexts)

    @property
    def count(self) -> int:
        with self._lock:
            return sum(1 for c in self._open if not c.closed)


class CardService:
    """Readers, card events and reads for one card profile.

    ``readers``: name patterns (shell-style, or a plain substring); empty
    accepts every reader. ``psam_reader``: the slot holding the PSAM (never
    read as a card). ``on_event(name, data)`` receives ``card.inserted``
    ``{"reader", "atr"}`` and ``card.removed`` ``{"reader"}`` from the
    monitor thread, and must not block.
    """

    def __init__(
        self,
        profile: str = "cn-ssc",
        readers: Sequence[str] = (),
        psam_reader: str = "",
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        *,
        profiles: Mapping[str, type[CardProfile]] = PROFILES,
        poll_s: float = 0.5,
    ) -> None:
        self._profile = get_profile(profile, profiles)
        self._patterns = tuple(p for p in readers if p)
        self._psam_reader = psam_reader
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._local = threading.local()
        self._contexts = _Contexts()
        self._monitor = ReaderMonitor(self._accept, on_event, poll_s, establish=self._contexts.establish)

    # -- readers -----------------------------------------------------------
    def _accept(self, name: str) -> bool:
        if name == self._psam_reader or not self._patterns:
            return True
        return any(fnmatch.fnmatchcase(name, p) or p in name for p in self._patterns)

    def _is_card_reader(self, name: str) -> bool:
        return name != self._psam_reader and self._accept(name)

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())

    def start(self) -> None:
        """Start following readers and cards; works (and keeps retrying) without pcscd."""
        self._contexts.closing.clear()
        self._monitor.start()

    def stop(self) -> None:
        """Stop the monitor and release every PC/SC context this service established (the
        monitor's and each reading thread's). A read still waiting ends with PcscdUnavailable;
        reads are refused until :meth:`start`."""
        self._contexts.closing.set()
        self._monitor.stop()
        released = self._contexts.release_all()
        if released:
            log.debug("card service stopped: released %d PC/SC context(s)", released)

    @property
    def open_contexts(self) -> int:
        """PC/SC contexts established and not yet released (0 after :meth:`stop`)."""
        return self._contexts.count

    @property
    def state(self) -> str:
        """``ok``, ``no_reader`` or ``pcscd_unavailable``."""
        if self._monitor.running:
            return self._monitor.state
        return probe(self._accept)[0]

    def readers(self) -> list[ReaderInfo]:
        states = self._monitor.snapshot() if self._monitor.running else probe(self._accept)[1]
        infos = []
        for s in states:
            busy = self._lock(s.name).locked()
            infos.append(
                ReaderInfo(
                    name=s.name,
                    kind="psam" if s.name == self._psam_reader else "pcsc",
                    state="busy" if busy else reader_condition(s),
                    card_present=s.present,
                )
            )
        return infos

    # -- reading -----------------------------------------------------------
    def _kept_context(self) -> PcscContext | None:
        """This thread's PC/SC context, kept between reads (establishing one costs a round trip)."""
        ctx: PcscContext | None = getattr(self._local, "ctx", None)
        return None if ctx is None or ctx.closed else ctx

    def _new_context(self) -> PcscContext:
        ctx = self._contexts.establish()
        self._local.ctx = ctx
        return ctx

    def _drop_context(self) -> None:
        ctx: PcscContext | None = getattr(self._local, "ctx", None)
        self._local.ctx = None
        if ctx is not None:
            self._contexts.release(ctx)

    def read(self, reader: str | None = None, timeout_s: float = 0.0) -> CardRead:
        """Read the card in ``reader`` (default: any card reader), waiting up to ``timeout_s`` for one.

        Raises NoReader (PcscdUnavailable), NoCard, ReaderBusy, CardUnreadable or CardLocked.
        """
        if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s >= 0):
            raise ValueError("timeout_s must be a finite number >= 0")
        deadline = time.monotonic() + timeout_s
        ctx, name, atr = self._wait_for_card(reader, deadline)
        lock = self._lock(name)
        if not lock.acquire(blocking=False):
            raise ReaderBusy(f"{name} is reading another card")
        try:
            return self._read_locked(ctx, name, atr)
        except PcscdUnavailable:
            self._drop_context()
            raise
        finally:
            lock.release()

    def _candidates(self, ctx: PcscContext, reader: str | None) -> list[str]:
        if reader is not None:
            return [reader]  # no listing: the status wait reports an unknown reader (saves a round trip)
        names = [n for n in ctx.list_readers() if self._is_card_reader(n)]
        if not names:
            raise NoReader("no card reader attached")
        return names

    def _wait_for_card(self, reader: str | None, deadline: float) -> tuple[PcscContext, str, bytes]:
        """Wait for a card until ``deadline``, riding out a pcscd restart or a reader unplugged
        meanwhile. pcscd not running when the read starts is PcscdUnavailable at once: there is
        nothing to wait for, and the person at the counter should hear so now."""
        if reader is not None and not self._is_card_reader(reader):
            raise NoReader(f"{reader!r} is not a configured card reader")
        live = False  # pcscd answered during this read: losing it from now on is ridden out
        lost = False  # ... and it was lost: a restarted pcscd may list its readers a moment later
        known: list[tuple[str, int]] = []
        while True:
            if self._contexts.closing.is_set():
                raise PcscdUnavailable("the card service is stopping")
            ctx = self._kept_context()
            fresh = ctx is None
            try:
                if ctx is None:
                    ctx = self._new_context()
                    live = True
                if not known:
                    known = [(n, 0) for n in self._candidates(ctx, reader)]
                remaining_ms = int(max(0.0, deadline - time.monotonic()) * 1000)
                states = ctx.wait(known, min(remaining_ms, _WAIT_SLICE_MS))
                live = True
            except PcscdUnavailable:
                self._drop_context()
                known = []
                if (fresh and not live) or self._contexts.closing.is_set():
                    raise  # pcscd is not running (or we are stopping): nothing to wait for
                if not fresh:
                    continue  # the context kept from an earlier read is stale: a new one, at once
                if time.monotonic() >= deadline:
                    raise
                lost = True
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))  # pcscd went away: wait
                continue
            except NoReader as exc:
                if lost and time.monotonic() < deadline:
                    known = []  # pcscd is back, its readers not yet
                    time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                    continue
                if reader is not None:
                    raise NoReader(f"no card reader named {reader!r}") from exc
                if not known:  # nothing attached at all
                    raise
                known = []  # a reader went away while we waited: list again
                continue
            if states is not None:
                for s in states:
                    if s.present:
                        return ctx, s.name, s.atr
                known = [(s.name, s.flags & ~0x2) for s in states]
            if time.monotonic() >= deadline:
                raise NoCard("no card in the reader" if len(known) == 1 else "no card in any reader")

    def _read_locked(self, ctx: PcscContext, name: str, atr: bytes) -> CardRead:
        with ExitStack() as stack:
            card = stack.enter_context(self._connect(ctx, name, atr))
            budget = time.monotonic() + READ_BUDGET_S
            session = ApduSession(card, deadline=budget, name="card")
            psam_sessions: list[ApduSession] = []

            def open_psam() -> ApduSession:
                if not psam_sessions:
                    psam_card = stack.enter_context(self._psam_connection(ctx))
                    psam_sessions.append(ApduSession(psam_card, deadline=budget, name="PSAM"))
                return psam_sessions[0]

            data = self._profile.read(session, open_psam if self._psam_reader else None)
            apdus = session.apdus + sum(p.apdus for p in psam_sessions)
            return CardRead(
                reader=name,
                atr=card.atr.hex().upper(),
                read_at=_dt.datetime.now(_dt.UTC),
                card=data,
                apdus=apdus,
            )

    @staticmethod
    def _connect(ctx: PcscContext, name: str, atr: bytes) -> PcscCard:
        # Right after insertion pcscd may still be powering the card up
        # (SCARD_W_UNPOWERED_CARD); a real reader needs the same patience.
        give_up = time.monotonic() + CONNECT_GRACE_S
        while True:
            try:
                return ctx.connect(name, atr=atr or None)
            except CardUnreadable:
                if time.monotonic() >= give_up:
                    raise
            time.sleep(0.02)

    @contextmanager
    def _psam_connection(self, ctx: PcscContext) -> Iterator[Any]:
        lock = self._lock(self._psam_reader)
        if not lock.acquire(timeout=PSAM_WAIT_S):
            raise ReaderBusy("the PSAM is busy with another read")
        try:
            try:
                psam = ctx.connect(self._psam_reader)
            except (NoCard, NoReader) as exc:
                if isinstance(exc, PcscdUnavailable):
                    raise
                log.warning("PSAM reader %r: %s", self._psam_reader, exc.detail)
                raise CardUnreadable("PSAM required", sw=0x6982) from exc
            with psam:
                yield psam
        finally:
            lock.release()
