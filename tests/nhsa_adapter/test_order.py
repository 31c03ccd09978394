"""Each person's records in seq order, one at a time; several persons at once."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from terminald.sim.nhsa import NhsaSim
from terminald.upload.errors import Transient
from tests.nhsa_adapter.helpers import Bench, Tap, card_of, drain, revoke, run, sale, sale_id

PERSONS = 6
SALES_EACH = 4


@pytest.fixture
def many(tmp_path: Path) -> Iterator[NhsaSim]:
    sim = NhsaSim(tmp_path / "many.db", synthetic_persons=PERSONS)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


class Gauge:
    """Counts the 2102s in flight, overall and per person. The first `concurrency` calls are held
    until that many are in flight together: proof that the lanes run at once, without a sleep."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.inflight: dict[str, int] = defaultdict(int)
        self.most = 0
        self.all_in = asyncio.Event()

    async def before(self, envelope: dict[str, Any]) -> None:
        if envelope["infno"] != "2102":
            return
        psn_no = envelope["input"]["data"]["psn_no"]
        self.inflight[psn_no] += 1
        assert self.inflight[psn_no] == 1, "two calls of one person at once"
        self.most = max(self.most, sum(self.inflight.values()))
        if self.most >= self.concurrency:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), 10)

    def after(self, envelope: dict[str, Any]) -> None:
        if envelope["infno"] == "2102":
            self.inflight[envelope["input"]["data"]["psn_no"]] -= 1


def test_persons_settle_concurrently_each_in_seq_order(tmp_path: Path, many: NhsaSim) -> None:
    bench = Bench(tmp_path, many, concurrency=4)
    people = [many.person(f"S{i:08d}") for i in range(1, PERSONS + 1)]
    records = []
    for round_ in range(SALES_EACH):  # interleaved: person 1, 2, …, 6, then 1, 2, … again
        for index, person in enumerate(people):
            records.append(sale(bench.spool, card_of(person), when=f"2026-11-{10 + round_:02d}T1{index}:00:00+08:00",
                                items=[("XA01", "阿莫西林胶囊", round_ + 1, 1000 + index)]))
    gauge = Gauge(4)

    with bench:
        assert bench.drain(Tap(before=gauge.before, after=gauge.after)) == PERSONS * SALES_EACH
        assert gauge.most == 4
        seq_of = {sale_id(r): r.seq for r in records}
        by_person: dict[str, list[int]] = defaultdict(list)
        for held in sorted(many.standing_settlements(), key=lambda s: s["call_id"]):
            by_person[held["psn_no"]].append(seq_of[held["sale_id"]])
        assert len(by_person) == PERSONS
        assert all(seqs == sorted(seqs) and len(seqs) == SALES_EACH for seqs in by_person.values())
        assert all(bench.record(r).status == "settled" for r in records)
        bench.check_money()


def test_a_transient_stops_new_records_but_lets_the_running_ones_finish(tmp_path: Path, many: NhsaSim) -> None:
    bench = Bench(tmp_path, many, concurrency=2)
    first, second = many.person("S00000001"), many.person("S00000002")
    a1 = sale(bench.spool, card_of(first))
    b1 = sale(bench.spool, card_of(second))
    a2 = sale(bench.spool, card_of(first))
    b2 = sale(bench.spool, card_of(second))
    busy_sent = asyncio.Event()

    async def before(envelope: dict[str, Any]) -> None:
        # b1's 2102 waits until a1's 2102 was answered busy: the lane of b1 is mid-record then.
        if envelope["infno"] == "2102" and envelope["input"]["data"]["psn_no"] == second.psn_no:
            await asyncio.wait_for(busy_sent.wait(), 10)

    def after(envelope: dict[str, Any]) -> None:
        if envelope["infno"] == "2102" and envelope["input"]["data"]["psn_no"] == first.psn_no:
            busy_sent.set()

    many.control(refuse={"infno": ["2102"], "persons": [first.card_number], "message": "系统繁忙，请稍后再试"})

    async def go() -> None:
        async with bench.opened(Tap(before=before, after=after)) as adapter:
            with pytest.raises(Transient):
                await adapter.upload()
            # b1 was under way: it finished; nobody started a second record.
            assert [bench.record(r).status for r in (a1, b1, a2, b2)] == ["pending", "settled", "pending", "pending"]
            many.control(refuse={})
            assert await drain(adapter) == 3

    with bench:
        run(go)
        bench.check_money()


def test_records_of_a_person_wait_behind_one_that_waits_for_its_patient(bench: Bench) -> None:
    zhang, zhao = bench.sim.person("A10000123"), bench.sim.person("D40000321")
    away = sale(bench.spool, card_of(zhang))
    later = sale(bench.spool, card_of(zhang))
    other = sale(bench.spool, card_of(zhao))
    cancel = revoke(bench.spool, other)
    bench.host.waiting = {away.record_id}

    async def go() -> None:
        async with bench.opened() as adapter:
            assert await adapter.upload() == 2  # zhao's sale and its revoke; zhang's wait
            assert bench.record(later).status == "pending"
            bench.host.waiting = set()
            assert await drain(adapter) == 2

    run(go)
    assert bench.record(cancel).status == "settled"
    held = sorted(bench.sim.standing_settlements(), key=lambda s: s["call_id"])
    assert [h["sale_id"] for h in held if h["psn_no"] == zhang.psn_no] == [sale_id(away), sale_id(later)]
    bench.check_money()
