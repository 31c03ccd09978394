"""Central trusted less, against the real simulator: bad answers, forks, cursors ahead, bad
windows, and halts cleared by staff without a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from spool import Spool
from terminald.errors import ConflictError
from terminald.reports import outages
from terminald.sim.central import CentralSim
from terminald.upload.uploader import Uploader
from tests.upload.helpers import TID, append, assert_exactly_once, make_config, until

TZ = ZoneInfo("Asia/Shanghai")
Events = list[tuple[str, dict[str, Any]]]
SETTLEMENT_KEYS = {"central_ref", "fund_paid_fen", "account_paid_fen", "cash_paid_fen"}


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool.open(tmp_path / "spool.db", TID)
    yield s
    s.close()


def _uploader(spool: Spool, url: str, events: Events, **kwargs: Any) -> Uploader:
    cfg = make_config(spool.path, url, **kwargs.pop("cfg", {}))
    options = {"retry_base_s": 0.01, "retry_cap_s": 0.1, "idle_probe_s": 0.1, **kwargs}
    return Uploader(spool, cfg, on_event=lambda n, d: events.append((n, d)), **options)


def _named(events: Events, name: str) -> list[dict[str, Any]]:
    return [d for n, d in events if n == name]


def _window(start: timedelta, length: timedelta, reason: str) -> dict[str, str]:
    begin = datetime.now(TZ) + start
    return {"start": begin.isoformat(), "end": (begin + length).isoformat(), "reason": reason}


# -- answers ------------------------------------------------------------------------------------


def test_a_split_that_does_not_add_up_is_retried_and_never_stored(central_sim: CentralSim, spool: Spool) -> None:
    central_sim.control(bad_split=True)
    append(spool, 3)
    append(spool, 1, card="FROZEN01")
    central_sim.control(freeze=["FROZEN01"])
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events)
        await up.start()
        # Central committed the batch and answered with parts that do not add up: garbage.
        await until(lambda: central_sim.injected["bad_split"] >= 6)
        assert up.link.state == "offline" and up.link.cause == "bad_answer"
        assert spool.stats().pending == 4 and not _named(events, "transaction.settled")
        assert "is not the record's total_fen 1250" in (up.link.last_error or "")
        central_sim.control(bad_split=False)  # central fixed: the next re-send gets `duplicate`, right
        await until(lambda: spool.stats().pending == 0)
        await up.stop()

    asyncio.run(main())
    assert_exactly_once(central_sim, spool)  # every local outcome is central's stored (good) one
    assert [d["seq"] for d in _named(events, "transaction.settled")] == [1, 2, 3]
    assert central_sim.records(TID)[0]["central_status"] == "accepted"


def test_extra_fields_from_central_never_reach_the_spool_or_events(central_sim: CentralSim, spool: Spool) -> None:
    central_sim.control(extra_fields=True, freeze=["FROZEN01"])
    append(spool, 2)
    append(spool, 1, card="FROZEN01")
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events)
        await up.start()
        await until(lambda: spool.stats().pending == 0)
        await up.stop()

    asyncio.run(main())
    assert central_sim.injected["extra_fields"] >= 3
    records = spool.records(after_seq=0, limit=10)
    assert [set(r.outcome or {}) for r in records] == [SETTLEMENT_KEYS, SETTLEMENT_KEYS, {"code", "message"}]
    for data in _named(events, "transaction.settled"):
        assert set(data["settlement"]) == SETTLEMENT_KEYS
    assert set(_named(events, "transaction.rejected")[0]["rejection"]) == {"code", "message"}
    assert "13800138000" not in repr(events) and "debug_trace" not in repr(events)
    assert_exactly_once(central_sim, spool)


# -- the cursor ---------------------------------------------------------------------------------


def test_a_forked_cursor_halts_and_resume_after_central_is_fixed_settles_the_backlog(
    central_sim: CentralSim, spool: Spool
) -> None:
    append(spool, 3)
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events)
        await up.start()
        await until(lambda: spool.stats().pending == 0)
        with pytest.raises(ConflictError) as nothing:
            await up.resume(operator="王工", reason="just checking")
        assert nothing.value.code == "not_halted"
        await up.stop()

        central_sim.control(fork_cursor=True)  # central's books now tell another history at seq 3
        append(spool, 4)
        up = _uploader(spool, central_sim.url, events)
        await up.start()
        await until(lambda: up.link.halted)
        [alarm] = up.link.alarms
        assert alarm["code"] == "chain_forked" and up.link.cause == "chain_forked"
        assert "terminald upstream resume --reason" in alarm["message"]
        assert "POST /v1/upstream/resume" in alarm["message"]

        # Resumed before the cause is fixed: the cursor is checked first, the same halt again.
        link = await up.resume(operator="王工", reason="try again")
        assert link["halted"] and [a["code"] for a in link["alarms"]] == ["chain_forked"]
        assert central_sim.requests["records"] == 1  # nothing was sent after the halt

        central_sim.control(fork_cursor=False)
        link = await up.resume(operator="王工", reason="central restored its books (ticket 4711)")
        assert not link["halted"] and link["alarms"] == []
        await until(lambda: spool.stats().pending == 0)
        assert up.link.state == "online"
        await up.stop()

    asyncio.run(main())
    assert_exactly_once(central_sim, spool)
    resumed = _named(events, "upstream.resumed")
    assert [(d["operator"], d["reason"], d["halt"]) for d in resumed] == [
        ("王工", "try again", ["chain_forked"]),
        ("王工", "central restored its books (ticket 4711)", ["chain_forked"]),
    ]
    halts = [d["alarm"]["code"] for d in _named(events, "upstream.offline") if "alarm" in d]
    assert halts == ["chain_forked", "chain_forked"]


def test_another_pc_with_our_terminal_id_is_a_fork_found_after_a_sequence_gap(
    central_sim: CentralSim, tmp_path: Path, spool: Spool
) -> None:
    """B synced while central was empty; A then uploaded; B's first batch meets a gap, and the
    cursor read after it names A's record at seq 3: another history, halt."""
    other = Spool.open(tmp_path / "other-pc.db", TID)
    events: Events = []

    async def main() -> None:
        b = _uploader(spool, central_sim.url, events)
        await b.start()
        await until(lambda: b.link.state == "online")
        append(other, 3)
        a = _uploader(other, central_sim.url, [])
        await a.start()
        await until(lambda: other.stats().pending == 0)
        await a.stop()
        append(spool, 5)
        b.wake()
        await until(lambda: b.link.halted)
        assert [x["code"] for x in b.link.alarms] == ["chain_forked"]
        await b.stop()

    try:
        asyncio.run(main())
        assert spool.stats().pending == 5
        assert [r["record_id"] for r in central_sim.records(TID)] == [
            r.record_id for r in other.records(after_seq=0, limit=10)
        ]
    finally:
        other.close()


