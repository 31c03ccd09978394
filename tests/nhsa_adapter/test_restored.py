"""A spool rebuilt from the mirror (`terminald spool restore --from-mirror`) lost the call log
that says whether its pending records reached the platform before the old disk died. With no
idempotency key at the platform, re-sending them could settle a sale twice: they are held
(alarm `nhsa_restored_unverified`), each with its person's later records, while everyone else
goes on, until staff have checked with the platform and resumed saying so (`restored_checked`:
a resume for anything else leaves them held); then each is settled once."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from spool.restored import RestoredFrom, mark_in
from terminald.errors import ConflictError
from terminald.sim.nhsa import NhsaSim
from terminald.upload.uploader import Uploader
from terminald.upstream.nhsa.adapter import RESTORED_UNVERIFIED, REVERSAL_REFUSED
from tests.nhsa_adapter.helpers import Bench, card_of, drain, run, sale, until


def test_restored_pending_records_wait_for_staff_then_settle_once(bench: Bench, nhsa_sim: NhsaSim) -> None:
    zhang, zhao, qian = nhsa_sim.person("A10000123"), nhsa_sim.person("D40000321"), nhsa_sim.person("B20000456")
    restored = [sale(bench.spool, card_of(zhang)), sale(bench.spool, card_of(zhao))]
    # As the restore leaves the file: every record up to seq 2 came from the mirror, 2 pending.
    bench.spool.write(lambda conn: mark_in(conn, "mirror", 2, 2))
    later = sale(bench.spool, card_of(zhao))  # sold after the restore: behind zhao's restored one
    fresh = sale(bench.spool, card_of(qian))  # another person: nothing holds it

    async def go() -> None:
        async with bench.opened() as adapter:
            await adapter.sync()
            assert await drain(adapter) == 1
            assert [c["request"]["input"]["data"]["psn_no"] for c in nhsa_sim.calls("2102")] == [qian.psn_no]
            assert RESTORED_UNVERIFIED in bench.host.alarms
            assert "2 pending record(s) up to seq 2" in bench.host.alarms[RESTORED_UNVERIFIED]
            assert await adapter.upload() == 0  # still held, round after round
            assert bench.spool.restored_from() is not None
            assert "terminald upstream resume --restored-checked" in bench.host.alarms[RESTORED_UNVERIFIED]

            # A resume that does not say the restored records were checked leaves them held.
            assert adapter.resume() == [] and adapter.still_held() == [RESTORED_UNVERIFIED]
            assert RESTORED_UNVERIFIED in bench.host.alarms and bench.spool.restored_from() is not None
            assert await drain(adapter) == 0
            assert len(nhsa_sim.calls("2102")) == 1

            assert adapter.resume(restored_checked=True) == [RESTORED_UNVERIFIED]  # staff checked
            assert adapter.still_held() == []
            assert RESTORED_UNVERIFIED not in bench.host.alarms and bench.spool.restored_from() is None
            assert await drain(adapter) == 3

    run(go)
    assert [bench.record(r).status for r in (*restored, later, fresh)] == ["settled"] * 4
    assert len(nhsa_sim.calls("2102")) == 4  # each once
    bench.check_money()
    # A new adapter (a restart) finds nothing held any more.
    assert bench.drain(sync=True) == 0 and RESTORED_UNVERIFIED not in bench.host.alarms


def test_a_resume_for_another_reason_keeps_the_restored_records_held(bench: Bench, nhsa_sim: NhsaSim) -> None:
    """Under the real uploader: staff resume to let one patient go on after a refused reversal;
    the restored records stay held (and the answer says so); with nothing else to resume, a
    resume without restored_checked is refused, naming the hold and how to release it."""
    zhang, zhao = nhsa_sim.person("A10000123"), nhsa_sim.person("D40000321")
    restored = sale(bench.spool, card_of(zhang))
    bench.spool.write(lambda conn: mark_in(conn, "mirror", 1, 1))
    other = sale(bench.spool, card_of(zhao))  # after the restore: its 2102 gets no answer
    nhsa_sim.control(fault_infnos=["2102"], next={"drop_after_commit": 1})
    nhsa_sim.control(refuse={"infno": ["2601"], "message": "该交易不允许冲正"})
    events: list[tuple[str, dict[str, Any]]] = []

    def codes(up: Uploader) -> set[str]:
        return {a["code"] for a in up.link.alarms}

    async def go() -> None:
        up = Uploader(bench.spool, bench.cfg, on_event=lambda n, d: events.append((n, d)), retry_base_s=0.1,
                      retry_cap_s=0.5, idle_probe_s=0.2)
        await up.start()
        try:
            await until(lambda: {REVERSAL_REFUSED, RESTORED_UNVERIFIED} <= codes(up), 15, "both alarms")
            nhsa_sim.control(refuse={})  # the office takes zhao's reversal now
            link = await up.resume(operator="staff", reason="zhao's reversal checked with the office")
            assert link["still_held"] == [RESTORED_UNVERIFIED]
            assert RESTORED_UNVERIFIED in [a["code"] for a in link["alarms"]]
            assert REVERSAL_REFUSED not in [a["code"] for a in link["alarms"]]
            await until(lambda: bench.record(other).status == "settled", 15, "zhao's sale settled")
            assert bench.record(restored).status == "pending" and bench.spool.restored_from() is not None

            with pytest.raises(ConflictError) as refused:
                await up.resume(operator="staff", reason="just resume")
            assert refused.value.code == "not_halted"
            assert refused.value.extra == {"still_held": [RESTORED_UNVERIFIED]}
            assert "--restored-checked" in refused.value.detail
            assert RESTORED_UNVERIFIED in codes(up) and bench.spool.restored_from() is not None

            link = await up.resume(operator="staff", reason="checked with the platform", restored_checked=True)
            assert link["still_held"] == [] and RESTORED_UNVERIFIED not in [a["code"] for a in link["alarms"]]
            await until(lambda: bench.record(restored).status == "settled", 15, "the restored sale settled")
            with pytest.raises(ConflictError, match="no records restored from the mirror are held"):
                await up.resume(operator="staff", reason="again", restored_checked=True)
        finally:
            await up.stop()

    run(go)
    assert bench.spool.restored_from() is None
    assert [d["halt"] for n, d in events if n == "upstream.resumed"] == [[REVERSAL_REFUSED], [RESTORED_UNVERIFIED]]
    assert [c["request"]["input"]["data"]["psn_no"] for c in nhsa_sim.calls("2102")].count(zhang.psn_no) == 1
    bench.check_money()


def test_the_hold_is_said_from_what_the_round_read_off_the_event_loop(
    bench: Bench, nhsa_sim: NhsaSim, monkeypatch: pytest.MonkeyPatch,
) -> None:
    sale(bench.spool, card_of(nhsa_sim.person("A10000123")))
    bench.spool.write(lambda conn: mark_in(conn, "mirror", 1, 1))
    read = bench.spool.restored_from
    readers: list[str] = []

    def restored_from() -> RestoredFrom | None:
        readers.append(threading.current_thread().name)
        return read()

    monkeypatch.setattr(bench.spool, "restored_from", restored_from)

    async def go() -> None:
        async with bench.opened() as adapter:
            await adapter.sync()
            loop_thread = threading.current_thread().name
            readers.clear()
            assert await drain(adapter) == 0
            assert RESTORED_UNVERIFIED in bench.host.alarms
            assert readers and loop_thread not in readers  # only `_pending`'s thread read the marker

            # A round that read the marker before staff acknowledged it says nothing afterwards.
            bench.host.clear_alarm(RESTORED_UNVERIFIED)
            await asyncio.to_thread(adapter._pending)
            assert adapter.resume(restored_checked=True) == [RESTORED_UNVERIFIED]
            adapter._say_restored_held()
            assert RESTORED_UNVERIFIED not in bench.host.alarms

    run(go)
