"""``MirrorService``: the copier as a part of the daemon (config ``[mirror]``, docs/mirror.md).

The daemon (the composition root) builds one when ``mirror.dsn`` is set, subscribes
``observe_commit``/``observe_event`` to its hooks (each only sends the copier a hint, or asks
for the heartbeat when the mode changed: never a wait) and reads ``status_dict()``/``status()``
for /v1/status and the metrics. Nothing on the sale path awaits the mirror.

The copier runs in a process of its own (child.py), so that its Python work (reading the spool,
building batches) never takes the interpreter lock from a sale. Here stay only what the daemon
sees: the hints (at most one on its way: a pass takes every commit before it, and a commit that
found a hint on its way is hinted again once that one is taken), the heartbeat's values (built
on this side's thread, as they read the daemon's state), the child's last status and the lag
alarm. A child that died is started again with a growing pause; one that says nothing for
``_HUNG_KILL_S`` is killed and started again. While it is down or silent the alarm
``mirror_child`` is up, and the lag is reckoned here from the spool's tail against the head
last reported: a dead copier never looks like "all mirrored".

The lag alarm (``mirror_lag``): records waiting longer than ``lag_alarm_s`` to be mirrored. It is
checked every few seconds and at each /v1/status; when it starts and when it ends the event
``mirror.lag`` is published, and the copier's own alarms (``mirror_fork``,
``mirror_schema_missing``, ``mirror_rejected``) and ``mirror_child`` come and go as
``mirror.alarm`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING, Any

from spool import Spool, SpoolError
from spool.ids import now_rfc3339
from terminald.mirror.child import MAX_MESSAGE, decode, encode
from terminald.mirror.connect import conninfo, read_password
from terminald.mirror.copier import MirrorAlarm, MirrorStatus
from terminald.mirror.errors import MirrorError
from terminald.mirror.heartbeat import Heartbeat
from terminald.timefmt import local_iso

if TYPE_CHECKING:
    from terminald.config import MirrorConfig
    from terminald.upload.calendar import WorkCalendar

__all__ = ["CHILD_ALARM", "LAG_ALARM", "MirrorService", "overdue_reentries"]

log = logging.getLogger("terminald.mirror")

LAG_ALARM = "mirror_lag"
CHILD_ALARM = "mirror_child"
# Events that change a mirrored record's status: the copier pushes them without waiting for poll_s.
_STATUS_EVENTS = frozenset({"transaction.settled", "transaction.rejected", "transaction.resolved",
                            "transaction.refunded"})
# Events that change what the fleet view shows of this terminal: the heartbeat goes at once.
_MODE_EVENTS = frozenset({"upstream.online", "upstream.offline", "upstream.resumed"})
_STOP_GRACE_S = 5.0  # for the child to roll back or finish its step; then SIGKILL (safe: one transaction a batch)
_SILENT_S = 10.0  # the child reports every second: this long without a word, it is down (alarm)
_HUNG_KILL_S = 60.0  # and this long, it is killed and started again
_RESTART_MIN_S = 0.5
_RESTART_MAX_S = 30.0
HEAD_FILE = "mirror-head"  # beside the spool: {"terminal_id", "seq"}, the mirror's head as last seen
_STEADY_S = 60.0  # a child that ran this long was not crashing at start: the next restart is quick again


class MirrorService:
    """One terminal's copier, run in a child process, with the lag alarm and its events."""

    def __init__(self, spool: Spool, cfg: MirrorConfig, *, publish: Callable[[str, dict[str, Any]], None],
                 heartbeat: Callable[[], Heartbeat | None] | None = None, tz: str = "Asia/Shanghai",
                 heartbeat_s: float = 30.0, min_gap_s: float = 0.05, max_gap_s: float = 0.5,
                 settle_s: float = 0.02) -> None:
        self.cfg = cfg
        self.tz = tz
        self.lag_alarm_s = cfg.lag_alarm_s
        self.spool = spool
        self._emit = publish
        self._heartbeat = heartbeat
        self._config_error: str | None = None
        # A DSN libpq cannot parse: no copier is started (it could only fail), the alarm says why.
        self._dsn_unusable = False
        try:
            conninfo(cfg.dsn)
        except MirrorError as exc:
            self._config_error, self._dsn_unusable = exc.detail, True
            log.error("%s; the mirror is not started until the config is fixed", exc.detail)
        password = None
        if cfg.password_file:
            try:
                password = read_password(cfg.password_file)
            except MirrorError as exc:
                # Sales go on without the mirror; the copier's refused logins show the rest.
                self._config_error = self._config_error or exc.detail
                log.error("%s", exc.detail)
        # Sent over the socket as the first message: the password never in argv or the environment.
        self._settings: dict[str, Any] = {
            "spool_path": str(spool.path), "terminal_id": spool.terminal_id, "dsn": cfg.dsn, "password": password,
            "log_level": log.getEffectiveLevel(),
            "copier": {"heartbeat_s": heartbeat_s, "backoff_cap_s": cfg.retry_max_s,
                       "backoff_base_s": min(0.5, cfg.retry_max_s), "min_gap_s": min_gap_s, "max_gap_s": max_gap_s,
                       "settle_s": settle_s},
        }
        self._created = time.monotonic()
        self._lock = threading.Lock()  # check() runs on the API's loop and on the watch's thread
        self._lag_since: str | None = None
        self._raised: dict[str, dict[str, Any]] = {}  # the alarms already published
        # The child, replaced at each restart; messages of an earlier one (its generation) are dropped.
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._generation = 0
        self._gone = True  # the current child's socket said EOF, or there is none
        self._started_at = 0.0
        self._heard_at = 0.0  # monotonic: the child's last message (or its start)
        self._down_since: str | None = None
        self._snapshot: MirrorStatus | None = None  # the child's last status
        # The mirror's head as last seen, this run or the one before (HEAD_FILE): a daemon
        # restarted while PostgreSQL is away knows what waits, and how long, before any contact.
        self._head_file = spool.path.parent / HEAD_FILE
        self._remembered_head = self._load_head()
        self._oldest: tuple[int, str] | None = None  # (seq, spooled_at) read here, for a silent child
        # Hints: numbered; one is on its way while sent > taken. Guarded by _hint_lock (any thread).
        self._hint_lock = threading.Lock()
        self._hint_sent = 0
        self._hint_taken = 0
        self._hint_skipped = False
        self._beat_asked = False
        self._stopping = False
        self._nudge = threading.Event()  # wakes the watch: a child ended, a heartbeat asked, stop
        self._watch: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the watch, which starts the child; returns at once (it connects in the background)."""
        self._watch = threading.Thread(target=self._run_watch, name="mirror-watch", daemon=True)
        self._watch.start()

    async def stop(self) -> None:
        """Ask the child to stop between two steps (a batch in flight is rolled back or done: the
        head says which next time), wait a bounded time, then kill it."""
        self._stopping = True
        self._nudge.set()
        watch = self._watch
        if watch is not None:
            await asyncio.to_thread(watch.join, _STOP_GRACE_S + 5.0)
            if watch.is_alive():
                log.warning("the mirror's watch did not stop in time")
        proc = self._proc
        if proc is not None and proc.poll() is None:  # the watch failed to: never leave it behind
            proc.kill()

    # -- observers (the daemon's hooks; any thread, quick, never raise) ---------------------------
    def observe_commit(self, seconds: float) -> None:
        """A durable spool commit: something may be there to mirror."""
        self._hint()

    def observe_event(self, name: str, data: dict[str, Any]) -> None:
        """A status change published: push it now rather than at the next poll."""
        if name in _STATUS_EVENTS:
            self._hint()
        elif name in _MODE_EVENTS:  # the fleet view shows the new mode now, not at the next heartbeat
            self._send(("beat_soon",))
        elif name == "spool.backlog" and data.get("pending") == 0:
            # The backlog just emptied (central took everything): IT's "pending" column says so now.
            self._send(("beat_soon",))

    def _hint(self) -> None:
        # Per commit: when a hint is on its way, only a flag. The pass that takes it may have read
        # the spool before this commit, so the flag makes its answer (the status after the pass,
        # which says the hints it took) send the next one.
        with self._hint_lock:
            if self._hint_sent > self._hint_taken:
                self._hint_skipped = True
                return
            number = self._next_hint()
        self._send_hint(number)

    def _next_hint(self) -> int:  # under _hint_lock
        self._hint_sent += 1
        self._hint_skipped = False
        return self._hint_sent

    def _send_hint(self, number: int) -> None:
        if not self._send(("wake", number, self._tail())):
            with self._hint_lock:  # none on its way after all: the next commit tries again
                self._hint_taken = max(self._hint_taken, number)

    def _taken(self, number: int) -> None:
        with self._hint_lock:
            self._hint_taken = max(self._hint_taken, number)
            if not (self._hint_skipped and self._hint_taken >= self._hint_sent):
                return
            again = self._next_hint()
        self._send_hint(again)

    def _send(self, message: tuple[Any, ...]) -> bool:
        """To the child, never waiting: a child that stopped reading loses a hint, not a sale."""
        sock = self._sock
        if sock is None:
            return False
        try:
            sock.send(encode(message), socket.MSG_DONTWAIT)
        except OSError:
            return False
        return True

    def _tail(self) -> int | None:
        try:
            return self.spool.pending_summary().last_seq  # memory only
        except SpoolError:
            return None

    # -- the watch: starts, restarts and stops the child (one thread, so no two disagree) ---------
    def _run_watch(self) -> None:
        # The child's PR_SET_PDEATHSIG fires when the thread that started it ends: every child is
        # started here, and this thread lives until the child is stopped.
        restart_at, pause = time.monotonic(), _RESTART_MIN_S
        tick = min(max(self.lag_alarm_s / 4, 0.05), 5.0)  # a small lag_alarm_s is seen on time
        while True:
            try:
                if self._stopping:
                    self._stop_child()
                    return
                proc = self._proc
                if proc is not None and self._gone:  # its socket closed: it is exiting, reap it now
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(1.0)
                now = time.monotonic()
                if proc is not None and proc.poll() is not None:
                    if now - self._started_at > _STEADY_S:
                        pause = _RESTART_MIN_S
                    restart_at = now + pause
                    self._ended(proc, pause)
                    pause = min(pause * 2, _RESTART_MAX_S)  # one that keeps dying at start costs less and less
                elif proc is not None and now - self._heard_at > _HUNG_KILL_S:
                    log.error("mirror: its process (pid %s) said nothing for %.0f s; killing it", proc.pid,
                              now - self._heard_at)
                    proc.kill()
                    self._nudge.set()
                if self._proc is None and not self._dsn_unusable and now >= restart_at and not self._spawn():
                    restart_at = now + pause
                    pause = min(pause * 2, _RESTART_MAX_S)
                if self._beat_asked and self._proc is not None:
                    self._beat_asked = False
                    self._send(("beat", self._build_beat()))
                self._read_oldest()
                self.check()
            except Exception:  # a bug here must not end the watch (nor reach the daemon)
                log.exception("the mirror's watch failed")
            wait = tick if self._proc is not None else max(min(tick, restart_at - time.monotonic()), 0.01)
            self._nudge.wait(wait)
            self._nudge.clear()

    def _spawn(self) -> bool:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "terminald.mirror.child", "--fd", str(child.fileno()), "--parent",
                 str(os.getpid())],
                pass_fds=(child.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        except OSError as exc:
            parent.close()
            log.error("mirror: its process could not start: %s", exc)
            if self._down_since is None:
                self._down_since = now_rfc3339()
            return False
        finally:
            child.close()  # the child's own now: its EOF must come when the child is gone
        parent.send(encode(("start", self._settings)))  # an empty buffer: never waits
        with self._hint_lock:
            self._hint_sent = self._hint_taken = 0  # the new child reads the whole tail anyway
            self._hint_skipped = False
        self._generation += 1
        self._proc, self._sock, self._gone = proc, parent, False
        self._started_at = self._heard_at = time.monotonic()
        threading.Thread(target=self._read, args=(parent, self._generation), name="mirror-reader",
                         daemon=True).start()
        log.info("mirror: copier process started (pid %s)", proc.pid)
        return True

    def _ended(self, proc: subprocess.Popen[bytes], pause: float) -> None:
        code = proc.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        log.error("mirror: its process (pid %s) ended (%s); starting it again in %.1f s", proc.pid, how, pause)
        sock, self._sock, self._proc, self._gone = self._sock, None, None, True
        if sock is not None:
            sock.close()
        if self._down_since is None:
            self._down_since = now_rfc3339()

    def _stop_child(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._send(("stop",))
        try:
            proc.wait(_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("mirror: its process did not stop within %.0f s; killing it", _STOP_GRACE_S)
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5.0)
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def _read(self, sock: socket.socket, generation: int) -> None:
        """The child's messages, on a thread of this child's: a few per pass and one a second."""
        while True:
            try:
                data = sock.recv(MAX_MESSAGE)
            except OSError:
                data = b""
            if not data or generation != self._generation:
                break
            try:
                message = decode(data)
            except Exception:
                log.exception("mirror: a message from its process it cannot read")
                continue
            self._heard_at = time.monotonic()
            self._down_since = None
            kind = message[0]
            if kind == "status":
                self._snapshot = message[1]
                self._taken(int(message[2]))
                self._remember(self._snapshot.mirrored_seq if self._snapshot is not None else None)
            elif kind == "beat?":
                self._beat_asked = True
                self._nudge.set()
            elif kind == "log":
                logging.getLogger(str(message[2])).log(int(message[1]), "%s", message[3])
        if generation == self._generation:
            self._gone = True
            self._nudge.set()  # the watch sees the end now, not at its next tick

    def _build_beat(self) -> Heartbeat | None:
        """The fleet row's values, on the watch's thread (they read the spool: never on a loop)."""
        if self._heartbeat is None:
            return None
        try:
            return self._heartbeat()
        except Exception:
            log.exception("mirror: the heartbeat's values")
            return None

    def _read_oldest(self) -> None:
        """The first unmirrored record's age, when the child does not say it (dead, silent, or not
        yet told of the newest records): one read, once per head."""
        snapshot, tail = self._snapshot, self._tail()
        head = self._known_head(snapshot)
        if head is None or tail is None or tail <= head or (snapshot is not None and snapshot.oldest_unmirrored_at):
            return
        if self._oldest is not None and self._oldest[0] == head + 1:
            return
        with contextlib.suppress(SpoolError):
            record = self.spool.get_seq(head + 1)
            self._oldest = None if record is None else (record.seq, record.spooled_at)

    def _known_head(self, snapshot: MirrorStatus | None) -> int | None:
        """The mirror's head: as this run's copier last saw it, else as the last run's did."""
        if snapshot is not None and snapshot.mirrored_seq is not None:
            return snapshot.mirrored_seq
        return self._remembered_head

    def _load_head(self) -> int | None:
        try:
            kept = json.loads(self._head_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        seq = kept.get("seq") if isinstance(kept, dict) and kept.get("terminal_id") == self.spool.terminal_id else None
        return seq if isinstance(seq, int) and not isinstance(seq, bool) and seq >= 0 else None

    def _remember(self, seq: int | None) -> None:
        """Keep the head for the next run (a hint for the lag shown, not a fact: no fsync)."""
        if seq is None or seq == self._remembered_head:
            return
        self._remembered_head = seq
        tmp = self._head_file.with_name(self._head_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"terminal_id": self.spool.terminal_id, "seq": seq}), encoding="utf-8")
            os.replace(tmp, self._head_file)
        except OSError as exc:
            log.debug("mirror: cannot keep the head in %s: %s", self._head_file, exc)

    # -- state -------------------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The copier's process while it runs."""
        proc = self._proc
        return None if proc is None or self._gone else proc.pid

    def _child_alarm(self) -> MirrorAlarm | None:
        if self._stopping or self._dsn_unusable:  # none is started: mirror_config says why
            return None
        proc, silent = self._proc, time.monotonic() - self._heard_at
        if proc is None or self._gone:
            message = "the mirror's copier process is not running; it is being started again"
        elif silent > _SILENT_S:
            message = f"the mirror's copier process (pid {proc.pid}) has not answered for {silent:.0f} s"
        else:
            return None
        since = self._down_since
        if since is None:
            since = self._down_since = now_rfc3339()
        return MirrorAlarm(CHILD_ALARM, message, since)

    def status(self) -> MirrorStatus:
        """The copier's state: the child's last status, the spool's tail as the writer knows it,
        and the child's health. Memory only."""
        snapshot, tail, down = self._snapshot, self._tail(), self._child_alarm()
        running_s = time.monotonic() - self._created
        if snapshot is None:  # no word from a copier yet
            snapshot = MirrorStatus(connected=False, server=None, mirrored_seq=None, mirrored_hash=None,
                                    spool_seq=tail, unmirrored=None, oldest_unmirrored_at=None, lag_s=None,
                                    last_ok_at=None, last_error=None, alarms=(), running_s=running_s)
        head = self._known_head(snapshot)
        spool_seq = max(tail or 0, snapshot.spool_seq or 0) if tail is not None else snapshot.spool_seq
        unmirrored = None if head is None or spool_seq is None else max(spool_seq - head, 0)
        oldest = None
        if unmirrored:
            oldest = snapshot.oldest_unmirrored_at
            mine = self._oldest
            if oldest is None and head is not None and mine is not None and mine[0] == head + 1:
                oldest = mine[1]
        lag_s = None
        if unmirrored == 0:
            lag_s = 0.0
        elif oldest is not None:
            lag_s = max(time.time() - datetime.fromisoformat(oldest).timestamp(), 0.0)
        alarms = snapshot.alarms + ((down,) if down else ())
        return replace(snapshot, connected=snapshot.connected and down is None, mirrored_seq=head, spool_seq=spool_seq,
                       unmirrored=unmirrored, oldest_unmirrored_at=oldest, lag_s=lag_s,
                       last_error=down.message if down else snapshot.last_error, alarms=alarms, running_s=running_s)

    def check(self) -> MirrorStatus:
        """The copier's state now; publishes ``mirror.lag`` / ``mirror.alarm`` on each change."""
        status = self.status()
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
        status = status if status is not None else self.status()
        found: list[dict[str, Any]] = []
        with self._lock:
            since = self._lag_since
        if since is not None:
            found.append({"code": LAG_ALARM, "message": self._lag_message(status), "since": since})
        if self._config_error is not None:
            found.append({"code": "mirror_config", "message": self._config_error, "since": None})
        found += [{"code": a.code, "message": a.message, "since": a.since, "seq": a.seq} for a in status.alarms
                  if not (a.code == "mirror_config" and self._config_error is not None)]  # one per code
        return found

    def status_dict(self) -> dict[str, Any]:
        """The ``mirror`` section of /v1/status (docs/api.md)."""
        status = self.check()
        return {
            "enabled": True,
            "pid": self.pid(),  # the copier's own process (not the daemon's): None while it is down
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
