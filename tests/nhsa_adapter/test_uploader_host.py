"""The nhsa adapter under the real uploader: staff's resume, the idle probe, stop, acknowledgement."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from terminald.upload.errors import Unreachable
from terminald.upload.uploader import Uploader
from terminald.upstream.nhsa.adapter import PROBE_QUIET_S, REVERSAL_REFUSED
from tests.nhsa_adapter.helpers import Bench, card_of, run, sale, until


def _uploader(bench: Bench, events: list[tuple[str, dict[str, Any]]], **tuning: Any) -> Uploader:
    return Uploader(bench.spool, bench.cfg, on_event=lambda n, d: events.append((n, d)),
                    retry_base_s=0.1, retry_cap_s=0.5, **tuning)


def test_staff_resume_clears_a_refused_reversal_without_a_restart(bench: Bench) -> None:
    record = sale(bench.spool, card_of(bench.sim.person("A10000123")))
    bench.sim.control(fault_infnos=["2102"], next={"drop_after_commit": 1})
    bench.sim.control(refuse={"infno": ["2601"], "message": "该交易不允许冲正"})
    events: list[tuple[str, dict[str, Any]]] = []

    async def go() -> None:
        up = _uploader(bench, events, idle_probe_s=0.2)
        await up.start()
        try:
            await until(lambda: any(a["code"] == REVERSAL_REFUSED for a in up.link.alarms), 10, "the alarm")
            assert not up.link.halted
            bench.sim.control(refuse={})  # the office checked its books and takes the reversal now
            link = await up.resume(operator="staff", reason="checked with the office")
            assert REVERSAL_REFUSED not in [a["code"] for a in link["alarms"]]
            await until(lambda: bench.record(record).status == "settled", 10, "the sale settled")
        finally:
            await up.stop()

    run(go)
    [resumed] = [d for n, d in events if n == "upstream.resumed"]
    assert resumed["halt"] == [REVERSAL_REFUSED] and resumed["operator"] == "staff"
    assert [c["infcode"] for c in bench.sim.calls("2601")] == [-1, 0]
    bench.check_money()


def test_the_idle_probe_makes_no_call_while_the_gateway_answered_lately(bench: Bench) -> None:
    events: list[tuple[str, dict[str, Any]]] = []

    async def go() -> None:
        up = _uploader(bench, events, idle_probe_s=0.1)
        await up.start()
        try:
            await asyncio.sleep(1.5)  # about 15 idle probes
        finally:
            await up.stop()

    run(go)
    assert len(bench.sim.calls("9001")) == 1  # the start's sign-in only

    async def quiet_too_long() -> None:
        async with bench.opened() as adapter:
            await adapter.probe()  # never signed in: a sign-in
            await adapter.probe()  # answered just now: nothing
            adapter.client.last_definite = time.monotonic() - PROBE_QUIET_S - 1
            await adapter.probe()  # nothing for too long: a sign-in proves the gateway

    run(quiet_too_long)
    assert len(bench.sim.calls("9001")) == 3


def test_the_idle_probe_sees_the_gateway_go_away_while_signed_in(bench: Bench) -> None:
    """Signed in and answered lately, the probe sends no business call, yet a gateway that went
    away is noticed (the link goes offline while the counter is idle), and one that is back too."""

    async def go() -> None:
        async with bench.opened() as adapter:
            await adapter.probe()  # the sign-in
            bench.sim.control(down=True)
            with pytest.raises(Unreachable):
                await adapter.probe()
            bench.sim.control(down=False)
            await adapter.probe()

    run(go)
    assert len(bench.sim.calls("9001")) == 1
    assert len(bench.sim.calls()) == 1  # the reachability checks are no calls at the platform


def test_no_call_is_started_once_the_daemon_stops(tmp_path: Any, nhsa_sim: Any) -> None:
    bench = Bench(tmp_path, nhsa_sim, concurrency=1)
    records = [sale(bench.spool, card_of(nhsa_sim.person(p))) for p in ("A10000123", "D40000321", "B20000456")]

    def stop_now(result: Any) -> None:
        bench.host.stopping = True  # stop() came while the first sale was being settled

    bench.host.fail_apply = stop_now

    async def go() -> None:
        async with bench.opened() as adapter:
            assert await adapter.upload() == 1

    try:
        run(go)
        assert [bench.record(r).status for r in records] == ["settled", "pending", "pending"]
        assert len(nhsa_sim.calls("2102")) == 1
    finally:
        bench.close()

    async def flag() -> None:
        up = Uploader(bench.spool, bench.cfg, on_event=lambda n, d: None)
        assert up.stopping is False
        await up.stop()
        assert up.stopping is True

    bench.spool = type(bench.spool).open(tmp_path / "spool.db", "T0001", background_check=False)
    try:
        run(flag)
    finally:
        bench.close()


def test_the_uploader_acknowledges_nothing_for_nhsa(bench: Bench) -> None:
    """acked_seq is v1's (central's cursor); nhsa decides out of seq order and acks nothing."""
    records = [sale(bench.spool, card_of(bench.sim.person(p))) for p in ("A10000123", "D40000321")]
    events: list[tuple[str, dict[str, Any]]] = []
    acked: list[int] = []

    async def go() -> None:
        up = _uploader(bench, events, idle_probe_s=0.2)
        await up.start()
        try:
            await until(lambda: all(bench.record(r).status == "settled" for r in records), 10, "settled")
            acked.append(up.state.acked_seq)
        finally:
            await up.stop()

    run(go)
    assert acked == [0]
