"""Reconciliation with 3201 through the real daemon and the CLI (issue #14, item 6).

A day at the counter against the platform simulator (sales settled online, a revoke, a sale the
platform refuses, an outage sale re-entered after recovery), then reconciled as an integrator
(`GET /v1/reconciliation?date=D`, default parameters) and as staff (`terminald reconcile --date
D`, beside the running daemon and with it stopped):

- the books agree: one 3201 per insurance type with the spool's figures, every one answered
  "balanced", the report says so;
- the platform's books differ (a sale settled there by another system; a 2102 whose answer was
  lost and whose reversal has not happened yet): the report says which insurance type does not
  balance and names the local records that can explain it;
- the platform is down: a clear error within upstream.timeout_s, exit code 1 for the CLI.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from terminald.sim.nhsa import NhsaSim
from tests.fixtures.daemon import DaemonProcess
from tests.nhsa_e2e.helpers import (
    FIXMEDINS_CODE,
    TZ,
    Pos,
    SimTap,
    calllog_rows,
    link_state,
    nhsa_config,
    transactions,
    wait_drained,
)
from tests.sim_nhsa.helpers import Caller, sale_data
from tests.waiting import wait_for

A, B, D, G = "A10000123", "B20000456", "D40000321", "G70000135"  # B: 390 (resident); the others 310
FROZEN = "F60000987"
TIMEOUT_S = 2.0


def _today() -> str:
    return datetime.now(TZ).date().isoformat()


def _day_of_sales(sim: NhsaSim, api: httpx.Client) -> tuple[Pos, dict[str, dict[str, Any]]]:
    """Online sales (one revoked), one the platform refuses, an outage sale re-entered after
    recovery. The transactions by name."""
    p = sim.person
    pos = Pos(api, "rec")
    a1, b1, a2 = pos.sell(p(A), 2500), pos.sell(p(B), 1800), pos.sell(p(A), 1210)
    f1 = pos.sell(p(FROZEN), 990)
    rv = pos.revoke(a2)
    assert [t["status"] for t in (a1, b1, a2, f1, rv)] == ["settled", "settled", "settled", "rejected", "settled"]
    sim.control(down=True)
    wait_for(lambda: link_state(api) != "online", 20, "the daemon saw the platform go")
    d1 = pos.sell(p(D), 777)
    assert d1["status"] == "pending" and d1["offline"], d1
    sim.control(down=False)
    return pos, {"a1": a1, "b1": b1, "a2": a2, "f1": f1, "rv": rv, "d1": d1}


def _expected_groups(txs: list[dict[str, Any]], date: str) -> dict[str, dict[str, int]]:
    """What the spool holds per insurance type for `date`, as the national profile reconciles:
    settlements in force (a settled revoke cancels its sale; revokes are not counted)."""
    revoked = {t["original_id"] for t in txs if t["kind"] == "revoke" and t["status"] == "settled"}
    groups: dict[str, dict[str, int]] = defaultdict(lambda: {"count": 0, "total_fen": 0, "fund_paid_fen": 0,
                                                             "account_paid_fen": 0})
    for t in txs:
        if t["kind"] != "settlement" or t["status"] != "settled" or t["id"] in revoked:
            continue
        when = datetime.fromisoformat(t["business_time"]).astimezone(TZ).date().isoformat()
        if when != date:
            continue
        g = groups[t["settlement"]["nhsa"]["insutype"]]
        g["count"] += 1
        g["total_fen"] += t["total_fen"]
        g["fund_paid_fen"] += t["settlement"]["fund_paid_fen"]
        g["account_paid_fen"] += t["settlement"]["account_paid_fen"]
    return dict(groups)


def _yuan(fen: int) -> Decimal:
    return (Decimal(fen) / 100).quantize(Decimal("0.01"))


def _check_3201s(sim: NhsaSim, since: int, date: str, expected: dict[str, dict[str, int]]) -> None:
    """The 3201s sent since call number `since`: one per insurance type of the profile (310 and
    390, `national`'s and `mock`'s), each with the spool's figures of that type."""
    calls = [c for c in sim.calls("3201")][since:]
    by_type = {c["request"]["input"]["data"]["insutype"]: c["request"]["input"]["data"] for c in calls}
    assert sorted(by_type) == ["310", "390"] and len(calls) == 2, [c["request"]["input"] for c in calls]
    for insutype, data in by_type.items():
        e = expected.get(insutype, {"count": 0, "total_fen": 0, "fund_paid_fen": 0, "account_paid_fen": 0})
        assert (data["stmt_begndate"], data["stmt_enddate"]) == (date, date)
        assert int(data["fixmedins_setl_cnt"]) == e["count"], (insutype, data, e)
        assert Decimal(data["medfee_sumamt"]) == _yuan(e["total_fen"]), (insutype, data, e)
        assert Decimal(data["fund_pay_sumamt"]) == _yuan(e["fund_paid_fen"]), (insutype, data, e)
        assert Decimal(data["acct_pay"]) == _yuan(e["account_paid_fen"]), (insutype, data, e)
        assert data["setl_optins"] == "110105"


