"""Every fault at once, on every transaction (seeded dice), over a backlog of sales and revokes
of many persons: after recovery the platform holds each accepted sale exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from spool import Record
from terminald.sim.nhsa import NhsaSim
from terminald.upload.errors import Transient
from tests.nhsa_adapter.helpers import Bench, card_of, revoke, run, sale

RATES = {"drop_after_commit_rate": 0.15, "garbage_rate": 0.05, "reset_rate": 0.05, "error_rate": 0.05,
         "busy_rate": 0.05, "gateway_timeout_rate": 0.05}


@pytest.fixture
def crowd(tmp_path: Path) -> Iterator[NhsaSim]:
    sim = NhsaSim(tmp_path / "crowd.db", synthetic_persons=10)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def test_a_backlog_through_every_fault_settles_exactly_once(tmp_path: Path, crowd: NhsaSim) -> None:
    bench = Bench(tmp_path, crowd, concurrency=4)
    people = [crowd.person(f"S{i:08d}") for i in range(1, 11)] + [crowd.person("F60000987")]  # one frozen
    sales: list[Record] = []
    for n in range(40):
        person = people[n % len(people)]
        sales.append(sale(bench.spool, card_of(person), when=f"2026-11-{1 + n % 20:02d}T09:{n % 60:02d}:00+08:00",
                          items=[("XA01", "阿莫西林胶囊", 1 + n % 3, 990 + n)]))
    crowd.control(seed=14, **RATES)

    async def go() -> None:
        adapter = bench.adapter()
        synced = False
        revoked = False
        try:
            for _ in range(2000):
                try:
                    if not synced:
                        await adapter.sync()
                        synced = True
                    if await adapter.upload() == 0:
                        if not revoked:
                            # Revoke every fifth sale the platform accepted, through the same storm.
                            for record in sales[::5]:
                                if bench.record(record).status == "settled":
                                    revoke(bench.spool, bench.record(record))
                            revoked = True
                            crowd.control(sign_in_expiry=True)
                            continue
                        return
                except Transient:
                    continue  # the uploader backs off here; the test just goes on
            raise AssertionError("the storm never ended")
        finally:
            await adapter.aclose()

    try:
        run(go)
        records = bench.spool.records(after_seq=0, limit=1000)
        assert all(r.status in ("settled", "rejected") for r in records)
        frozen = {r.record_id for r in sales if r.payload["card"]["card_number"] == "F60000987"}
        assert {r.record_id for r in records if r.status == "rejected"} == frozen
        injected = crowd.state()["injected"]
        assert injected.get("drop_after_commit", 0) >= 3 and sum(injected.values()) > 10  # the storm did happen
        bench.check_money()
        assert len(crowd.standing_revokes()) == sum(1 for r in records if r.kind == "revoke")
    finally:
        bench.close()