def test_a_cursor_above_the_local_last_seq_halts(central_sim: CentralSim, tmp_path: Path, spool: Spool) -> None:
    """An old spool restored (or a fresh one): central holds records this terminal does not."""
    old = Spool.open(tmp_path / "before-restore.db", TID)
    append(old, 5)
    append(spool, 2)
    events: Events = []

    async def main() -> None:
        first = _uploader(old, central_sim.url, [])
        await first.start()
        await until(lambda: old.stats().pending == 0)
        await first.stop()
        up = _uploader(spool, central_sim.url, events)
        await up.start()
        await until(lambda: up.link.halted)
        assert [a["code"] for a in up.link.alarms] == ["cursor_ahead"]
        assert "seq 5" in up.link.alarms[0]["message"] and "seq 2" in up.link.alarms[0]["message"]
        await up.stop()

    try:
        asyncio.run(main())
    finally:
        old.close()
    assert spool.stats().pending == 2 and len(central_sim.records(TID)) == 5
    assert [d["alarm"]["code"] for d in _named(events, "upstream.offline") if "alarm" in d] == ["cursor_ahead"]


# -- downtime notices ---------------------------------------------------------------------------


def test_unsound_downtime_notices_are_ignored(central_sim: CentralSim, spool: Spool) -> None:
    hour, day = timedelta(hours=1), timedelta(days=1)
    central_sim.control(
        downtime=[
            _window(-hour, -2 * hour, "ends before it starts"),
            _window(-hour, 40 * day, "forty days"),
            _window(-3 * day, 2 * hour, "long over"),
        ]
    )
    append(spool, 3)
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events, notices_every_s=0.05)
        await up.start()
        await until(lambda: spool.stats().pending == 0)
        await until(lambda: central_sim.requests["notices"] >= 3)  # re-read: still ignored, alarm once
        [alarm] = up.link.alarms
        assert alarm["code"] == "downtime_notice_ignored" and "(and 1 more)" in alarm["message"]
        assert up.downtime_now() is None
        central_sim.control(downtime=[])
        await until(lambda: up.link.alarms == [])
        await up.stop()

    asyncio.run(main())
    assert not [d for d in _named(events, "upstream.offline") if d.get("planned")]
    assert outages(spool.path) == []
    assert_exactly_once(central_sim, spool)


