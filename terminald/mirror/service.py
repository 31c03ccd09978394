"""``MirrorService``: the copier as a part of the daemon (config ``[mirror]``, docs/mirror.md).

The daemon (the composition root) builds one when ``mirror.dsn`` is set, subscribes
``observe_commit``/``observe_event`` to its hooks (each only wakes the copier, or asks for the
heartbeat when the mode changed: a hint, never a wait) and reads ``status_dict()``/``status()``
for /v1/status and the metrics. Nothing on the sale path awaits the mirror: the copier runs on an
event loop and thread of its own, so a slow or absent PostgreSQL, a long batch or a stuck
connection shows only as lag.

The lag alarm (``mirror_lag``): records waiting longer than ``lag_alarm_s`` to be mirrored. It is
checked every few seconds and at each /v1/status; when it starts and when it ends the event
``mirror.lag`` is published, and the copier's own alarms (``mirror_fork``,
``mirror_schema_missing``, ``mirror_rejected``) come and go as ``mirror.alarm`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import date, tzinfo
from typing import TYPE_CHECKING, Any

from spool import Spool, SpoolError
from spool.ids import now_rfc3339
from terminald.mirror.connect import read_password
from terminald.mirror.copier import MirrorCopier, MirrorStatus
from terminald.mirror.errors import MirrorError
from terminald.mirror.heartbeat import Heartbeat
from terminald.timefmt import local_iso

if TYPE_CHECKING:
    from terminald.config import MirrorConfig
    from terminald.upload.calendar import WorkCalendar

__all__ = ["LAG_ALARM", "MirrorService", "overdue_reentries"]

log = logging.getLogger("terminald.mirror")

LAG_ALARM = "mirror_lag"
# Events that change a mirrored record's status: the copier pushes them without waiting for poll_s.
_STATUS_EVENTS = frozenset({"transaction.settled", "transaction.rejected", "transaction.resolved",
                            "transaction.refunded"})
# Events that change what the fleet view shows of this terminal: the heartbeat goes at once.
_MODE_EVENTS = frozenset({"upstream.online", "upstream.offline", "upstream.resumed"})
_STOP_TIMEOUT_S = 10.0


class MirrorService:
    """One terminal's copier, run in a thread, with the lag alarm and its events."""

    def __init__(self, spool: Spool, cfg: MirrorConfig, *, publish: Callable[[str, dict[str, Any]], None],
                 heartbeat: Callable[[], Heartbeat | None] | None = None, tz: str = "Asia/Shanghai",
                 heartbeat_s: float = 30.0, min_gap_s: float = 0.05, max_gap_s: float = 0.5) -> None:
        self.cfg = cfg
        self.tz = tz
        self.lag_alarm_s = cfg.lag_alarm_s
        self._emit = publish
        self._config_error: str | None = None
        password = None
        if cfg.password_file:
            try:
                password = read_password(cfg.password_file)
            except MirrorError as exc:
                # Sales go on without the mirror; the copier's refused logins show the rest.
                self._config_error = exc.detail
                log.error("%s", exc.detail)
        self.copier = MirrorCopier(spool, cfg.dsn, password=password, heartbeat=heartbeat, heartbeat_s=heartbeat_s,
                                   backoff_cap_s=cfg.retry_max_s, backoff_base_s=min(0.5, cfg.retry_max_s),
                                   min_gap_s=min_gap_s, max_gap_s=max_gap_s)
        self._lock = threading.Lock()  # check() runs on the API's loop and on the mirror's thread
        self._lag_since: str | None = None
        self._raised: dict[str, dict[str, Any]] = {}  # the copier's alarms already published
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.Task[None] | None = None
        self._started = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the copier's thread; returns at once (the first pass connects in the background)."""
        self._thread = threading.Thread(target=self._run_thread, name="mirror", daemon=True)
        self._thread.start()
        self._started.wait(5)

    def _run_thread(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception:  # the copier keeps its errors as state; this is a bug, logged, never raised
            log.exception("the mirror's thread ended")

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._main = asyncio.current_task()
        self._started.set()
        copier = asyncio.create_task(self.copier.run(), name="mirror copier")
        try:
            while not copier.done():
                with contextlib.suppress(Exception):
                    self.check()
                # Often enough that a small lag_alarm_s is seen on time, rarely enough to cost nothing.
                await asyncio.wait({copier}, timeout=min(max(self.lag_alarm_s / 4, 0.05), 5.0))
        finally:
            copier.cancel()
            await asyncio.gather(copier, return_exceptions=True)

    async def stop(self) -> None:
        """Stop the copier between two steps (a batch in flight is rolled back or done: the head
        says which next time) and wait for its thread, at most a few seconds."""
        loop, main, thread = self._loop, self._main, self._thread
        if loop is not None and main is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(main.cancel)
        if thread is not None:
            await asyncio.to_thread(thread.join, _STOP_TIMEOUT_S)
            if thread.is_alive():
                log.warning("the mirror did not stop within %.0f s; leaving it to the process exit", _STOP_TIMEOUT_S)

    # -- observers (the daemon's hooks; any thread, quick, never raise) ---------------------------
    def observe_commit(self, seconds: float) -> None:
        """A durable spool commit: something may be there to mirror."""
        self.copier.wake()

    def observe_event(self, name: str, data: dict[str, Any]) -> None:
        """A status change published: push it now rather than at the next poll."""
        if name in _STATUS_EVENTS:
            self.copier.wake()
        elif name in _MODE_EVENTS:  # the fleet view shows the new mode now, not at the next heartbeat
            self.copier.beat_soon()

    # -- state -------------------------------------------------------------------------------------
    def status(self) -> MirrorStatus:
        """The copier's state: memory only."""
        return self.copier.status()

    def check(self) -> MirrorStatus:
        """The copier's state now; publishes ``mirror.lag`` / ``mirror.alarm`` on each change."""
        status = self.copier.status()
        with self._lock:
            lagging = status.lagging(self.lag_alarm_s)
            if lagging and self._lag_since is None:
                self._lag_since = now_rfc3339()
                message = self._lag_message(status)
                log.warning("mirror: %s", message)
                self._emit("mirror.lag", {"lagging": True, "unmirrored": status.unmirrored,
                                             "lag_s": _round(status.lag_s),
                                             "oldest_unmirrored_at": local_iso(status.oldest_unmirrored_at, self.tz),
                                             "last_error": status.last_error,
                                             "alarm": {"code": LAG_ALARM, "message": message}})
            elif not lagging and self._lag_since is not None:
                self._lag_since = None
                log.info("mirror: caught up (%s records waiting)", status.unmirrored)
                self._emit("mirror.lag", {"lagging": False, "unmirrored": status.unmirrored,
                                             "lag_s": _round(status.lag_s),
                                             "oldest_unmirrored_at": local_iso(status.oldest_unmirrored_at, self.tz),
                                             "last_error": status.last_error, "alarm": None})
            current = {alarm.code: alarm.as_dict() for alarm in status.alarms}
            for code, alarm in current.items():
                if code not in self._raised:
                    self._emit("mirror.alarm", {"code": code, "message": alarm["message"], "seq": alarm["seq"],
                                                   "raised": True})
            for code, alarm in self._raised.items():
                if code not in current:
                    self._emit("mirror.alarm", {"code": code, "message": alarm["message"], "seq": alarm["seq"],
                                                   "raised": False})
            self._raised = current
        return status

    def alarms(self, status: MirrorStatus | None = None) -> list[dict[str, Any]]:
        """The mirror's alarms now, as the daemon's others are shown: ``{code, message, since}``
        (times in RFC 3339 UTC, as stored; /v1/status shows them in the terminal's zone)."""
        status = status if status is not None else self.copier.status()
        found: list[dict[str, Any]] = []
        with self._lock:
            since = self._lag_since
        if since is not None:
            found.append({"code": LAG_ALARM, "message": self._lag_message(status), "since": since})
        if self._config_error is not None:
            found.append({"code": "mirror_config", "message": self._config_error, "since": None})
        found += [{"code": a.code, "message": a.message, "since": a.since, "seq": a.seq} for a in status.alarms]
        return found

    def status_dict(self) -> dict[str, Any]:
        """The ``mirror`` section of /v1/status (docs/api.md)."""
        status = self.check()
        return {
            "enabled": True,
            "connected": status.connected,
            "server": status.server,
            "mirrored_seq": status.mirrored_seq,
            "spool_seq": status.spool_seq,
            "unmirrored": status.unmirrored,
            "lag_s": _round(status.lag_s),
            "oldest_unmirrored_at": local_iso(status.oldest_unmirrored_at, self.tz),
            "last_ok_at": local_iso(status.last_ok_at, self.tz),
            "last_error": status.last_error,
            "lag_alarm_s": self.lag_alarm_s,
            "alarms": [{**a, "since": local_iso(a["since"], self.tz)} for a in self.alarms(status)],
        }

    def _lag_message(self, status: MirrorStatus) -> str:
        waiting = "records" if status.unmirrored is None else f"{status.unmirrored} records"
        why = f" ({status.last_error})" if status.last_error else ""
        return (f"{waiting} not yet mirrored to PostgreSQL for more than {self.lag_alarm_s:g} s{why}: "
                "they exist only on this PC's disk")


def overdue_reentries(spool: Spool, limit_days: int, tz: tzinfo, today: date,
                      calendar: WorkCalendar | None = None) -> int:
    """Pending records whose re-entry deadline (``limit_days`` working days after their business
    day) has passed. Blocking: it reads every pending record, so call it from a thread, and only
    when the uploader's ``reentry_deadline`` alarm says there is at least one."""
    from terminald.upload.calendar import parse_time, working_days_between

    count, after = 0, 0
    while True:
        try:
            page = spool.backlog(after, 500)
        except SpoolError:
            return count
        for record in page:
            when = parse_time(record.business_time)
            if when is not None and working_days_between(when.astimezone(tz).date(), today, calendar) > limit_days:
                count += 1
        if len(page) < 500:
            return count
        after = page[-1].seq


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
