"""Every fault of the platform simulator, through the real daemon (issue #14, "Tests").

For each fault: sales settled online before it; during it, sales of several persons (the POS
is told "pending": outage sales, with business times of the day before) and revokes (of a sale
settled online, of an outage sale); the fault ends; the backlog drains by itself; one more sale
settles online. Then the platform's books must be the spool's (helpers.check_books): exactly one
standing settlement per settled sale with the sale's business time and the spool's split, one
standing revoke per settled revoke, each person's in seq order, the refused ones rejected with
the platform's message (masked), every unknown outcome reversed.

The POS calls the API as it does at the counter: default parameters, no `wait`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from terminald.sim.nhsa import NhsaSim
from tests.fixtures.daemon import DaemonProcess
from tests.nhsa_e2e.helpers import (
    TZ,
    Pos,
    SimTap,
    assert_calllog_closed,
    check_books,
    link_state,
    nhsa_config,
    transactions,
    wait_drained,
)
from tests.waiting import wait_for

# Persons of the simulator (persons.toml and the emulated cards).
A, B, C, D, G = "A10000123", "B20000456", "C30000789", "D40000321", "G70000135"  # B: resident, no account
W = "31011519850612203X"  # no card, 120.50 in the account
FROZEN, NOT_INSURED = "F60000987", "110101199003071022"
# A refusal whose text quotes the person (name and ID number): the daemon must mask both.
REFUSAL = "身份证号650102197511200057的人员（阿卜杜热合曼·买买提明·阿卜杜）参保状态异常，不予结算"
MONEY = ["2102", "2103"]


@dataclass(frozen=True)
class Fault:
    on: tuple[dict[str, Any], ...]  # control() calls that start it
    off: tuple[dict[str, Any], ...] = ()  # control() calls that end it
    proof: str = ""  # the simulator's `injected` counter that shows it happened
    trigger: str = ""  # start it when the next call of this infno reaches the platform
    timeout_s: float = 2.0  # the daemon's upstream.timeout_s
    meanwhile: tuple[dict[str, Any], ...] = ()  # control() calls after the outage sales
    hits: int = 0  # it stays on until the simulator applied it this many times (retries meet it too)


FAULTS = {
    "down": Fault(on=({"down": True},), off=({"down": False},)),
    # The platform turns slow as a 2102 arrives: that 2102 commits after the daemon gave up on it.
    "latency": Fault(on=({"latency_ms": 1500.0},), off=({"latency_ms": 0.0},), proof="latency",
                     trigger="2102", timeout_s=1.0),
    "5xx": Fault(on=({"error_rate": 1.0},), off=({"error_rate": 0.0},), proof="error", hits=3),
    "reset": Fault(on=({"reset_rate": 1.0, "fault_infnos": [*MONEY, "2601"]},), off=({"reset_rate": 0.0},),
                   proof="reset", hits=3),
    "drop_after_commit": Fault(on=({"drop_after_commit_rate": 1.0, "fault_infnos": MONEY},),
                               off=({"drop_after_commit_rate": 0.0},), proof="drop_after_commit", hits=3),
    "garbage": Fault(on=({"garbage_rate": 1.0, "fault_infnos": [*MONEY, "2601"]},), off=({"garbage_rate": 0.0},),
                     proof="garbage", hits=3),
    "gateway_timeout": Fault(on=({"gateway_timeout_rate": 1.0, "fault_infnos": MONEY},),
                             off=({"gateway_timeout_rate": 0.0},), proof="gateway_timeout", hits=3),
    "busy": Fault(on=({"busy_rate": 1.0},), off=({"busy_rate": 0.0},), proof="busy", hits=3),
    # Business refusals while the platform is away: they meet the outage sales at re-entry.
    "refusals": Fault(on=({"refuse": {"infno": ["2102"], "persons": [C], "message": REFUSAL}}, {"down": True}),
                      off=({"down": False},), proof="refuse"),
    "sign_in_expiry": Fault(on=({"down": True},), meanwhile=({"sign_in_expiry": True},), off=({"down": False},),
                            proof="sign_in_expiry"),
}


def _start(sim: NhsaSim, tap: SimTap, fault: Fault) -> None:
    if not fault.trigger:
        for change in fault.on:
            sim.control(**change)
        return

    async def switch_on(s: NhsaSim) -> None:
        for change in fault.on:
            await s._control(change)  # in the simulator's loop: control() would wait on itself

    tap.on_next(fault.trigger, switch_on)


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault_then_recovery(name: str, nhsa_sim: NhsaSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    fault = FAULTS[name]
    sim = nhsa_sim
    tap = SimTap(sim)
    p = sim.person
    d = daemon_proc(config=nhsa_config(sim.url, timeout_s=fault.timeout_s, wait_s=2.0))
    api = d.client()
    wait_for(lambda: link_state(api) == "online", 20, "the daemon signed in")
    pos = Pos(api, name)

    # Online: settled (or refused) while the POS waits.
    a1, b1 = pos.sell(p(A), 2500), pos.sell(p(B), 1800)
    f0 = pos.sell(p(FROZEN), 990)
    assert [t["status"] for t in (a1, b1, f0)] == ["settled", "settled", "rejected"], (a1, b1, f0)
    assert f0["rejection"]["message"] == "参保人暂停参保（欠缴医保费），不能享受医保待遇"

    # The fault; the counter keeps selling. Business times of the evening before: the platform
    # must get those, not the time of re-entry.
    _start(sim, tap, fault)
    evening = datetime.now(TZ).replace(hour=19, minute=0, second=0, microsecond=0) - timedelta(days=1)
    rv_b1 = pos.revoke(b1)  # of a sale settled online (B has nothing else pending): the first to meet it
    during = []
    for i, (who, fen) in enumerate([(A, 3333), (C, 4210), (FROZEN, 1200), (NOT_INSURED, 800), (W, 9999),
                                    (A, 1250), (D, 777)]):
        when = evening + timedelta(minutes=7 * i, seconds=i)
        during.append(pos.sell(p(who), fen, business_time=when if i % 2 else when.astimezone(UTC)))
    a2, c1, f1, z1, w1, a3, d1 = during
    rv_c1 = pos.revoke(c1)  # of an outage sale: waits for it
    for change in fault.meanwhile:
        sim.control(**change)
    if fault.hits:
        wait_for(lambda: sim.state()["injected"].get(fault.proof, 0) >= fault.hits, 30, f"{name} applied {fault.hits}x")
    outage = [t for t in [*during, rv_b1, rv_c1] if t["status"] == "pending"]
    assert len(outage) >= 7 and all(t["offline"] for t in outage), [(t["status"], t["offline"]) for t in during]
    if fault.trigger:
        assert tap.count(fault.trigger) >= 1

    # Recovery: the backlog drains by itself.
    for change in fault.off:
        sim.control(**change)
    wait_drained(api, d, 60, f"the backlog drained after {name}")
    g1 = pos.sell(p(G), 1500)
    assert g1["status"] == "settled" and not g1["offline"], g1

    txs = transactions(api)
    counts = check_books(sim, txs, pos.persons)
    final = {t["id"]: t for t in txs}
    assert final[f1["id"]]["rejection"]["message"] == "参保人暂停参保（欠缴医保费），不能享受医保待遇"
    assert final[z1["id"]]["rejection"]["message"] == "参保人未参保，不能享受医保待遇"
    for t in (a1, a2, a3, w1, d1, g1):
        assert final[t["id"]]["status"] == "settled", final[t["id"]]
    assert final[rv_b1["id"]]["status"] == "settled"
    if name == "refusals":
        assert final[c1["id"]]["rejection"]["code"] == "nhsa_refused"
        assert p(C).certno not in final[c1["id"]]["rejection"]["message"]
        assert final[rv_c1["id"]]["rejection"]["code"] == "original_rejected"
    else:
        assert final[c1["id"]]["status"] == final[rv_c1["id"]]["status"] == "settled"
    if fault.proof:
        assert sim.state()["injected"].get(fault.proof, 0) > 0, sim.state()["injected"]
    _check_fault_effects(name, sim)
    assert_calllog_closed(d.state_dir / "spool.db")
    refused_c1 = name == "refusals"
    assert counts["settlement_settled"] == 8 - refused_c1 and counts["revoke_settled"] == 2 - refused_c1, counts


def _check_fault_effects(name: str, sim: NhsaSim) -> None:
    """What the fault must have made the daemon do at the platform."""
    calls = sim.calls()
    reversals = [c for c in calls if c["infno"] == "2601"]
    if name in ("latency", "drop_after_commit", "gateway_timeout", "garbage"):
        # A 2102 (or 2103) committed without a definite answer: reversed, then sent again.
        assert any(s["status"] == "reversed" for s in sim.settlements()) or any(
            r["status"] == "reversed" for r in sim.revokes()), "nothing was reversed"
        assert any(c["infcode"] == 0 for c in reversals)
    if name in ("reset", "drop_after_commit", "garbage", "gateway_timeout"):
        # The revoke of the sale settled online was the first record to meet the fault.
        assert any(c["infno"] == "2103" and name in c["fault"] for c in calls), "no 2103 met the fault"
    if name in ("reset", "5xx"):
        # Nothing was handled: a 2601 of a money call answers "nothing to reverse", or none was needed.
        assert all(s["status"] == "standing" for s in sim.settlements())
    if name == "sign_in_expiry":
        assert any(c["err_msg"] == "签到失效，请重新签到" for c in calls)
        assert len([c for c in calls if c["infno"] == "9001" and c["infcode"] == 0]) >= 2
