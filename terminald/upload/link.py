"""The online/offline state of the link to central, with cause and time of each change.

`Link` is the read-only view the daemon shows (status page, /v1/status).
`LinkTracker` makes the transitions, writes the outage log and emits
`upstream.online` / `upstream.offline` events; it is the only writer of `Link`.
It runs on the event loop on every failure: the outage log's rows are written
by `UploadState`, which queues them to the spool's writer thread (no SQLite,
no fsync on the loop); the outage a previous run left open is read at start.

States: "online" | "offline" | "planned_downtime". Every period that is not
online (after central was reached at least once, or after a first failure) is
an outage row; leaving planned downtime for offline starts a new row, so
planned and unplanned time are never mixed in the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from terminald.upload.calendar import now_iso
from terminald.upload.state import UploadState

log = logging.getLogger("terminald.upload")

EmitFn = Callable[[str, dict[str, Any]], None]
NO_UPSTREAM = "no upstream configured"
PLANNED_DOWNTIME = "planned downtime"  # the cause of a window central gave no reason for
# Every halt alarm ends with this: staff must know how to clear it without a restart.
RESUME_HINT = (
    "once the cause is fixed: terminald upstream resume --reason '…' (or POST /v1/upstream/resume)"
)


@dataclass
class Link:
    state: str = "offline"
    cause: str | None = "not yet contacted"
    since: str | None = None
    last_ok_at: str | None = None
    last_error: str | None = None
    outage_since: str | None = None
    planned_downtime: dict[str, Any] | None = None
    alarms: list[dict[str, Any]] = field(default_factory=list)
    halted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "cause": self.cause,
            "since": self.since,
            "last_ok_at": self.last_ok_at,
            "last_error": self.last_error,
            "outage_since": self.outage_since,
            "planned_downtime": self.planned_downtime,
            "alarms": list(self.alarms),
            "halted": self.halted,
        }


class LinkTracker:
    def __init__(self, state: UploadState | None, tz: tzinfo, emit: EmitFn) -> None:
        self.link = Link(since=now_iso(tz))
        self._state = state
        self._tz = tz
        self._emit = emit
        # An outage left open by a previous run: continued by the first failure, or closed
        # (at the time it was last seen going on) by the first success.
        self._resumed = state.open_outage() if state is not None else None
        self._halt_codes: set[str] = set()

    def _now(self) -> str:
        return now_iso(self._tz)

    def ok(self) -> None:
        """Central answered as the protocol says."""
        now = self._now()
        self.link.last_ok_at = now
        if self.link.state == "online":
            return
        self._close_open(now)
        previous = self.link.outage_since
        self._move("online", None, now, planned=None)
        self.link.outage_since = None
        self._emit("upstream.online", {"at": now, "outage_since": previous})
        log.info("upstream online (offline since %s)", previous)

    def failed(self, cause: str, detail: str) -> None:
        """A call failed: offline (a new outage unless one is going on)."""
        now = self._now()
        self.link.last_error = detail
        if self.link.state == "offline" and self.link.outage_since is not None:
            if self._state is not None:
                self._state.touch_outage(now)
            self.link.cause = cause
            return
        if self._resumed is not None and not self._resumed["planned"]:
            # The outage the previous run saw is still going on.
            if self._state is not None:
                self._state.touch_outage(now)
            self.link.outage_since = self._resumed["started_at"]
        else:
            self._close_open(now)
            if self._state is not None:
                self._state.begin_outage(now, cause, planned=False)
            self.link.outage_since = now
        self._resumed = None
        self._move("offline", cause, now, planned=None)
        self._emit("upstream.offline", {"at": now, "cause": cause, "planned": False})
        log.warning("upstream offline: %s (%s)", cause, detail)

    def planned(self, window: dict[str, Any]) -> None:
        if self.link.state == "planned_downtime" and self.link.planned_downtime == window:
            return
        now = self._now()
        self._close_open(now)
        # The outage row says it is planned in its own column: its cause is the window's reason
        # alone, as the link's (a "planned: " prefix here was printed twice by every reader).
        cause = window.get("reason") or PLANNED_DOWNTIME
        if self._state is not None:
            self._state.begin_outage(now, cause, planned=True)
        self.link.outage_since = now
        self._move("planned_downtime", cause, now, planned=window)
        self._emit(
            "upstream.offline",
            {"at": now, "cause": self.link.cause, "planned": True, "until": window.get("end")},
        )
        log.info("planned downtime until %s: %s", window.get("end"), window.get("reason"))

    def no_upstream(self) -> None:
        if self.link.cause != NO_UPSTREAM:
            self._move("offline", NO_UPSTREAM, self._now(), planned=None)

    def reached(self) -> None:
        """Central answered, but the state stays what it is (a notice read inside a window)."""
        self.link.last_ok_at = self._now()

    def halt(self, code: str, message: str) -> None:
        """Stop uploading until staff resume it (`resume`): central's books disagree with ours."""
        now = self._now()
        message = f"{message}; {RESUME_HINT}"
        self.link.halted = True
        self.link.last_error = message
        self._halt_codes.add(code)
        self.alarm(code, message)
        if self._state is not None and self.link.state == "online":
            self._state.begin_outage(now, code, planned=False)
            self.link.outage_since = now
        self._move("offline", code, now, planned=None)
        self._emit(
            "upstream.offline",
            {"at": now, "cause": code, "planned": False, "alarm": {"code": code, "message": message}},
        )
        log.error("upload stopped: %s", message)

    def resume(self) -> list[str]:
        """Clear the halt and its alarm (the uploader checks central's cursor again next);
        return the halt codes cleared."""
        codes = sorted(self._halt_codes)
        self.link.halted = False
        self._halt_codes.clear()
        for code in codes:
            self.clear_alarm(code)
        return codes

    def alarm(self, code: str, message: str) -> bool:
        """Raise an alarm once; True when it is new."""
        if any(a["code"] == code for a in self.link.alarms):
            return False
        self.link.alarms.append({"code": code, "message": message, "since": self._now()})
        return True

    def clear_alarm(self, code: str) -> None:
        self.link.alarms = [a for a in self.link.alarms if a["code"] != code]

    def _close_open(self, now: str) -> None:
        if self._state is None:
            return
        # The time the daemon itself was stopped is not central's outage: a row left open by a
        # previous run ends when it was last seen going on.
        self._state.end_outage(self._resumed["checked_at"] if self._resumed is not None else now)
        self._resumed = None

    def _move(self, state: str, cause: str | None, at: str, *, planned: dict[str, Any] | None) -> None:
        self.link.state = state
        self.link.cause = cause
        self.link.since = at
        self.link.planned_downtime = planned
