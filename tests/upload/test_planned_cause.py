"""A planned window's outage row: its cause is the window's reason, said once.

The row has its own `planned` column; the cause used to be stored as
"planned: <reason>", which every reader that shows the kind (the demo, the
status page, `terminald outages`) printed as "planned: planned: <reason>".
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path
from typing import Any

from spool import Spool
from terminald.reports import outages
from terminald.upload.link import PLANNED_DOWNTIME, LinkTracker
from terminald.upload.state import UploadState
from tests.upload.helpers import TID


def test_a_planned_window_is_logged_with_its_reason_alone(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool.open(path, TID).close()
    state = UploadState(path)
    events: list[tuple[str, dict[str, Any]]] = []
    tracker = LinkTracker(state, UTC, lambda name, data: events.append((name, data)))
    tracker.planned({"start": "2026-11-23T00:00:00+08:00", "end": "2026-11-24T00:00:00+08:00",
                     "reason": "切换国家医保信息平台"})
    tracker.failed("connect_failed", "cannot connect")
    tracker.planned({"start": "2026-11-25T00:00:00+08:00", "end": "2026-11-26T00:00:00+08:00"})
    state.close()

    rows = outages(path)
    assert [(r["cause"], r["planned"]) for r in rows] == [
        ("切换国家医保信息平台", True), ("connect_failed", False), (PLANNED_DOWNTIME, True)]
    assert all(not r["cause"].startswith("planned:") for r in rows)
    # The link and its event say the same as the row.
    assert tracker.link.cause == PLANNED_DOWNTIME
    assert [d["cause"] for name, d in events if name == "upstream.offline"] == [
        "切换国家医保信息平台", "connect_failed", PLANNED_DOWNTIME]
