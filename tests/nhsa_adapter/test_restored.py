"""A spool rebuilt from the mirror (`terminald spool restore --from-mirror`) lost the call log
that says whether its pending records reached the platform before the old disk died. With no
idempotency key at the platform, re-sending them could settle a sale twice: they are held
(alarm `nhsa_restored_unverified`), each with its person's later records, while everyone else
goes on, until staff have checked with the platform and resumed; then each is settled once."""

from __future__ import annotations

from spool.restored import mark_in
from terminald.sim.nhsa import NhsaSim
from terminald.upstream.nhsa.adapter import RESTORED_UNVERIFIED
from tests.nhsa_adapter.helpers import Bench, card_of, drain, run, sale


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

            assert RESTORED_UNVERIFIED in adapter.resume()  # staff checked with the platform
            assert RESTORED_UNVERIFIED not in bench.host.alarms and bench.spool.restored_from() is None
            assert await drain(adapter) == 3

    run(go)
    assert [bench.record(r).status for r in (*restored, later, fresh)] == ["settled"] * 4
    assert len(nhsa_sim.calls("2102")) == 4  # each once
    bench.check_money()
    # A new adapter (a restart) finds nothing held any more.
    assert bench.drain(sync=True) == 0 and RESTORED_UNVERIFIED not in bench.host.alarms
