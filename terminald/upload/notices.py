"""Central's notices, kept locally: the frozen-card list and the planned downtime windows.

The frozen list is synced in full once, then by change since our version
(`frozen_since=n`); both it and the windows are persisted in the spool file
(`UploadState`), so the offline policy can refuse a frozen card after a restart
with central unreachable. Windows from the config (`[[downtime]]`) and from
central are treated alike: inside one, nothing is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from terminald.config import DowntimeWindow
from terminald.upload.answers import Notices
from terminald.upload.calendar import active_window
from terminald.upload.state import UploadState

__all__ = ["NoticeBook"]


class NoticeBook:
    def __init__(self, state: UploadState, configured: Sequence[DowntimeWindow]) -> None:
        self._state = state
        self._configured = [
            {"start": w.start, "end": w.end, "reason": w.reason, "source": "config"} for w in configured
        ]
        self.frozen_version, self._frozen = state.frozen()
        self._central_windows = state.notice_downtime()

    def is_frozen(self, card_number: str) -> bool:
        return card_number in self._frozen

    def downtime_at(self, now: datetime) -> dict[str, Any] | None:
        central = [{**w, "source": "central"} for w in self._central_windows]
        return active_window([*self._configured, *central], now)

    def apply(self, notices: Notices) -> None:
        """Store what central sent (a full list or a change) and the windows it announced."""
        frozen = notices.frozen
        if frozen.full:
            self._state.replace_frozen(frozen.version, frozen.card_numbers)
        elif frozen.version >= self.frozen_version:
            self._state.change_frozen(frozen.version, frozen.added, frozen.removed)
        else:
            # Central's list restarted below our version: ask for the whole list next time.
            self._state.replace_frozen(0, ())
        self.frozen_version, self._frozen = self._state.frozen()
        self._central_windows = [
            {"start": w.start, "end": w.end, "reason": w.reason} for w in notices.downtime
        ]
        self._state.set_notice_downtime(self._central_windows)