def test_a_window_central_withdraws_ends_while_the_uploader_sits_in_it(
    central_sim: CentralSim, spool: Spool
) -> None:
    central_sim.control(downtime=[_window(-timedelta(hours=1), timedelta(days=10), "误发的停机通知")])
    append(spool, 4)
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events, notices_every_s=0.05)
        await up.start()
        await until(lambda: up.link.state == "planned_downtime")
        reads = central_sim.requests["notices"]
        await until(lambda: central_sim.requests["notices"] >= reads + 2)  # re-read inside the window
        assert central_sim.requests["records"] == 0 and spool.stats().pending == 4
        assert up.link.state == "planned_downtime"
        central_sim.control(downtime=[])  # central withdraws it
        await until(lambda: spool.stats().pending == 0)
        assert up.link.state == "online" and up.downtime_now() is None
        await up.stop()

    asyncio.run(main())
    assert_exactly_once(central_sim, spool)
    rows = outages(spool.path)
    assert len(rows) == 1 and rows[0]["planned"] and rows[0]["ended_at"] is not None


def test_staff_clear_a_window_central_keeps_announcing(central_sim: CentralSim, spool: Spool) -> None:
    window = _window(-timedelta(hours=1), timedelta(hours=5), "切换国家医保信息平台")
    central_sim.control(downtime=[window])
    append(spool, 2)
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, central_sim.url, events, notices_every_s=0.05)
        await up.start()
        await until(lambda: up.link.state == "planned_downtime")
        with pytest.raises(ConflictError):
            await up.resume(operator="it", reason="nothing to clear", clear_downtime=False)
        await up.resume(operator="it", reason="医保局电话确认已恢复", clear_downtime=True)
        await until(lambda: spool.stats().pending == 0)
        reads = central_sim.requests["notices"]
        await until(lambda: central_sim.requests["notices"] >= reads + 2)  # still announced: still cleared
        assert up.downtime_now() is None and up.link.state == "online"
        await up.stop()
        # A restart remembers what staff cleared.
        again = _uploader(spool, central_sim.url, [])
        assert again.downtime_now() is None
        await again.stop()

    asyncio.run(main())
    [resumed] = _named(events, "upstream.resumed")
    assert resumed["halt"] == [] and resumed["cleared_downtime"][0]["reason"] == window["reason"]
    assert_exactly_once(central_sim, spool)


def test_an_unreadable_token_file_halts_until_fixed_and_resumed(tmp_path: Path, spool: Spool) -> None:
    sim = CentralSim(tmp_path / "c.db", token="s3cret")
    sim.start()
    token = tmp_path / "token"
    append(spool, 2)
    events: Events = []

    async def main() -> None:
        up = _uploader(spool, sim.url, events, cfg={"upstream": {"token_file": str(token)}})
        await up.start()
        await until(lambda: up.link.halted)
        assert [a["code"] for a in up.link.alarms] == ["upstream_config"]
        link = await up.resume(operator="it", reason="token not there yet")
        assert link["halted"]
        token.write_text("s3cret\n")
        link = await up.resume(operator="it", reason="token file restored")
        assert not link["halted"]
        await until(lambda: spool.stats().pending == 0)
        await up.stop()

    try:
        asyncio.run(main())
        assert_exactly_once(sim, spool)
    finally:
        sim.stop()
