"""The outage log and the reconciliation, through the real spool file and central simulator."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from spool import Outcome, Spool
from terminald.cli.upstream import print_reconcile
from terminald.reports import outages, reconcile
from terminald.sim.central import CentralSim
from terminald.upload.errors import BadAnswer
from terminald.upload.state import UploadState
from terminald.upload.uploader import Uploader
from terminald.upstream.v1.answers import CentralTotals, parse_totals
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


def push(spool: Spool, sim: CentralSim) -> list[dict[str, Any]]:
    """Send the backlog to the simulator over HTTP and store its outcomes, as the uploader does.

    By hand so that revokes go end to end whatever the uploader's answer checks are doing."""
    records = spool.backlog(limit=500)
    r = httpx.post(f"{sim.url}/v1/terminals/{TID}/records", json={"records": [x.wire() for x in records]},
                   headers={"X-Terminal-Id": TID}, timeout=10)
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    spool.apply_outcomes([
        Outcome(x["seq"], "settled" if "settlement" in x else "rejected", x.get("settlement") or x["reason"])
        for x in results
    ])
    return results


def test_reconcile_a_day_with_sales_a_revoke_a_rejection_and_a_pending_record(
    central_sim: CentralSim, tmp_path: Path
) -> None:
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID)
    central_sim.control(freeze=["FZ"])
    cfg = make_config(path, central_sim.url)
    try:
        a = append(spool, 1, day="2026-11-23", total=1001)[0]
        append(spool, 1, day="2026-11-23", total=1250)
        append(spool, 1, day="2026-11-23", total=999)
        append(spool, 1, day="2026-11-23", card="FZ", total=500)
        append(spool, 1, day="2026-11-24", total=700)
        before = asyncio.run(reconcile(spool, cfg, "2026-11-23"))
        assert before["local"] == {"count": 0, "total_fen": 0, "fund_paid_fen": 0, "account_paid_fen": 0,
                                   "by_status": {"pending": 4}}
        assert before["central"] == {"count": 0, "total_fen": 0, "fund_paid_fen": 0, "account_paid_fen": 0,
                                     "by_status": {"accepted": 0, "rejected": 0}}
        # Nothing decided on either side yet: the figures agree, and the note says the day is not final.
        assert before["matches"] is True and before["differences"] == []
        assert "4 record(s) of this date are still pending" in before["note"]

        assert [x["status"] for x in push(spool, central_sim)] == ["accepted"] * 3 + ["rejected", "accepted"]
        revoke = append(spool, 1, day="2026-11-23", total=-1001, kind="revoke",
                        extra={"original_record_id": a.record_id})[0]
        [revoked] = push(spool, central_sim)
        assert revoked["status"] == "accepted" and revoked["settlement"]["fund_paid_fen"] == -700
        pending = append(spool, 1, day="2026-11-23", total=300)[0]

        after = asyncio.run(reconcile(spool, cfg, "2026-11-23"))
        # Accepted: 1001 + 1250 + 999 and the revoke (-1001); fund 70 % of each sale, rounded down,
        # and the revoke returns exactly the original's 700 (not 70 % of -1001).
        net = {"count": 4, "total_fen": 2249, "fund_paid_fen": 700 + 875 + 699 - 700, "account_paid_fen": 0}
        assert after["local"] == {**net, "by_status": {"accepted": 4, "rejected": 1, "pending": 1}}
        assert after["central"] == {**net, "by_status": {"accepted": 4, "rejected": 1}}
        assert after["matches"] is True and after["differences"] == []
        assert "1 record(s) of this date are still pending" in after["note"]
        assert spool.get(revoke.record_id).status == "settled"  # type: ignore[union-attr]
        assert spool.get(pending.record_id).status == "pending"  # type: ignore[union-attr]

        # A staff resolution changes no money: still rejected for central, still matching.
        spool.resolve(spool.records(status="rejected")[0].record_id, "self_pay")
        assert asyncio.run(reconcile(spool, cfg, "2026-11-23"))["local"]["by_status"]["rejected"] == 1
        assert asyncio.run(reconcile(spool, cfg, "2026-11-23"))["matches"] is True
        day_after = asyncio.run(reconcile(spool, cfg, "2026-11-24"))
        assert day_after["matches"] is True and day_after["local"]["total_fen"] == 700
        assert "note" not in day_after

        central_sim.control(down=True)
        down = asyncio.run(reconcile(spool, cfg, "2026-11-24"))
        assert down["central"] is None and down["matches"] is False and "error" in down
        assert down["differences"] == []
        offline_cfg = make_config(path, "")
        assert asyncio.run(reconcile(spool, offline_cfg, "2026-11-24"))["error"] == "no upstream configured"
    finally:
        spool.close()


