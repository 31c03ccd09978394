"""Traffic through every fault central can throw; afterwards central holds exactly the local spool."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from spool import Spool
from terminald.sim.central import CentralSim
from terminald.upload.uploader import Uploader
from tests.upload.helpers import append, assert_exactly_once, make_config, until

FAULTS: dict[str, tuple[dict[str, Any], str]] = {
    "5xx": ({"error_rate": 0.4}, "error"),
    "reset": ({"reset_rate": 0.4}, "reset"),
    "commit_then_drop": ({"drop_after_commit_rate": 0.5}, "drop_after_commit"),
    "garbage": ({"garbage_rate": 0.4}, "garbage"),
    "429": ({"throttle_rate": 0.3, "retry_after_s": 0}, "throttle"),
}


def _run_traffic(
    sim: CentralSim,
    spool: Spool,
    tmp_path: Path,
    fault: dict[str, Any],
    *,
    timeout_s: float = 2,
    chunks: int = 6,
    per_chunk: int = 40,
) -> list[tuple[str, dict[str, Any]]]:
    events: list[tuple[str, dict[str, Any]]] = []
    cfg = make_config(spool.path, sim.url, upstream={"timeout_s": timeout_s})

    async def main() -> None:
        uploader = Uploader(
            spool,
            cfg,
            on_event=lambda n, d: events.append((n, d)),
            retry_base_s=0.01,
            retry_cap_s=0.2,
            idle_probe_s=0.2,
        )
        await uploader.start()
        sim.control(seed=7, **fault)
        for _ in range(chunks):
            append(spool, per_chunk)
            uploader.wake()
            await asyncio.sleep(0.05)
        await until(lambda: sim.injected.total() >= 3, timeout=30)
        sim.control(**{k: 0 for k in fault if k != "retry_after_s"})
        await until(lambda: spool.stats().pending == 0, timeout=30)
        await uploader.stop()

    asyncio.run(main())
    return events


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_fault_then_exactly_once(name: str, central_sim: CentralSim, tmp_path: Path) -> None:
    fault, counter = FAULTS[name]
    spool = Spool.open(tmp_path / "spool.db", "T0001")
    try:
        events = _run_traffic(central_sim, spool, tmp_path, fault)
        assert central_sim.injected[counter] >= 3, central_sim.injected
        assert_exactly_once(central_sim, spool)
        settled = [d for n, d in events if n == "transaction.settled"]
        assert len(settled) == 240
        assert {d["seq"] for d in settled} == set(range(1, 241))
        assert all("张三丰" not in str(d) and "110101199003071234" not in str(d) for d in settled)
    finally:
        spool.close()


def test_latency_beyond_timeout_is_an_ambiguous_outcome_settled_by_resending(
    central_sim: CentralSim, tmp_path: Path
) -> None:
    # Central sleeps longer than the client waits, then commits anyway: the terminal sees a timeout.
    spool = Spool.open(tmp_path / "spool.db", "T0001")
    try:
        events = _run_traffic(central_sim, spool, tmp_path, {"latency_ms": 400.0}, timeout_s=0.25, chunks=2)
        assert_exactly_once(central_sim, spool)
        offline = [d for n, d in events if n == "upstream.offline"]
        assert offline and offline[0]["cause"] == "timeout"
        assert any(n == "upstream.online" for n, _ in events)
    finally:
        spool.close()


def test_down_refuses_connections_then_recovers(central_sim: CentralSim, tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool.db", "T0001")
    events: list[tuple[str, dict[str, Any]]] = []
    cfg = make_config(spool.path, central_sim.url)

    async def main() -> None:
        uploader = Uploader(
            spool,
            cfg,
            on_event=lambda n, d: events.append((n, d)),
            retry_base_s=0.01,
            retry_cap_s=0.1,
            idle_probe_s=0.1,
        )
        await uploader.start()
        append(spool, 30)
        uploader.wake()
        await until(lambda: spool.stats().pending == 0)
        assert uploader.offline_reason() is None
        central_sim.control(down=True)
        append(spool, 70)
        uploader.wake()
        await until(lambda: uploader.link.state == "offline")
        assert uploader.link.cause == "connect_failed"
        assert uploader.offline_reason() == "upstream_unreachable"
        assert spool.stats().pending == 70
        central_sim.control(down=False)
        await until(lambda: spool.stats().pending == 0)
        assert uploader.link.state == "online"
        await uploader.stop()

    try:
        asyncio.run(main())
        assert_exactly_once(central_sim, spool)
        names = [n for n, _ in events if n.startswith("upstream.")]
        assert names == ["upstream.online", "upstream.offline", "upstream.online"]
    finally:
        spool.close()


def test_all_faults_at_once(central_sim: CentralSim, tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool.db", "T0001")
    fault = {
        "error_rate": 0.1,
        "reset_rate": 0.1,
        "drop_after_commit_rate": 0.15,
        "garbage_rate": 0.1,
        "throttle_rate": 0.1,
        "retry_after_s": 0,
        "latency_ms": 5.0,
    }
    try:
        _run_traffic(central_sim, spool, tmp_path, fault, chunks=10, per_chunk=25)
        assert_exactly_once(central_sim, spool)
    finally:
        spool.close()


def test_control_over_http_and_down_for_a_while(central_sim: CentralSim) -> None:
    def health() -> str:
        try:
            return str(httpx.get(f"{central_sim.url}/v1/health", timeout=1).status_code)
        except httpx.ConnectError:
            return "refused"

    with httpx.Client(base_url=central_sim.url) as http:
        state = http.post("/_control", json={"down_for_s": 0.5}).json()
        assert state["faults"]["down"] is True
        seen = [health()]
        while seen[-1] != "200" or "refused" not in seen:
            assert len(seen) < 200, seen
            time.sleep(0.01)
            seen.append(health())
        bad = http.post("/_control", json={"no_such_fault": 1})
        assert bad.status_code == 400 and "no_such_fault" in bad.json()["message"]
