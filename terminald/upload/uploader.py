"""The uploader: the spool's pending records to central, in order, exactly once.

It is one piece whatever central speaks; what it sends, and how, is an adapter:

    here (the uploader)              the loop, its order and pacing: one call in flight, retries
                                     with backoff, the link state and its outages, planned
                                     downtime windows, central's notices kept (notices.py),
                                     alarms, halts and staff's resume, the POS's waiters
    the adapter (terminald/upstream) what goes on the wire: chosen by `upstream.protocol` through
                                     `adapter_for` (terminald/upstream/adapters.py); v1 sends
                                     batches and checks central's cursor (upstream/v1/adapter.py)

The uploader is the adapter's `UpstreamHost`: the adapter reads the spool (`spool`, `cfg`,
`state`, `eligible`), says when central answered (`reached`) and hands central's outcomes to
`apply`, which alone writes them (`spool.apply_outcomes`), announces them and wakes the
waiters. The disk is the queue; memory holds nothing that a restart would miss. Any ambiguous
failure is settled by sending the same records again: central answers with the stored outcome.

The adapter raises only the errors of errors.py, handled here alike for every protocol:
`Transient` (transport, 408/425/429/5xx, unparseable answers) retries the same call with
exponential backoff and full jitter (tenacity), capped at `retry_cap_s`, honouring
Retry-After, and the link goes offline on the first one; `Refused` pauses; `Halt` (v1:
central's cursor or chain disagrees with ours) stops uploading, with an alarm, until staff
resume (`resume`, from `terminald upstream resume` or `POST /v1/upstream/resume`): nothing is
lost, nothing rewritten, and the adapter's `sync` runs again first. Inside a planned downtime
window nothing is sent but one read of the notices every `notices_every_s`, so that central can
withdraw a window it announced.

Nothing here waits for SQLite on the event loop. What a sale asks (`offline_reason`,
`can_settle_now`, `is_frozen`, `downtime_now`) and the deadline check are answered
from memory: the spool's `pending_summary()` (kept by its writer thread) and the
upload state (read at start, see state.py). Reads of records run in threads; the
upload state's and the outage log's writes are queued to the spool's writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from spool import Outcome, Record, Spool, SpoolError
from terminald.config import Config
from terminald.errors import ConfigError, ConflictError
from terminald.upload.calendar import WorkCalendar, now_iso, parse_time
from terminald.upload.errors import Halt, Refused, Transient, UpstreamError
from terminald.upload.eventdata import backlog_event, overdue_message, transaction_event
from terminald.upload.link import Link, LinkTracker
from terminald.upload.notices import NoticeBook, Notices
from terminald.upload.results import RecordResult
from terminald.upload.retry import Backoff
from terminald.upload.state import UploadState
from terminald.upstream.adapters import Adapter, adapter_for

__all__ = ["Uploader"]

log = logging.getLogger("terminald.upload")
T = TypeVar("T")
EventFn = Callable[[str, dict[str, Any]], None]


class _Stopping(Exception):
    """stop() was called while waiting."""


class _Downtime(Exception):
    """A planned downtime window began: attempt nothing."""


class Uploader:
    """Implements `UpstreamHost` (terminald/upstream/adapters.py) for the adapter it drives."""

    def __init__(
        self,
        spool: Spool,
        cfg: Config,
        *,
        on_event: EventFn,
        on_error: Callable[[str], None] | None = None,
        retry_base_s: float = 0.5,
        retry_cap_s: float = 60.0,
        idle_probe_s: float = 15.0,
        notices_every_s: float = 300.0,
        clock: Callable[[], datetime] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        eligible: Callable[[Record], bool] | None = None,
        awaiting: Callable[[], int] | None = None,
    ) -> None:
        self.spool = spool
        self.cfg = cfg
        self._on_event = on_event
        self._on_error = on_error
        self.tz = ZoneInfo(cfg.terminal.timezone)
        self._calendar = WorkCalendar(cfg.offline.holidays, cfg.offline.workdays)
        self._clock = clock or (lambda: datetime.now(self.tz))
        self._base, self._cap = retry_base_s, retry_cap_s
        self._idle_probe_s, self._notices_every_s = idle_probe_s, notices_every_s
        self._transport = transport
        self._eligible = eligible
        self._awaiting = awaiting  # how many pending records `eligible` holds back (their patient)
        self.state = UploadState(spool)
        self._tracker = LinkTracker(self.state, self.tz, self.emit)
        self._notices = NoticeBook(self.state, cfg.downtime)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._applied = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._adapter: Adapter | None = None
        self._notices_due = 0.0
        self._backlog_due = 0.0
        self._backlog_owed = False  # a `spool.backlog` summary was held back by its once-a-second pace
        self._kick = asyncio.Event()  # staff resumed, or cleared a window: look again now
        self._checked = asyncio.Event()  # replaced after each check of the cursor (ok, or halted)
        self._read_through = 0  # the spool's tail when the last backlog read began
        self._oldest: tuple[int | None, Record | None] = (None, None)  # first pending seq, its record

    # -- the daemon's interface -------------------------------------------------------------------

    @property
    def link(self) -> Link:
        return self._tracker.link

    async def start(self) -> None:
        self._stop.clear()
        self._tasks = [
            asyncio.create_task(self._run(), name="uploader"),
            asyncio.create_task(self._watch(), name="uploader-watch"),
        ]

    async def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._tasks:
            # A batch in flight gets its answer (bounded by the client timeout); then the loop ends.
            _, late = await asyncio.wait(self._tasks, timeout=self.cfg.upstream.timeout_s + 2)
            for task in late:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._tasks = []
        if self._adapter is not None:
            await self._adapter.aclose()
            self._adapter = None
        self.state.close()

    def wake(self) -> None:
        self._wake.set()

    async def wait_final(self, record_id: str, timeout_s: float) -> Record | None:
        deadline = time.monotonic() + timeout_s
        self.wake()
        while True:
            applied = self._applied
            record = await asyncio.to_thread(self.spool.get, record_id)
            if record is None:
                return None
            if record.status != "pending":
                return record
            if not self.can_settle_now():
                return None  # the call to central just failed: nobody will answer within the wait
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(applied.wait(), remaining)

    def _wake_waiters(self) -> None:
        """Outcomes were written, or central could not be reached: every `wait_final` looks again."""
        previous, self._applied = self._applied, asyncio.Event()
        previous.set()

    def offline_reason(self) -> str | None:
        if self.downtime_now() is not None:
            return "planned_downtime"
        if self.link.state != "online":
            return "upstream_unreachable"
        # Memory, not a query: asked on every sale. Records waiting for their patient are no
        # backlog ahead of this sale: nothing is sent for them until the patient is back.
        held = self._awaiting() if self._awaiting is not None else 0
        if self.spool.pending_summary().pending > held:
            return "backlog"
        return None

    def can_settle_now(self) -> bool:
        """Could central decide a sale within the POS's wait? Not while the link is down (and
        the uploader backs off), halted, inside a planned window, or with no upstream at all:
        then the POS is answered "pending" as soon as the sale is committed."""
        link = self.link
        if not self.cfg.upstream.url or link.halted or self.downtime_now() is not None:
            return False
        never_tried = link.last_ok_at is None and link.last_error is None  # the first sync is under way
        return link.state == "online" or never_tried

    def is_frozen(self, card_number: str) -> bool:
        return self._notices.is_frozen(card_number)

    def downtime_now(self) -> dict[str, Any] | None:
        return self._notices.downtime_at(self._clock())

    async def resume(self, *, operator: str, reason: str, clear_downtime: bool = False,
                     restored_checked: bool = False) -> dict[str, Any]:
        """Staff clear a halt, and with `clear_downtime` the window from central in force now.

        Logged at WARNING with who and why, and published as `upstream.resumed`. After a halt
        the loop checks central's cursor again before sending anything, so a cause not fixed
        halts again with the same alarm; this waits a few seconds at most for that check and
        returns the link as it then is, with `still_held`: the codes of what the adapter still
        holds until staff resume with `restored_checked` (nhsa: the pending records of a spool
        restored from the mirror, released only once staff say they checked them with the
        platform). ConflictError `not_halted` when there is nothing to do (naming what is still
        held, and how to release it, when that is why).
        """
        cleared = self._notices.clear_central(self._clock()) if clear_downtime else []
        halted = self.link.halted
        # What the adapter holds back for staff without a halt (nhsa: a person after a refused
        # reversal): cleared here too, and named with the halt's codes.
        adapter = self._adapter
        held = adapter.resume(restored_checked=restored_checked) if adapter is not None else []
        still = adapter.still_held() if adapter is not None else []
        if not halted and not cleared and not held:
            extra = " and no downtime window from central is in force" if clear_downtime else ""
            if still:
                raise ConflictError(
                    f"uploading is not halted{extra}, and {', '.join(still)} stays held: a resume without "
                    "restored_checked does not release the pending records of a spool restored from the mirror. "
                    "Once they are checked with central (the alarm says how), resume with \"restored_checked\": "
                    "true (terminald upstream resume --restored-checked --reason '…')",
                    code="not_halted", still_held=still,
                )
            if restored_checked:
                extra += ", and no records restored from the mirror are held"
            raise ConflictError(f"uploading is not halted{extra}: nothing to resume", code="not_halted")
        checked = self._checked
        codes = (self._tracker.resume() if halted else []) + held
        for window in cleared:
            log.warning(
                "downtime window from central %s to %s (%s) cleared by %s: %s",
                window["start"], window["end"], window["reason"], operator, reason,
            )
        if codes:
            log.warning("uploading resumed by %s after %s: %s", operator, ", ".join(codes), reason)
        if still:
            log.warning("resumed by %s without restored_checked: %s still held", operator, ", ".join(still))
        self.emit(
            "upstream.resumed",
            {"at": now_iso(self.tz), "operator": operator, "reason": reason, "halt": codes,
             "cleared_downtime": cleared},
        )
        self._kick.set()
        self._wake.set()
        if halted:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(checked.wait(), min(self.cfg.upstream.timeout_s + 1.0, 10.0))
        return {**self.link.as_dict(), "still_held": still}

    # -- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        if not self.cfg.upstream.url:
            self._tracker.no_upstream()
            await self._stop.wait()
            return
        while self._adapter is None:
            try:
                self._adapter = adapter_for(self.cfg.upstream.protocol, self, transport=self._transport)
            except ConfigError as exc:
                self._halt("upstream_config", exc.detail)
                if not await self._until_resumed():
                    return
        while not self._stop.is_set():
            try:
                await self._loop()
                break
            except Exception as exc:
                # A bug must not silently end uploading: say so, and start the loop again from the spool.
                log.exception("upload loop failed; restarting it")
                self._tracker.alarm("uploader_error", f"the upload loop failed ({type(exc).__name__})")
                await self._pause(min(self._cap, 5.0), wakeable=False)
            finally:
                await self._settle_apply()

    async def _settle_apply(self) -> None:
        try:
            if self._adapter is not None:
                await self._adapter.flush()
        except SpoolError as exc:
            log.error("central's last outcomes could not be written (%s); they are re-sent later", exc.code)

    async def _loop(self) -> None:
        synced = False
        while not self._stop.is_set():
            window = self.downtime_now()
            if window is not None:
                self._tracker.planned(window)
                self._wake_waiters()
                if time.monotonic() >= self._notices_due:
                    # Central may have withdrawn or corrected the window: read, then look again.
                    await self._notices_in_window()
                    continue
                end = parse_time(window["end"])
                left = (end - self._clock()).total_seconds() if end else 30.0
                due = self._notices_due - time.monotonic()
                await self._pause(min(max(left, 0.05), max(due, 0.05), 30.0), wakeable=False, kick=True)
                continue
            try:
                if not synced:
                    await self._retrying(self._sync)
                    synced = True
                elif time.monotonic() >= self._notices_due:
                    await self._retrying(self._sync_notices)
                if await self._retrying(self._upload) == 0:
                    await self._idle()
            except (_Stopping, _Downtime):
                continue
            except Halt as exc:
                self._halt(exc.code, exc.detail)
                if not await self._until_resumed():
                    return
                synced = False  # the adapter syncs again (v1: checks the cursor) before anything is sent
            except Refused as exc:
                self._failed(exc)
                await self._pause(self._cap, wakeable=False)
            except SpoolError as exc:
                log.error("spool error while uploading (%s); retrying later", exc.code)
                self._tracker.alarm(
                    "spool_error", f"the spool failed while recording central's answers ({exc.code})"
                )
                await self._pause(min(self._cap, 5.0), wakeable=False)

    async def _idle(self) -> None:
        """Nothing to send: wait for a new record; probe central now and then."""
        if self._backlog_owed:
            await self._emit_backlog()
        await self._check_deadline()
        # Woken while the round ran (a release appends nothing), or a record appended since the
        # backlog was read: go and look again now.
        if self._wake.is_set() or self.spool.pending_summary().last_seq > self._read_through:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), self._idle_probe_s)
            return
        if not self._stop.is_set():
            await self._retrying(self._probe)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(Transient),
            wait=Backoff(self._base, self._cap),
            sleep=self._backoff_sleep,
            before_sleep=self._note_failure,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if self._stop.is_set():
                    raise _Stopping
                if self.downtime_now() is not None:
                    raise _Downtime
                return await call()
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def _backoff_sleep(self, seconds: float) -> None:
        await self._pause(seconds, wakeable=False)
        if self._stop.is_set():
            raise _Stopping

    def _note_failure(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, UpstreamError):
            self._failed(exc)

    def _failed(self, exc: UpstreamError) -> None:
        """A call to central failed: the link state and whoever counts errors (metrics) hear of it."""
        self._tracker.failed(exc.cause, exc.detail)
        self._wake_waiters()
        if self._on_error is not None:
            self._on_error(exc.cause)

    async def _pause(self, seconds: float, *, wakeable: bool, kick: bool = False) -> None:
        waiters = [asyncio.ensure_future(self._stop.wait())]
        if wakeable:
            waiters.append(asyncio.ensure_future(self._wake.wait()))
        if kick:
            waiters.append(asyncio.ensure_future(self._kick.wait()))
        _, _pending = await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if kick:
            self._kick.clear()

    # -- halts ------------------------------------------------------------------------------------

    def _halt(self, code: str, detail: str) -> None:
        self._tracker.halt(code, detail)
        self._wake_waiters()
        self._mark_checked()

    async def _until_resumed(self) -> bool:
        """Halted: wait for staff to resume (True) or for stop() (False)."""
        while self.link.halted and not self._stop.is_set():
            await self._pause(3600.0, wakeable=False, kick=True)
        return not self._stop.is_set()

    def _mark_checked(self) -> None:
        previous, self._checked = self._checked, asyncio.Event()
        previous.set()

    def _api(self) -> Adapter:
        assert self._adapter is not None, "the loop creates the adapter before any call"
        return self._adapter

    # -- calls ------------------------------------------------------------------------------------

    async def _probe(self) -> None:
        await self._api().probe()

    async def _sync(self) -> None:
        notices = await self._api().sync()
        self._mark_checked()
        self._take_notices(notices)

    async def _sync_notices(self) -> None:
        notices = await self._api().notices(self._notices.frozen_version or None)
        if notices is not None:
            self.reached()
        self._take_notices(notices)

    async def _notices_in_window(self) -> None:
        """Inside a window: one read of the notices with its own timeout and no retry; the link
        state stays `planned_downtime` (central is expected to be away)."""
        self._notices_due = time.monotonic() + self._notices_every_s
        try:
            notices = await asyncio.wait_for(
                self._api().notices(self._notices.frozen_version or None), self.cfg.upstream.timeout_s + 1.0
            )
        except (UpstreamError, TimeoutError) as exc:
            log.debug("notices not read inside the downtime window: %s", exc)
            return
        if notices is not None:
            self._tracker.reached()
        self._take_notices(notices)

    def _take_notices(self, notices: Notices | None) -> None:
        """Keep central's notices (None: the protocol has none; the windows from the config stay)."""
        self._notices_due = time.monotonic() + self._notices_every_s
        if notices is None:
            return
        ignored = self._notices.apply(notices, self._clock())
        suspicious = [item for item in ignored if item.suspicious]
        if not suspicious:
            self._tracker.clear_alarm("downtime_notice_ignored")
            return
        more = f" (and {len(suspicious) - 1} more)" if len(suspicious) > 1 else ""
        self._tracker.alarm(
            "downtime_notice_ignored",
            f"a downtime window announced by central is ignored: {suspicious[0].describe()}{more}",
        )

    async def _upload(self) -> int:
        """The adapter sends the next pending records; how many were decided (0: none left)."""
        # The tail before the adapter reads the backlog: `_idle` goes on at once past it. A wake-up
        # from now on (a new record, a record released for its patient: nothing appended) is
        # kept for `_idle`, which then starts another round at once.
        self._wake.clear()
        self._read_through = self.spool.pending_summary().last_seq
        return await self._api().upload()

    # -- the adapter's host (UpstreamHost) --------------------------------------------------------

    def reached(self) -> None:
        self._tracker.ok()

    def alarm(self, code: str, message: str) -> bool:
        return self._tracker.alarm(code, message)

    def clear_alarm(self, code: str) -> None:
        self._tracker.clear_alarm(code)

    def eligible(self, record: Record) -> bool:
        return self._eligible is None or self._eligible(record)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def apply(self, results: list[RecordResult]) -> None:
        if not results:
            return
        # Not acknowledged here: what central acknowledges is the adapter's to say (v1 acks its
        # batches' seq prefix; nhsa decides out of seq order and acks nothing).
        outcomes = [Outcome(r.seq, r.final, dict(r.settlement or r.reason or {})) for r in results]
        updated = await asyncio.to_thread(self.spool.apply_outcomes, outcomes)
        decided = {r.seq for r in results}
        for record in updated:
            if record.seq in decided and record.status in ("settled", "rejected"):
                self.emit(f"transaction.{record.status}", transaction_event(record))
        self._wake_waiters()
        # The backlog event is a summary: at most once a second while draining, and at the end:
        # when nothing is left to send (the writer's summary, no query), else when the loop next
        # finds nothing to send (`_idle`). Not on every short batch: nhsa applies one record at
        # a time, and a summary per record was a query, a thread and a stored event each.
        held = self._awaiting() if self._awaiting is not None else 0
        if self.spool.pending_summary().pending <= held or time.monotonic() >= self._backlog_due:
            await self._emit_backlog()
        else:
            self._backlog_owed = True

    async def _emit_backlog(self) -> None:
        self._backlog_due = time.monotonic() + 1.0
        self._backlog_owed = False
        self.emit("spool.backlog", backlog_event(await asyncio.to_thread(self.spool.stats), self.tz))

    # -- alarms -----------------------------------------------------------------------------------

    async def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                await self._check_deadline()
            except SpoolError as exc:
                log.error("cannot check the re-entry deadline (%s)", exc.code)
            except Exception:
                log.exception("re-entry deadline check failed")
            await self._pause(30.0, wakeable=False)

    async def _check_deadline(self) -> None:
        # The first pending seq is known without a query; its record is read (in a thread) only
        # when that seq changes: once per batch while draining, never per sale.
        seq = self.spool.pending_summary().oldest_pending_seq
        known, first = self._oldest
        if seq != known:
            first = await asyncio.to_thread(self.spool.get_seq, seq) if seq is not None else None
            self._oldest = (seq, first)
        limit = self.cfg.offline.deadline_working_days
        message = overdue_message(first, self._clock(), self.tz, limit, self._calendar)
        if message is None:
            self._tracker.clear_alarm("reentry_deadline")
        elif self._tracker.alarm("reentry_deadline", message):
            log.error(message)
            alarm = {"code": "reentry_deadline", "message": message}
            self.emit("spool.backlog", {"at": now_iso(self.tz), "alarm": alarm})

    def emit(self, name: str, data: dict[str, Any]) -> None:
        try:
            self._on_event(name, data)
        except Exception:
            log.exception("event handler failed for %s", name)