def test_reconcile_names_the_record_whose_answer_was_dropped(
    central_sim: CentralSim, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID)
    cfg = make_config(path, central_sim.url)
    try:
        append(spool, 2, day="2026-11-23", total=1000)
        push(spool, central_sim)
        lost = append(spool, 1, day="2026-11-23", total=2000)[0]
        # Central commits the batch, then resets the connection instead of answering.
        central_sim.control(drop_after_commit_rate=1.0)

        async def upload_until_central_holds(n: int) -> None:
            up = Uploader(spool, cfg, on_event=lambda n, d: None, retry_base_s=0.05, retry_cap_s=0.2)
            await up.start()
            await until(lambda: len(central_sim.records(TID)) == n and central_sim.injected["drop_after_commit"] > 0)
            await up.stop()

        asyncio.run(upload_until_central_holds(3))
        assert spool.get(lost.record_id).status == "pending"  # type: ignore[union-attr]
        result = asyncio.run(reconcile(spool, cfg, "2026-11-23"))
        assert result["matches"] is False
        assert result["local"]["count"] == 2 and result["central"]["count"] == 3
        figures = [d for d in result["differences"] if "figure" in d]
        assert figures == [
            {"figure": "count", "local": 2, "central": 3},
            {"figure": "total_fen", "local": 2000, "central": 4000},
            {"figure": "fund_paid_fen", "local": 1400, "central": 2800},
        ]
        named = [d for d in result["differences"] if "record_id" in d]
        assert [(d["record_id"], d["seq"], d["status"], d["total_fen"], d["why"]) for d in named] == [
            (lost.record_id, 3, "pending", 2000, "pending")
        ]
        assert "no per-record detail" in result["note"]

        assert print_reconcile(cfg, "2026-11-23") == 1
        out = capsys.readouterr().out
        assert lost.record_id in out and "does not match" in out

        # Re-sending settles it (duplicate with central's outcome): both sides agree again.
        central_sim.control(drop_after_commit_rate=0.0)

        async def drain() -> None:
            up = Uploader(spool, cfg, on_event=lambda n, d: None, retry_base_s=0.05, retry_cap_s=0.2)
            await up.start()
            await until(lambda: spool.stats().pending == 0)
            await up.stop()

        asyncio.run(drain())
        again = asyncio.run(reconcile(spool, cfg, "2026-11-23"))
        assert again["matches"] is True and again["differences"] == [] and "note" not in again
        assert print_reconcile(cfg, "2026-11-23") == 0
    finally:
        spool.close()


def test_reconcile_names_settled_records_without_their_figures(central_sim: CentralSim, tmp_path: Path) -> None:
    """Records settled here that central does not count (another central, an edited file): the figures
    differ; a record whose stored settlement lacks its fund/account figures is named, with a note."""
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID)
    cfg = make_config(path, central_sim.url)
    try:
        full, bare = append(spool, 2, day="2026-11-23", total=1000)
        spool.apply_outcomes([
            Outcome(full.seq, "settled", {"central_ref": "X1", "fund_paid_fen": 600, "account_paid_fen": 100,
                                          "cash_paid_fen": 300}),
            Outcome(bare.seq, "settled", {"central_ref": "X2"}),
        ])
        result = asyncio.run(reconcile(spool, cfg, "2026-11-23"))
        assert result["local"] == {"count": 2, "total_fen": 2000, "fund_paid_fen": 600, "account_paid_fen": 100,
                                   "by_status": {"accepted": 2}}
        assert result["matches"] is False
        assert [d["figure"] for d in result["differences"] if "figure" in d] == [
            "count", "total_fen", "fund_paid_fen", "account_paid_fen"
        ]
        assert [(d["seq"], d["why"]) for d in result["differences"] if "record_id" in d] == [
            (bare.seq, "outcome_missing")
        ]
    finally:
        spool.close()

    # With every figure present and nothing pending, no local record explains it: the note says so.
    path2 = tmp_path / "spool2.db"
    spool = Spool.open(path2, TID)
    try:
        [only] = append(spool, 1, day="2026-11-23", total=1000)
        spool.apply_outcomes([Outcome(only.seq, "settled", {"central_ref": "X1", "fund_paid_fen": 700,
                                                           "account_paid_fen": 0, "cash_paid_fen": 300})])
        result = asyncio.run(reconcile(spool, make_config(path2, central_sim.url), "2026-11-23"))
        assert result["matches"] is False
        assert all("figure" in d for d in result["differences"])
        assert "no local record of this date is pending" in result["note"]
    finally:
        spool.close()


def test_parse_totals_takes_the_pinned_shape_strictly() -> None:
    body = {"date": "2026-11-23", "count": 3, "total_fen": -500, "fund_paid_fen": -350, "account_paid_fen": 0,
            "by_status": {"accepted": 3, "rejected": 1}, "currency": "CNY"}
    assert parse_totals(body) == CentralTotals(date="2026-11-23", count=3, total_fen=-500, fund_paid_fen=-350,
                                               account_paid_fen=0, by_status={"accepted": 3, "rejected": 1})
    bad = [
        {k: v for k, v in body.items() if k != "fund_paid_fen"},
        {k: v for k, v in body.items() if k != "by_status"},
        {**body, "total_fen": "-500"},
        {**body, "fund_paid_fen": 1.0},
        {**body, "account_paid_fen": True},
        {**body, "count": -1},
        {**body, "count": 2**63},
        {**body, "total_fen": -(2**63) - 1},
        {**body, "by_status": {"accepted": -1}},
        {**body, "by_status": {"accepted": "3"}},
        {**body, "by_status": {f"s{i}": 1 for i in range(17)}},
        {**body, "by_status": {"x" * 33: 1}},
        {**body, "date": "2026-11-2"},
        {**body, "date": "2026/11/23"},
        {**body, "date": "２０２６-11-23"},
        [body],
    ]
    for case in bad:
        with pytest.raises(BadAnswer):
            parse_totals(case)
