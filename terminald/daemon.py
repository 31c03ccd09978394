"""The daemon's parts and the order they start and stop in.

`Daemon` owns every registry (readers, printers, uploader, events, metrics):
nothing is a module global. It is the composition root: it builds every
part and wires the observers (metrics) to its hooks; no part reaches back
into it. Start-up: spool first (nothing is served before the
system of record is open and its tail verified), then events, uploader,
drivers, and the mirror (when `mirror.dsn` is set). Shutdown is the reverse: the
uploader stops between batches, then the mirror, the drivers close, the spool
closes last.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from drivers.printers import Printer, PrinterConfig
from spool import Spool
from terminald import __version__
from terminald.appender import LoopAppender
from terminald.cardreads import CardReads
from terminald.cardservice import ReportingCardService
from terminald.config import Config
from terminald.events import EventBus
from terminald.metrics import Metrics
from terminald.receipts.jobs import PrintQueue
from terminald.reentry import ReentryBook
from terminald.retention import Retention
from terminald.security import ApiTokens, make_private
from terminald.transactions import Recorder
from terminald.upload.uploader import Uploader
from terminald.upstream import nhsa

if TYPE_CHECKING:  # psycopg is imported only when a mirror is configured
    from terminald.mirror.heartbeat import Heartbeat
    from terminald.mirror.service import MirrorService

log = logging.getLogger("terminald")
OVERDUE_EVERY_S = 300.0  # how fresh the fleet row's overdue re-entries count is (heartbeats: every 30 s)


class Daemon:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.instance_id = str(uuid.uuid4())
        self.started_at = datetime.now().astimezone().isoformat(timespec="seconds")
        self.version = __version__
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        cfg.spool_path.parent.mkdir(parents=True, exist_ok=True)
        make_private(cfg.spool_path)  # 0600: an older version left it readable by group terminald
        self.tokens = ApiTokens.load(cfg.token_path, cfg.status_token_path, cfg.api.group)
        self.token = self.tokens  # what app.build hands to AccessControl: the live token files
        self.card_reads = CardReads()
        # Outage sales waiting for their patient (nhsa.reentry = "patient_present"); inert otherwise.
        # Who a record is about and what stands at central are the nhsa package's to say; the
        # releases last as long as the card read behind them, on the reads' clock.
        self.reentry = ReentryBook(cfg, person_of=nhsa.person_key,
                                   standing_records=lambda: nhsa.standing_records(cfg.spool_path),
                                   clock=self.card_reads.clock)
        self.spool: Spool | None = None
        self.mirror: MirrorService | None = None  # built in start() when mirror.dsn is set
        self._overdue_cache: tuple[float, date, int] | None = None  # (monotonic, day, count) for heartbeats
        self.events = EventBus(cfg.spool_path, ZoneInfo(cfg.terminal.timezone))
        self._on_commit_hooks: list[Callable[[float], None]] = []
        self._upload_error_hooks: list[Callable[[str], None]] = []
        self._card_read_hooks: list[Callable[[str], None]] = []
        self._event_hooks: list[Callable[[str, dict[str, Any]], None]] = []
        # Metrics observe through the hooks; the rest they read from the parts at scrape time.
        self.metrics = Metrics(self)
        self.add_commit_hook(self.metrics.observe_commit)
        self.add_upload_error_hook(self.metrics.observe_upload_error)
        self.add_card_read_hook(self.metrics.observe_card_read)
        self.add_event_hook(self.metrics.observe_event)
        self.add_event_hook(self.reentry.observe_event)  # a decided record waits for nobody
        # Set when the server starts shutting down: endless answers (the event stream) end then,
        # rather than holding the shutdown until uvicorn's graceful timeout cancels them.
        self.stopping = asyncio.Event()

    # --- lifecycle -------------------------------------------------------
    async def start(self) -> None:
        cfg = self.cfg
        self.spool = Spool.open(cfg.spool_path, cfg.terminal.id, on_commit=self._on_commit)
        self.events.open()
        # Before the uploader: its first question (`eligible`) must already know every waiting sale.
        await asyncio.to_thread(self.reentry.load, self.spool)
        self.uploader = Uploader(self.spool, cfg, on_event=self.publish, on_error=self._on_upload_error,
                                 eligible=self.reentry.eligible, awaiting=self.reentry.awaiting_count)
        self.cards = ReportingCardService(profile=cfg.card.profile, readers=cfg.card.readers,
                                          psam_reader=cfg.card.psam_reader, on_event=self.publish,
                                          on_read=self._on_card_read)
        self.printers = {
            p.name: Printer(PrinterConfig(name=p.name, uri=p.uri, profile=p.profile, chinese=p.chinese,
                                          columns=p.columns, language=p.language))
            for p in cfg.printer_entries
        }
        self.print_queue = PrintQueue(cfg.spool_path, self.printers, on_event=self.publish)
        self.recorder = Recorder(cfg, self.spool, self.uploader, self.card_reads, self.publish,
                                 LoopAppender(self.spool, asyncio.get_running_loop()), self.reentry)
        await self.uploader.start()
        self.cards.start()
        self.print_queue.start()
        self.retention = Retention(self.spool, cfg.spool_path, cfg.spool.retention_days)
        self.retention.start()  # first run a few seconds from now, then daily: never delays readiness
        if cfg.mirror.dsn:
            try:
                self._start_mirror()
            except Exception:  # the mirror never stands in a sale's way, not even by a bug at start
                log.exception("the mirror could not start; sales go on without it")
                self.mirror = None
        log.info("terminald %s started: terminal %s, spool %s, upstream %s", self.version, cfg.terminal.id,
                 cfg.spool_path, cfg.upstream.url or "(none)")

    def _start_mirror(self) -> None:
        """The copier to PostgreSQL (docs/mirror.md), in a process of its own: observers hint it
        on each commit and status change; nothing on the sale path waits for it."""
        from terminald.mirror.service import MirrorService

        assert self.spool is not None
        self.mirror = MirrorService(self.spool, self.cfg.mirror, publish=self.publish, heartbeat=self._heartbeat,
                                    tz=self.cfg.terminal.timezone)
        self.mirror.start()  # first: a service that failed to start gets no hooks
        self.add_commit_hook(self.mirror.observe_commit)
        self.add_event_hook(self.mirror.observe_event)

    def _heartbeat(self) -> Heartbeat | None:
        """The fleet row's values (terminald_terminals), on the mirror's watch thread when its
        process asks (every heartbeat): the link's state and alarms from memory, the backlog from
        one spool read."""
        from terminald.mirror.heartbeat import Heartbeat
        from terminald.mirror.service import overdue_reentries
        from terminald.upload.calendar import WorkCalendar

        uploader, spool, mirror = getattr(self, "uploader", None), self.spool, self.mirror
        if uploader is None or spool is None or mirror is None:
            return None
        link = uploader.link
        alarms = [dict(alarm) for alarm in list(link.alarms)]
        stats = spool.stats()
        overdue = 0
        if any(alarm.get("code") == "reentry_deadline" for alarm in alarms):
            tz = ZoneInfo(self.cfg.terminal.timezone)
            today, now = datetime.now(tz).date(), time.monotonic()
            cached = self._overdue_cache
            # It reads every pending record (thousands after a long outage), holding the
            # interpreter lock from the sales meanwhile: at most every OVERDUE_EVERY_S, not at
            # each heartbeat. A new day counts at once.
            if cached is not None and cached[1] == today and now - cached[0] < OVERDUE_EVERY_S:
                overdue = cached[2]
            else:
                overdue = overdue_reentries(spool, self.cfg.offline.deadline_working_days, tz, today,
                                            WorkCalendar(self.cfg.offline.holidays, self.cfg.offline.workdays))
                self._overdue_cache = (now, today, overdue)
        # The copier adds its own alarms; the lag alarm is the daemon's view of them.
        alarms += [alarm for alarm in mirror.alarms() if alarm["code"] == "mirror_lag"]
        return Heartbeat(mode=link.state, pending=stats.pending, pending_amount_fen=stats.pending_amount_fen,
                         oldest_pending_at=stats.oldest_pending_at, outage_since=link.outage_since,
                         overdue_reentries=overdue, version=self.version, alarms=alarms)

    async def stop(self) -> None:
        steps: list[tuple[str, Callable[[], object]]] = [
            ("print queue", self._stop_print_queue), ("card readers", self._stop_cards),
            ("printers", self._close_printers), ("events", self.events.close), ("spool", self._close_spool)]
        if hasattr(self, "retention"):
            await self.retention.stop()  # before the spool closes; never raises
        try:
            await self._stop_uploader()
        except Exception:
            log.exception("error while stopping the uploader")
        try:
            if self.mirror is not None:  # after the uploader: central's last outcomes are committed
                await self.mirror.stop()
        except Exception:
            log.exception("error while stopping the mirror")
        for name, step in steps:
            try:
                step()
            except Exception:
                log.exception("error while stopping the %s", name)

    async def _stop_uploader(self) -> None:
        if hasattr(self, "uploader"):
            await self.uploader.stop()

    def _stop_print_queue(self) -> None:
        if hasattr(self, "print_queue"):
            self.print_queue.stop()

    def _stop_cards(self) -> None:
        if hasattr(self, "cards"):
            self.cards.stop()

    def _close_printers(self) -> None:
        for printer in getattr(self, "printers", {}).values():
            printer.close()

    def _close_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()

    # --- shared hooks ----------------------------------------------------
    def publish(self, name: str, data: dict[str, Any] | None = None) -> None:
        """Every part publishes through here (thread-safe): the bus, then the event hooks."""
        self.events.publish(name, data)
        _run(self._event_hooks, "event", name, data or {})

    def add_commit_hook(self, hook: Callable[[float], None]) -> None:
        """`hook(seconds)` after each durable spool commit (the fsync latency histogram)."""
        self._on_commit_hooks.append(hook)

    def add_upload_error_hook(self, hook: Callable[[str], None]) -> None:
        """`hook(cause)` after each failed call to central (errors by kind)."""
        self._upload_error_hooks.append(hook)

    def add_card_read_hook(self, hook: Callable[[str], None]) -> None:
        """`hook(outcome)` after each card read: `ok` or the error's code (reads by outcome)."""
        self._card_read_hooks.append(hook)

    def add_event_hook(self, hook: Callable[[str, dict[str, Any]], None]) -> None:
        """`hook(name, data)` after each event published (events, uploads, outages)."""
        self._event_hooks.append(hook)

    def _on_commit(self, seconds: float) -> None:
        _run(self._on_commit_hooks, "commit", seconds)

    def _on_upload_error(self, cause: str) -> None:
        _run(self._upload_error_hooks, "upload error", cause)

    def _on_card_read(self, outcome: str) -> None:
        _run(self._card_read_hooks, "card read", outcome)


def _run(hooks: Sequence[Callable[..., None]], what: str, *args: Any) -> None:
    """Hooks run on the caller's thread (spool writer, uploader, a reader's, the loop): they
    must be quick, and one that fails is logged, never raised into the part that called."""
    for hook in hooks:
        try:
            hook(*args)
        except Exception:
            log.exception("%s hook failed", what)
