"""A background thread that follows readers and cards and reports insert/remove.

It polls the reader list and blocks in ``SCardGetStatusChange`` between polls
(so a new reader shows up within ``poll_s``), and it survives pcscd being
absent, stopped or restarted: the context is dropped and re-established with a
capped backoff, and the state says ``pcscd_unavailable`` meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from drivers.cards.errors import CardError
from drivers.cards.pcsc import STATE_MUTE, STATE_UNAVAILABLE, PcscContext, ReaderState

__all__ = ["ReaderMonitor", "probe", "reader_condition"]

log = logging.getLogger(__name__)

EventSink = Callable[[str, dict[str, object]], None]
_CHANGED = 0x2


def probe(accept: Callable[[str], bool]) -> tuple[str, list[ReaderState]]:
    """One look without a thread: (state, readers)."""
    try:
        with PcscContext() as ctx:
            names = [n for n in ctx.list_readers() if accept(n)]
            if not names:
                return "no_reader", []
            states = ctx.wait([(n, 0) for n in names], 0) or []
            return "ok", states
    except CardError:
        return "pcscd_unavailable", []


class ReaderMonitor:
    """Keeps a snapshot of accepted readers and emits ``card.inserted`` / ``card.removed``."""

    def __init__(
        self,
        accept: Callable[[str], bool],
        on_event: EventSink | None,
        poll_s: float = 0.5,
        establish: Callable[[], PcscContext] = PcscContext,
    ) -> None:
        self._accept = accept
        self._establish = establish
        self._on_event = on_event
        self._poll_ms = max(1, int(poll_s * 1000))
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._readers: dict[str, ReaderState] = {}
        self._state = "pcscd_unavailable"
        self._thread: threading.Thread | None = None
        self._ctx: PcscContext | None = None
        self.changed = threading.Condition(self._lock)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def snapshot(self) -> list[ReaderState]:
        with self._lock:
            return list(self._readers.values())

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="card-monitor", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        ctx = self._ctx
        if ctx is not None:
            ctx.cancel()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def _emit(self, name: str, data: dict[str, object]) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(name, data)
        except Exception:  # a broken listener must not stop card monitoring
            log.exception("card event listener failed on %s", name)

    def _publish(self, state: str, readers: dict[str, ReaderState]) -> None:
        with self._lock:
            before = self._readers
            self._state = state
            self._readers = readers
            self.changed.notify_all()
        for name, old in before.items():
            new = readers.get(name)
            if old.present and (new is None or not new.present):
                self._emit("card.removed", {"reader": name})
        for name, new in readers.items():
            prev = before.get(name)
            if new.present and (prev is None or not prev.present):
                self._emit("card.inserted", {"reader": name, "atr": new.atr.hex().upper()})

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                self._ctx = self._establish()
            except CardError:
                self._publish("pcscd_unavailable", {})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.2
            try:
                if self._stop.is_set():  # stop() came while the context was being established
                    break
                self._follow(self._ctx)
            except CardError as exc:
                log.info("card monitor lost pcscd (%s); reconnecting", exc.code)
                self._publish("pcscd_unavailable", {})
            finally:
                ctx, self._ctx = self._ctx, None
                ctx.close()

    def _follow(self, ctx: PcscContext) -> None:
        current: dict[str, ReaderState] = {}
        while not self._stop.is_set():
            names = [n for n in ctx.list_readers() if self._accept(n)]
            current = {n: current.get(n, ReaderState(n, 0, b"")) for n in names}
            if not names:
                self._publish("no_reader", {})
                self._stop.wait(self._poll_ms / 1000)
                continue
            known = [(n, s.flags & ~_CHANGED) for n, s in current.items()]
            started = time.monotonic()
            states = ctx.wait(known, self._poll_ms)
            if states is not None:
                for s in states:
                    current[s.name] = s
            self._publish("ok", dict(current))
            if states is None and time.monotonic() - started < self._poll_ms / 2000:
                # cancelled rather than timed out: stop() is on its way
                self._stop.wait(0.05)


def reader_condition(state: ReaderState) -> str:
    """ok / no_card / error for one reader's flags."""
    if state.flags & (STATE_MUTE | STATE_UNAVAILABLE):
        return "error"
    return "ok" if state.present else "no_card"
