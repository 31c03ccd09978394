"""Central's notices, kept locally: the frozen-card list and the planned downtime windows.

The frozen list is synced in full once, then by change since our version
(`frozen_since=n`); both it and the windows are persisted in the spool file
(`UploadState`), so the offline policy can refuse a frozen card after a restart
with central unreachable. Every read (`is_frozen` on each offline sale,
`downtime_at`) is answered from memory; the state's writes go to the spool's
writer thread, never to the event loop. Windows from the config (`[[downtime]]`) and from
central are treated alike: inside one, nothing is sent but the notices'
re-read.

A window from central is trusted only within bounds: one that does not end
after it starts, lasts more than 31 days or has unreadable times is ignored
(logged once; the uploader raises `downtime_notice_ignored`); one that has
already ended is dropped (logged once); one that staff cleared
(`terminald upstream resume --clear-downtime`) stays ignored while central
keeps announcing it, until it ends. Central withdrawing a window ends it at
the next re-read.

`Notices` is what an adapter hands over, whatever its protocol calls them (protocol v1 parses
them from `GET .../notices`, terminald/upstream/v1/answers.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from terminald.config import DowntimeWindow
from terminald.upload.calendar import active_window, parse_time
from terminald.upload.state import UploadState

__all__ = ["MAX_WINDOW", "DowntimeNotice", "FrozenCards", "Ignored", "NoticeBook", "Notices", "window_problem"]

log = logging.getLogger("terminald.upload")


@dataclass(frozen=True)
class DowntimeNotice:
    start: str
    end: str
    reason: str


@dataclass(frozen=True)
class FrozenCards:
    """Either the full list (`full`, card_numbers) or a change since a version (added/removed)."""

    version: int
    full: bool
    card_numbers: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notices:
    """Central's notices: the downtime windows it announces and its frozen cards."""

    downtime: list[DowntimeNotice]
    frozen: FrozenCards


MAX_WINDOW = timedelta(days=31)
ENDED = "it has already ended"
CLEARED = "staff cleared it"


def window_problem(start: str, end: str) -> str | None:
    """Why a window's times cannot be right, or None."""
    start_dt, end_dt = parse_time(start), parse_time(end)
    if start_dt is None or end_dt is None:
        return "its start or end is not an RFC 3339 time with an offset"
    if end_dt <= start_dt:
        return "it does not end after it starts"
    if end_dt - start_dt > MAX_WINDOW:
        return "it lasts more than 31 days"
    return None


@dataclass(frozen=True)
class Ignored:
    """A window central announced that is not in force here, and why."""

    window: dict[str, str]
    why: str

    @property
    def suspicious(self) -> bool:
        """Central announced something that cannot be right (not merely over, or cleared)."""
        return self.why not in (ENDED, CLEARED)

    def describe(self) -> str:
        w = self.window
        return f"{w['start']} to {w['end']} ({w['reason'] or 'no reason given'}): {self.why}"


class NoticeBook:
    def __init__(self, state: UploadState, configured: Sequence[DowntimeWindow]) -> None:
        self._state = state
        self._configured = [
            {"start": w.start, "end": w.end, "reason": w.reason, "source": "config"} for w in configured
        ]
        self.frozen_version, self._frozen = state.frozen()
        # Stored by an older version without the bounds: check them again.
        self._central_windows = [
            w for w in state.notice_downtime() if window_problem(w["start"], w["end"]) is None
        ]
        self._cleared = state.dismissed_downtime()
        self._reported: set[tuple[str, str, str, str]] = set()

    def is_frozen(self, card_number: str) -> bool:
        return card_number in self._frozen

    def downtime_at(self, now: datetime) -> dict[str, Any] | None:
        central = [{**w, "source": "central"} for w in self._central_windows]
        return active_window([*self._configured, *central], now)

    def apply(self, notices: Notices, now: datetime) -> list[Ignored]:
        """Store what central sent (a full list or a change) and the windows it announced that
        are kept; return the windows ignored."""
        frozen = notices.frozen
        if frozen.full:
            self._state.replace_frozen(frozen.version, frozen.card_numbers)
        elif frozen.version >= self.frozen_version:
            self._state.change_frozen(frozen.version, frozen.added, frozen.removed)
        else:
            # Central's list restarted below our version: ask for the whole list next time.
            self._state.replace_frozen(0, ())
        self.frozen_version, self._frozen = self._state.frozen()
        still_cleared = [w for w in self._cleared if not _ended(w, now)]
        if still_cleared != self._cleared:
            self._cleared = still_cleared
            self._state.set_dismissed_downtime(still_cleared)
        kept: list[dict[str, str]] = []
        ignored: list[Ignored] = []
        for notice in notices.downtime:
            window = {"start": notice.start, "end": notice.end, "reason": notice.reason}
            why = self._why_ignored(window, now)
            if why is None:
                kept.append(window)
            else:
                ignored.append(Ignored(window, why))
        for item in ignored:
            self._report_once(item)
        self._central_windows = kept
        self._state.set_notice_downtime(kept)
        return ignored

    def clear_central(self, now: datetime) -> list[dict[str, str]]:
        """Staff drop the windows from central in force now; they stay ignored until they end."""
        active = [w for w in self._central_windows if active_window([w], now) is not None]
        if not active:
            return []
        self._cleared = [*self._cleared, *active]
        self._central_windows = [w for w in self._central_windows if w not in active]
        self._state.set_dismissed_downtime(self._cleared)
        self._state.set_notice_downtime(self._central_windows)
        return active

    def _why_ignored(self, window: dict[str, str], now: datetime) -> str | None:
        problem = window_problem(window["start"], window["end"])
        if problem is not None:
            return problem
        if _ended(window, now):
            return ENDED
        if any((c["start"], c["end"]) == (window["start"], window["end"]) for c in self._cleared):
            return CLEARED
        return None

    def _report_once(self, item: Ignored) -> None:
        key = (item.window["start"], item.window["end"], item.window["reason"], item.why)
        if key in self._reported:
            return
        if len(self._reported) > 1000:  # a central that keeps inventing windows: log them again
            self._reported.clear()
        self._reported.add(key)
        if item.suspicious:
            log.warning("downtime window from central ignored: %s", item.describe())
        else:
            log.info("downtime window from central not in force: %s", item.describe())


def _ended(window: dict[str, str], now: datetime) -> bool:
    end = parse_time(window["end"])
    return end is None or end <= now