def _settle_elsewhere(sim: NhsaSim, who: str, price: str) -> None:
    """A sale of this institution settled at the platform by another system (its own msgids: the
    counters from 9900 on, which the daemon's few calls never reach)."""
    other = Caller(sim, FIXMEDINS_CODE)
    counter = iter(range(9900, 10000))

    def msgid() -> str:
        return f"{FIXMEDINS_CODE}{datetime.now(TZ):%Y%m%d%H%M%S}{next(counter):04d}"

    try:
        _, answer = other.call("9001", {"opter_no": "9999", "mac": "", "ip": ""}, msgid=msgid())
        assert answer["infcode"] == 0, answer
        other.sign_no = answer["output"]["signinoutb"]["sign_no"]
        person = sim.person(who)
        data = sale_data(person, [("1", price)], sale_id="ELSEWHERE-1",
                         business_time=datetime.now(TZ).strftime("%Y-%m-%d %H:%M:%S"))
        _, answer = other.call("2102", data, insuplc=person.insuplc_admdvs, msgid=msgid())
        assert answer["infcode"] == 0, answer
    finally:
        other.close()


def _cli(d: DaemonProcess, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`terminald ARGS` as staff run it on the terminal: the daemon's config and state dir."""
    env = {**d.env, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "terminald.cli", *args], env=env, cwd=d.workdir,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


def _out(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def test_reconcile_day_api_and_cli(nhsa_sim: NhsaSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    sim = nhsa_sim
    d = daemon_proc(config=nhsa_config(sim.url, timeout_s=TIMEOUT_S, wait_s=2.0))
    api = d.client()
    wait_for(lambda: link_state(api) == "online", 20, "the daemon signed in")
    pos, _ = _day_of_sales(sim, api)
    wait_drained(api, d, 60, "the outage sale re-entered")
    date = _today()
    txs = transactions(api)
    expected = _expected_groups(txs, date)
    assert expected["310"]["count"] == 2 and expected["390"]["count"] == 1, expected  # a1 + d1; b1

    # -- the integrator: GET /v1/reconciliation?date=D --
    before = len(sim.calls("3201"))
    r = api.get("/v1/reconciliation", params={"date": date})
    assert r.status_code == 200, r.text
    rep = r.json()
    _check_3201s(sim, before, date, expected)
    assert rep["matches"] is True and rep["differences"] == [] and "error" not in rep, rep
    assert rep["date"] == date and rep["stmt_rslt"] == "0"
    total = {k: sum(g[k] for g in expected.values()) for k in ("count", "total_fen", "fund_paid_fen",
                                                               "account_paid_fen")}
    assert {k: rep["local"][k] for k in total} == total, rep["local"]
    assert {k: rep["central"][k] for k in total} == total, rep["central"]
    assert rep["local"]["by_status"] == {"accepted": 5, "rejected": 1}, rep["local"]
    rows = {row["insutype"]: row for row in rep["insutypes"]}
    assert sorted(rows) == ["310", "390"] and all(row["matches"] is True for row in rows.values()), rows
    for insutype, row in rows.items():
        assert row["local"] == expected[insutype], row
    # The call log holds each 3201, answered.
    logged = [c for c in calllog_rows(d.state_dir / "spool.db") if c["infno"] == "3201"]
    assert len(logged) == 2 and all(c["state"] == "ok" and c["record_id"] is None for c in logged), logged

    # -- staff: `terminald reconcile --date D` beside the running daemon --
    before = len(sim.calls("3201"))
    result = _cli(d, "reconcile", "--date", date)
    assert result.returncode == 0, _out(result)
    assert "matches" in result.stdout and "does not match" not in result.stdout, _out(result)
    _check_3201s(sim, before, date, expected)
    logged = [c for c in calllog_rows(d.state_dir / "spool.db") if c["infno"] == "3201"]
    assert len(logged) == 4 and all(c["state"] == "ok" for c in logged), logged
    # The daemon goes on undisturbed: a sale settles online.
    g1 = pos.sell(sim.person(G), 640)
    assert g1["status"] == "settled" and not g1["offline"], g1
    expected = _expected_groups(transactions(api), date)

    # -- the platform's books differ: a sale of this institution settled there by another system --
    _settle_elsewhere(sim, G, "3.00")
    before = len(sim.calls("3201"))
    rep = api.get("/v1/reconciliation", params={"date": date}).json()
    _check_3201s(sim, before, date, expected)
    assert rep["matches"] is False and "error" not in rep, rep
    rows = {row["insutype"]: row for row in rep["insutypes"]}
    assert rows["310"]["matches"] is False and rows["390"]["matches"] is True, rows
    assert rows["310"]["stmt_rslt"] == "1" and "结算笔数" in rows["310"]["stmt_rslt_dscr"], rows["310"]
    figures = [x for x in rep["differences"] if "figure" in x]
    assert len(figures) == 1 and "insutype 310" in figures[0]["figure"], rep["differences"]
    assert "结算笔数" in figures[0]["central"]
    # No local record can explain it: the note says central holds what this spool does not.
    assert [x for x in rep["differences"] if "record_id" in x] == [], rep["differences"]
    assert "does not" in rep["note"], rep["note"]
    result = _cli(d, "reconcile", "--date", date)
    assert result.returncode == 1, _out(result)
    assert "does not match" in result.stdout and "insutype 310" in result.stdout, _out(result)

    # -- with the daemon stopped --
    d.stop()
    before = len(sim.calls("3201"))
    result = _cli(d, "reconcile", "--date", date)
    assert result.returncode == 1 and "insutype 310" in result.stdout, _out(result)
    _check_3201s(sim, before, date, expected)
    logged = [c for c in calllog_rows(d.state_dir / "spool.db") if c["infno"] == "3201"]
    assert len(logged) == 10 and all(c["state"] == "ok" for c in logged), logged


def test_lost_answer_names_the_record(nhsa_sim: NhsaSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    """A 2102 the platform committed whose answer was lost, not reversed yet: the platform counts
    a sale the spool holds as pending; the report names it. Once reversed and settled again, the
    day balances."""
    sim = nhsa_sim
    tap = SimTap(sim)
    d = daemon_proc(config=nhsa_config(sim.url, timeout_s=TIMEOUT_S, wait_s=1.0))
    api = d.client()
    wait_for(lambda: link_state(api) == "online", 20, "the daemon signed in")
    pos = Pos(api, "lost")
    a1 = pos.sell(sim.person(A), 2500)
    assert a1["status"] == "settled"
    hold = tap.hold(["2601"])  # the reversal of the lost answer waits
    sim.control(next={"drop_after_commit": 1}, fault_infnos=["2102"])
    b1 = pos.sell(sim.person(B), 1800)
    assert b1["status"] == "pending", b1
    assert hold.arrived.wait(30), "no 2601 for the lost answer"
    date = _today()

    r = api.get("/v1/reconciliation", params={"date": date})
    assert r.status_code == 200, r.text
    rep = r.json()
    assert rep["matches"] is False and "error" not in rep, rep
    rows = {row["insutype"]: row for row in rep["insutypes"]}
    assert rows["310"]["matches"] is True and rows["390"]["matches"] is False, rows
    named = [x for x in rep["differences"] if "record_id" in x]
    assert [(x["record_id"], x["why"]) for x in named] == [(b1["id"], "pending")], rep["differences"]
    assert rep["local"]["by_status"] == {"accepted": 1, "pending": 1}, rep["local"]
    result = _cli(d, "reconcile", "--date", date)
    assert result.returncode == 1 and b1["id"] in result.stdout and "pending" in result.stdout, _out(result)

    tap.release()
    sim.control(fault_infnos=[])
    wait_drained(api, d, 60, "the lost answer reversed and the sale settled again")
    rep = api.get("/v1/reconciliation", params={"date": date}).json()
    assert rep["matches"] is True, rep


def test_platform_down(nhsa_sim: NhsaSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    """The platform down or too slow: the API answers its documented report (200, `central`
    null, `matches` false, an `error` saying why; docs/api.md "Reconciliation") within
    upstream.timeout_s of the call that met it; the CLI shows the same and exits 1, with the
    daemon running or stopped."""
    sim = nhsa_sim
    tap = SimTap(sim)
    d = daemon_proc(config=nhsa_config(sim.url, timeout_s=TIMEOUT_S, wait_s=1.0))
    api = d.client()
    wait_for(lambda: link_state(api) == "online", 20, "the daemon signed in")
    pos = Pos(api, "down")
    assert pos.sell(sim.person(A), 2500)["status"] == "settled"
    date = _today()

    def slow_3201(s: NhsaSim) -> Awaitable[None]:
        return s._control({"latency_ms": 10_000.0})  # in the simulator's loop, as the 3201 arrives

    cases: list[tuple[str, Callable[[], None], str, float]] = [
        ("down", lambda: sim.control(down=True), "9001 sign-in failed", 1.0),
        ("slow", lambda: sim.control(latency_ms=10_000.0), f"no answer within {TIMEOUT_S} s", TIMEOUT_S + 1.5),
        # Signed in, then the 3201 meets the slow gateway: the other insurance type is not sent.
        ("slow_3201", lambda: tap.on_next("3201", slow_3201), "no definite answer to 3201 (timeout)",
         TIMEOUT_S + 1.5),
    ]
    for running in (True, False):
        if not running:
            d.stop()
        for name, fault, said, bound in cases:
            if running:
                fault()
                started = time.monotonic()
                r = api.get("/v1/reconciliation", params={"date": date})
                took = time.monotonic() - started
                sim.control(down=False, latency_ms=0.0)
                assert r.status_code == 200, r.text
                rep = r.json()
                assert rep["matches"] is False and rep["central"] is None and rep["differences"] == [], rep
                assert said in rep["error"], (name, rep["error"])
                assert rep["local"]["count"] == 1 and rep["local"]["total_fen"] == 2500, rep["local"]
                assert all(row["matches"] is None and row["error"] for row in rep["insutypes"]), rep["insutypes"]
                assert took < bound, (name, took)
            fault()
            started = time.monotonic()
            result = _cli(d, "reconcile", "--date", date)
            took = time.monotonic() - started
            sim.control(down=False, latency_ms=0.0)
            assert result.returncode == 1, _out(result)
            assert "could not be asked" in result.stdout and said in result.stdout, _out(result)
            assert "does not match" in result.stdout and "Traceback" not in result.stderr, _out(result)
            assert took < bound + 10, (name, took)  # the interpreter's start on top
    # Every 3201 the daemon and the CLI sent is in the call log, none left open.
    logged = [c for c in calllog_rows(d.state_dir / "spool.db") if c["infno"] in ("9001", "3201")]
    assert [c for c in logged if c["state"] == "sent"] == [], logged
    assert all(c["state"] == "unknown" for c in logged if c["infno"] == "3201" and c["state"] != "ok"), logged
