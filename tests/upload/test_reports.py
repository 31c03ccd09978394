"""The outage log and the reconciliation, through the real spool file and central simulator."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from spool import Spool
from terminald.reports import outages, reconcile
from terminald.sim.central import CentralSim
from terminald.upload.state import UploadState
from terminald.upload.uploader import Uploader
from tests.upload.helpers import TID, append, make_config, until

TZ = ZoneInfo("Asia/Shanghai")


def test_outages_duration_and_reportable(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    Spool.open(path, TID).close()
    state = UploadState(path)
    start = datetime(2026, 11, 23, 9, 0, tzinfo=TZ)
    state.begin_outage(start.isoformat(), "connect_failed", planned=False)
    state.end_outage((start + timedelta(minutes=20)).isoformat())
    state.begin_outage((start + timedelta(hours=2)).isoformat(), "timeout", planned=False)
    state.end_outage((start + timedelta(hours=3, seconds=1)).isoformat())
    state.begin_outage((start + timedelta(hours=5)).isoformat(), "planned: 升级", planned=True)
    state.close()
    now = start + timedelta(hours=7)
    rows = outages(path, now=now)
    assert [r["duration_s"] for r in rows] == [1200.0, 3601.0, 7200.0]
    assert [r["reportable"] for r in rows] == [False, True, True]
    assert rows[2]["ended_at"] is None and rows[2]["planned"] is True
    assert [r["cause"] for r in outages(path, reportable_only=True, now=now)] == ["timeout", "planned: 升级"]


def test_outages_of_a_file_the_uploader_never_touched(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    assert outages(path) == []
    Spool.open(path, TID).close()
    assert outages(path) == []


def test_outage_left_open_by_a_crash_ends_when_last_seen(central_sim: CentralSim, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID)
    state = UploadState(path)
    state.begin_outage("2026-11-23T09:00:00.000+08:00", "connect_failed", planned=False)
    state.touch_outage("2026-11-23T09:30:00.000+08:00")
    state.close()

    async def main() -> None:
        up = Uploader(
            spool,
            make_config(path, central_sim.url),
            on_event=lambda n, d: None,
            retry_base_s=0.01,
            retry_cap_s=0.1,
        )
        await up.start()
        await until(lambda: up.link.state == "online")
        await up.stop()

    try:
        asyncio.run(main())
    finally:
        spool.close()
    rows = outages(path)
    assert len(rows) == 1 and rows[0]["ended_at"] == "2026-11-23T09:30:00.000+08:00"
    assert rows[0]["duration_s"] == 1800.0


def test_reconcile_matches_after_upload_only(central_sim: CentralSim, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID)
    central_sim.control(freeze=["FZ"])
    append(spool, 3, day="2026-11-23", total=1000)
    append(spool, 1, day="2026-11-23", card="FZ", total=500)
    append(spool, 2, day="2026-11-24", total=700)
    cfg = make_config(path, central_sim.url)
    try:
        before = asyncio.run(reconcile(spool, cfg, "2026-11-23"))
        assert before["local"] == {"count": 4, "total_fen": 3500, "by_status": {"pending": 4}}
        assert before["central"] == {"count": 0, "total_fen": 0, "by_status": {}}
        assert before["matches"] is False

        async def upload() -> None:
            up = Uploader(spool, cfg, on_event=lambda n, d: None)
            await up.start()
            await until(lambda: spool.stats().pending == 0)
            await up.stop()

        asyncio.run(upload())
        after = asyncio.run(reconcile(spool, cfg, "2026-11-23"))
        assert after["central"] == {
            "count": 4,
            "total_fen": 3500,
            "by_status": {"accepted": 3, "rejected": 1},
        }
        assert after["matches"] is True
        rejected = spool.records(status="rejected")[0]
        spool.resolve(rejected.record_id, "self_pay")
        assert asyncio.run(reconcile(spool, cfg, "2026-11-23"))["matches"] is True
        central_sim.control(down=True)
        down = asyncio.run(reconcile(spool, cfg, "2026-11-24"))
        assert down["central"] is None and down["matches"] is False and "error" in down
        offline_cfg = make_config(path, "")
        assert asyncio.run(reconcile(spool, offline_cfg, "2026-11-24"))["error"] == "no upstream configured"
    finally:
        spool.close()
