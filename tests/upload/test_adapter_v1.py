"""The uploader drives protocol v1 through its adapter: the name table, and the host's `eligible`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from spool import Record, Spool
from terminald.errors import ConfigError
from terminald.reports import ReportHost
from terminald.sim.central import CentralSim
from terminald.upload.uploader import Uploader
from terminald.upstream.adapters import adapter_for
from terminald.upstream.v1 import V1Adapter
from tests.upload.helpers import TID, append, assert_exactly_once, make_config, until


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    s = Spool.open(tmp_path / "spool.db", TID)
    yield s
    s.close()


def test_v1_is_the_adapter_of_protocol_v1(spool: Spool) -> None:
    cfg = make_config(spool.path, "http://central.test")
    adapter = adapter_for("v1", ReportHost(spool, cfg))
    assert isinstance(adapter, V1Adapter)
    asyncio.run(adapter.aclose())
    with pytest.raises(ConfigError):
        adapter_for("v0", ReportHost(spool, cfg))


def test_only_a_prefix_of_eligible_records_is_sent(central_sim: CentralSim, spool: Spool) -> None:
    records = append(spool, 5)
    held = {records[2].record_id}

    def eligible(record: Record) -> bool:
        return record.record_id not in held

    async def main() -> None:
        cfg = make_config(spool.path, central_sim.url)
        up = Uploader(spool, cfg, on_event=lambda n, d: None, retry_base_s=0.01, retry_cap_s=0.1,
                      idle_probe_s=0.1, eligible=eligible)
        await up.start()
        await until(lambda: spool.stats().pending == 3)
        await asyncio.sleep(0.3)  # a few idle rounds: the held record and those after it stay
        assert spool.stats().pending == 3 and up.link.state == "online"
        held.clear()
        up.wake()
        await until(lambda: spool.stats().pending == 0)
        await up.stop()

    asyncio.run(main())
    assert_exactly_once(central_sim, spool)  # no gap, no record sent twice
