"""The uploader's behaviour against the real central simulator: rules, notices, halts, alarms."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from spool import Spool
from terminald.reports import outages
from terminald.sim.central import CentralSim
from terminald.upload.uploader import Uploader
from tests.upload.helpers import TID, append, assert_exactly_once, make_config, until

TZ = ZoneInfo("Asia/Shanghai")
Events = list[tuple[str, dict[str, Any]]]


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool.open(tmp_path / "spool.db", TID)
    yield s
    s.close()


def _uploader(spool: Spool, url: str, events: Events, **kwargs: Any) -> Uploader:
    cfg_sections = kwargs.pop("cfg", {})
    cfg = make_config(spool.path, url, **cfg_sections)
    options = {"retry_base_s": 0.01, "retry_cap_s": 0.1, "idle_probe_s": 0.1, **kwargs}
    return Uploader(spool, cfg, on_event=lambda n, d: events.append((n, d)), **options)


def test_central_rules_reject_and_the_rest_goes_on(central_sim: CentralSim, spool: Spool) -> None:
    central_sim.control(freeze=["FROZEN01"], not_insured=["NOINS001"])
    ok = append(spool, 2)
    frozen = append(spool, 1, card="FROZEN01")[0]
    noins = append(spool, 1, card="NOINS001")[0]
    bad_revoke = append(spool, 1, kind="revoke", extra={"original_record_id": "nope"})[0]
    # A revoke's total is the negative of its original's; so are the parts of its settlement.
    good_revoke = append(spool, 1, kind="revoke", total=-1250, extra={"original_record_id": ok[0].record_id})[0]
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events)
        await up.start()
        await until(lambda: spool.stats().pending == 0)
        await up.stop()

    asyncio.run(main())
    assert_exactly_once(central_sim, spool)

    def outcome(record_id: str) -> dict[str, Any]:
        record = spool.get(record_id)
        assert record is not None and record.outcome is not None
        return record.outcome

    assert outcome(frozen.record_id)["code"] == "card_frozen"
    assert outcome(noins.record_id)["code"] == "not_insured"
    assert outcome(bad_revoke.record_id)["code"] == "original_not_found"
    revoked = outcome(good_revoke.record_id)
    assert "central_ref" in revoked and revoked["fund_paid_fen"] == -875 and revoked["cash_paid_fen"] == -375
    rejected = [d for n, d in events if n == "transaction.rejected"]
    assert [d["seq"] for d in rejected] == [3, 4, 5]
    assert rejected[0]["card"]["card_number"] == "FR****01"
    assert rejected[0]["rejection"]["code"] == "card_frozen"


def test_no_upstream_keeps_everything_pending(spool: Spool) -> None:
    append(spool, 3)
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, "", events)
        await up.start()
        await asyncio.sleep(0.2)
        assert up.link.state == "offline" and up.link.cause == "no upstream configured"
        assert up.offline_reason() == "upstream_unreachable"
        assert await up.wait_final(spool.get_seq(1).record_id, 0.1) is None  # type: ignore[union-attr]
        await up.stop()

    asyncio.run(main())
    assert spool.stats().pending == 3


def test_wait_final_returns_the_settled_record(central_sim: CentralSim, spool: Spool) -> None:
    async def main() -> None:
        up = _uploader(spool, central_sim.url, [], idle_probe_s=5)
        await up.start()
        await until(lambda: up.link.state == "online")
        assert up.offline_reason() is None
        record = append(spool, 1)[0]
        up.wake()
        final = await up.wait_final(record.record_id, 5)
        assert final is not None and final.status == "settled"
        assert final.outcome is not None and final.outcome["fund_paid_fen"] == 875
        await up.stop()

    asyncio.run(main())


def test_planned_downtime_from_config_sends_nothing(central_sim: CentralSim, spool: Spool) -> None:
    """Inside a window only the notices are read (so that central can withdraw its own)."""
    now = datetime.now(TZ)
    window = {
        "start": (now - timedelta(hours=1)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(),
        "reason": "切换国家医保信息平台",
    }
    append(spool, 5)
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events, cfg={"downtime": [window]})
        await up.start()
        await until(lambda: up.link.state == "planned_downtime")
        await asyncio.sleep(0.3)
        assert up.offline_reason() == "planned_downtime"
        assert up.downtime_now() is not None and up.downtime_now()["reason"] == window["reason"]  # type: ignore[index]
        await up.stop()

    asyncio.run(main())
    assert set(central_sim.requests) == {"notices"}
    assert spool.stats().pending == 5
    assert ("upstream.offline", True) in [(n, d.get("planned")) for n, d in events]
    log = outages(spool.path)
    assert len(log) == 1 and log[0]["planned"] and log[0]["ended_at"] is None


def test_downtime_notice_from_central_pauses_then_resumes(central_sim: CentralSim, spool: Spool) -> None:
    now = datetime.now(TZ)
    central_sim.control(
        downtime=[
            {
                "start": (now - timedelta(seconds=5)).isoformat(),
                "end": (now + timedelta(seconds=1.5)).isoformat(),
                "reason": "升级",
            }
        ]
    )
    append(spool, 4)
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events)
        await up.start()
        await until(lambda: up.link.state == "planned_downtime")
        records_calls = central_sim.requests["records"]
        assert spool.stats().pending == 4
        await until(lambda: spool.stats().pending == 0, timeout=10)
        assert records_calls == 0
        await up.stop()

    asyncio.run(main())
    assert_exactly_once(central_sim, spool)
    rows = outages(spool.path)
    assert len(rows) == 1 and rows[0]["planned"] and rows[0]["ended_at"] is not None


def test_frozen_cards_full_then_incremental_and_persisted(central_sim: CentralSim, spool: Spool) -> None:
    central_sim.control(freeze=["A1", "B2"])

    async def first() -> None:
        up = _uploader(spool, central_sim.url, [])
        await up.start()
        await until(lambda: up.is_frozen("A1") and up.is_frozen("B2"))
        await up.stop()

    asyncio.run(first())
    central_sim.control(unfreeze=["A1"], freeze=["C3"])

    async def second() -> None:
        up = _uploader(spool, central_sim.url, [], notices_every_s=0.05)
        assert up.is_frozen("A1") and not up.is_frozen("C3")  # what was synced before the restart
        await up.start()
        await until(lambda: up.is_frozen("C3") and not up.is_frozen("A1"))
        assert up.is_frozen("B2")
        await up.stop()

    asyncio.run(second())
    notices = [t for t in central_sim.targets if "/notices" in t]
    assert notices[0].endswith("/notices")
    assert any(t.endswith("frozen_since=2") for t in notices)


def test_cursor_regression_halts_and_loses_nothing(central_sim: CentralSim, spool: Spool) -> None:
    append(spool, 20)
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events)
        await up.start()
        await until(lambda: spool.stats().pending == 0)
        central_sim.control(regress={"terminal_id": TID, "count": 5})
        append(spool, 3)
        up.wake()
        await until(lambda: up.link.halted)
        assert up.link.alarms[0]["code"] == "cursor_regression"
        assert up.link.state == "offline" and up.offline_reason() == "upstream_unreachable"
        await up.stop()
        # A restart checks the cursor first and stops again.
        again = _uploader(spool, central_sim.url, events)
        await again.start()
        await until(lambda: again.link.halted)
        await again.stop()

    asyncio.run(main())
    stats = spool.stats()
    assert stats.pending == 3 and stats.settled_total == 20
    assert len(central_sim.records(TID)) == 15
    alarms = [d for n, d in events if n == "upstream.offline" and "alarm" in d]
    assert len(alarms) == 2 and alarms[0]["alarm"]["code"] == "cursor_regression"


def test_chain_broken_halts(central_sim: CentralSim, spool: Spool) -> None:
    append(spool, 5)

    async def main() -> None:
        up = _uploader(spool, central_sim.url, [])
        await up.start()
        await until(lambda: spool.stats().pending == 0)
        central_sim.control(tamper={"terminal_id": TID})
        append(spool, 2)
        up.wake()
        await until(lambda: up.link.halted)
        assert up.link.cause == "chain_broken"
        await up.stop()

    asyncio.run(main())
    assert spool.stats().pending == 2
    assert len(central_sim.records(TID)) == 5


def test_sequence_gap_reads_the_cursor_and_continues(central_sim: CentralSim, spool: Spool) -> None:
    """A 409 sequence_gap (answered once by a proxy) leads to a cursor read and a re-send."""
    real = httpx.Client(base_url=central_sim.url)
    gaps: list[httpx.Request] = []

    def proxy(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/records") and not gaps:
            gaps.append(request)
            return httpx.Response(409, json={"error": "sequence_gap", "expected_seq": 1, "results": []})
        forwarded = real.request(
            request.method,
            request.url.path,
            params=request.url.params,
            headers=dict(request.headers),
            content=request.content,
        )
        return httpx.Response(forwarded.status_code, headers=forwarded.headers, content=forwarded.content)

    append(spool, 7)

    async def main() -> None:
        up = _uploader(spool, "http://central.invalid", [], transport=httpx.MockTransport(proxy))
        await up.start()
        await until(lambda: spool.stats().pending == 0)
        assert not up.link.halted
        await up.stop()

    try:
        asyncio.run(main())
    finally:
        real.close()
    assert gaps and any(t.endswith("/cursor") for t in central_sim.targets)
    assert_exactly_once(central_sim, spool)


def test_refused_token_goes_offline_and_keeps_records(tmp_path: Path, spool: Spool) -> None:
    sim = CentralSim(tmp_path / "c.db", token="s3cret")
    sim.start()
    token = tmp_path / "token"
    token.write_text("wrong\n")
    append(spool, 2)

    async def main() -> None:
        up = _uploader(spool, sim.url, [], cfg={"upstream": {"token_file": str(token)}})
        await up.start()
        await until(lambda: (up.link.cause or "").startswith("refused_http_401"))
        await up.stop()
        token.write_text("s3cret\n")
        good = _uploader(spool, sim.url, [], cfg={"upstream": {"token_file": str(token)}})
        await good.start()
        await until(lambda: spool.stats().pending == 0)
        await good.stop()

    try:
        asyncio.run(main())
        assert_exactly_once(sim, spool)
    finally:
        sim.stop()


def test_reentry_deadline_alarm(spool: Spool) -> None:
    append(spool, 2, day="2026-11-02")  # a Monday
    events: Events = []

    async def run_at(now: datetime) -> list[dict[str, Any]]:
        up = _uploader(spool, "", events, clock=lambda: now)
        await up.start()
        await asyncio.sleep(0.1)
        alarms = list(up.link.alarms)
        await up.stop()
        return alarms

    # Ten working days after Monday 2 November is Monday 16 November: not late yet.
    assert asyncio.run(run_at(datetime(2026, 11, 16, 12, tzinfo=TZ))) == []
    late = asyncio.run(run_at(datetime(2026, 11, 17, 9, tzinfo=TZ)))
    assert [a["code"] for a in late] == ["reentry_deadline"]
    assert [d["alarm"]["code"] for n, d in events if n == "spool.backlog" and "alarm" in d] == [
        "reentry_deadline"
    ]


def test_outage_log_records_an_unplanned_outage(central_sim: CentralSim, spool: Spool) -> None:
    async def main() -> None:
        up = _uploader(spool, central_sim.url, [])
        await up.start()
        await until(lambda: up.link.state == "online")
        central_sim.control(down=True)
        await until(lambda: up.link.state == "offline")
        central_sim.control(down=False)
        await until(lambda: up.link.state == "online")
        await up.stop()

    asyncio.run(main())
    rows = outages(spool.path)
    assert len(rows) == 1
    assert rows[0]["cause"] == "connect_failed" and not rows[0]["planned"] and rows[0]["ended_at"]
    assert not rows[0]["reportable"] and outages(spool.path, reportable_only=True) == []
    json.dumps(rows)  # the API serves it as is


def test_an_unexpected_error_raises_an_alarm_and_the_loop_goes_on(
    central_sim: CentralSim, spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_backlog = spool.backlog
    raised: list[int] = []

    def flaky(after_seq: int = 0, limit: int = 200) -> list[Any]:
        if limit > 1 and not raised:  # the upload loop's read, not the deadline check's
            raised.append(limit)
            raise RuntimeError("a bug")
        return real_backlog(after_seq, limit)

    monkeypatch.setattr(spool, "backlog", flaky)
    append(spool, 10)

    async def main() -> list[dict[str, Any]]:
        up = _uploader(spool, central_sim.url, [])
        await up.start()
        await until(lambda: spool.stats().pending == 0)
        alarms = list(up.link.alarms)
        await up.stop()
        return alarms

    alarms = asyncio.run(main())
    assert [a["code"] for a in alarms] == ["uploader_error"]
    assert_exactly_once(central_sim, spool)
