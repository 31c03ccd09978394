"""`kill -9` of the daemon again and again while it re-enters a backlog (issue #14, "Tests").

64 outage sales and revokes of 12 persons are taken while the platform is down. Then the daemon
re-enters them, and is killed with SIGKILL 24 times:

- `hold_before`: every 2102 that reaches the platform is held there (SimTap) before the platform
  handles it; the daemon is killed as the first one arrives, then the held 2102s go on and
  commit: the platform settled sales whose answer no one will read;
- `hold_after`: the same, but the 2102s are held after the platform committed them, before their
  answer leaves (the answer is lost with the connection);
- `random`: after a random number (1-12) of calls reached the platform, whatever they were
  (9001, the restart's 2601s, 1101, 2102), while the platform's latency keeps calls in flight.

After each kill the daemon's call log (the spool's file, read-only) must show every held 2102
`sent`: written before the request left, never completed. After the last restart the backlog
drains, and the platform holds each sale exactly once, at its business time, with the spool's
split, in each person's order; every 2102 left `sent` by a kill was reversed (2601), and the
ones that had reached the platform no longer stand.
"""

from __future__ import annotations

import random
import signal
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from terminald.sim.nhsa import NhsaSim
from tests.fixtures.daemon import DaemonProcess
from tests.nhsa_e2e.helpers import (
    TZ,
    Pos,
    SimTap,
    assert_calllog_closed,
    calllog_rows,
    check_books,
    link_state,
    nhsa_config,
    spool_pending,
    transactions,
    wait_drained,
)
from tests.waiting import wait_for

KILLS = 24
PERSONS = 12
SALES = 60
REVOKE_AFTER = {12: 5, 27: 20, 41: 33, 55: 48}  # after sale i, revoke sale j (an outage sale)
KINDS = ("hold_before", "random", "hold_after")


@pytest.fixture
def crowd_sim(tmp_path: Path) -> Iterator[NhsaSim]:
    """The simulator with 12 made-up card holders (S00000001...)."""
    sim = NhsaSim(tmp_path / "nhsa.db", synthetic_persons=PERSONS)
    sim.start()
    try:
        yield sim
    finally:
        sim.stop()


def _outage_day(sim: NhsaSim, pos: Pos, dice: random.Random) -> list[dict[str, Any]]:
    """60 sales of 12 persons (each 2 at least) and 4 revokes, while the platform is down."""
    persons = [sim.person(f"S{n:08d}") for n in range(1, PERSONS + 1)]
    order = [*persons, *persons] + [dice.choice(persons) for _ in range(SALES - 2 * PERSONS)]
    dice.shuffle(order)
    start = datetime.now(TZ).replace(hour=8, minute=30, second=0, microsecond=0) - timedelta(days=3)
    taken: list[dict[str, Any]] = []
    sales: list[dict[str, Any]] = []
    for i, person in enumerate(order):
        when = start + timedelta(minutes=53 * i, seconds=dice.randrange(60))
        sale = pos.sell(person, dice.randrange(150, 30_000), business_time=when, lines=1 + i % 3)
        sales.append(sale)
        taken.append(sale)
        if i in REVOKE_AFTER:
            taken.append(pos.revoke(sales[REVOKE_AFTER[i]]))
    return taken


@pytest.mark.slow
def test_kill_9_while_reentering_a_backlog(crowd_sim: NhsaSim,
                                            daemon_proc: Callable[..., DaemonProcess]) -> None:
    sim = crowd_sim
    tap = SimTap(sim)
    dice = random.Random(1414)
    d = daemon_proc(config=nhsa_config(sim.url, timeout_s=5.0, wait_s=1.0, concurrency=4))
    spool_path = d.state_dir / "spool.db"
    api = d.client()
    wait_for(lambda: link_state(api) == "online", 20, "the daemon signed in")

    # The outage day: every sale is answered "pending" (the patient pays in full).
    sim.control(down=True)
    pos = Pos(api, "k9")
    taken = _outage_day(sim, pos, dice)
    assert [t["status"] for t in taken] == ["pending"] * len(taken) and all(t["offline"] for t in taken)
    d.stop()

    # The platform is back, slow enough that calls are in flight when the daemon dies.
    sim.control(down=False, latency_ms=40.0)
    kills: list[dict[str, Any]] = []
    for i in range(KILLS):
        kind = KINDS[i % len(KINDS)]
        hold = tap.hold(("2102",), after_commit=kind == "hold_after") if kind != "random" else None
        backlog, decided, calls = spool_pending(spool_path), dice.randint(1, 4), dice.randint(0, 6)
        d.start()
        if hold is not None:
            assert hold.arrived.wait(30), f"kill {i}: no 2102 reached the platform"
        else:  # some records decided, then a few more calls, whatever they are
            wait_for(lambda: spool_pending(spool_path) <= backlog - decided, 30,  # noqa: B023
                     f"kill {i}: {decided} records decided")
            before = tap.count()
            wait_for(lambda: tap.count() >= before + calls, 30, f"kill {i}: {calls} more calls")  # noqa: B023
        in_flight = tap.inflight_infnos()
        d.kill(signal.SIGKILL)
        held = tap.release()
        # Whatever the dead daemon had sent is handled now (committed or not) before it comes back.
        wait_for(lambda: not tap.inflight_infnos(), 30, "the platform done with the dead daemon's calls")
        rows = calllog_rows(spool_path)
        sent = {r["msgid"] for r in rows if r["infno"] == "2102" and r["state"] == "sent"}
        assert set(held) <= sent, f"kill {i}: held 2102s {held} not left `sent` in the call log"
        sent -= set().union(set(), *(k["sent_2102"] for k in kills))  # left by an earlier kill, not reversed yet
        arrived = {m for infno, m in tap.seen if infno == "2102"} & sent
        kills.append({"kind": kind, "in_flight": in_flight, "sent_2102": sent, "arrived": arrived,
                      "backlog": spool_pending(spool_path)})

    # The last restart: the backlog drains by itself.
    sim.control(latency_ms=0.0)
    d.start()
    api = d.client()
    wait_drained(api, d, 90, "the backlog drained after the last kill")

    txs = transactions(api)
    counts = check_books(sim, txs, pos.persons)
    assert counts == {"settlement_settled": SALES, "revoke_settled": len(REVOKE_AFTER)}, counts  # none lost
    assert [t["id"] for t in txs] == [t["id"] for t in taken]  # nothing new, nothing missing

    # Every 2102 a kill left `sent` was reversed, and the ones that reached the platform no longer stand.
    rows = {r["msgid"]: r for r in assert_calllog_closed(spool_path)}
    left_sent = set().union(*(k["sent_2102"] for k in kills))
    reached = set().union(*(k["arrived"] for k in kills))
    assert all(rows[m]["state"] == "reversed" for m in left_sent), [rows[m] for m in left_sent]
    by_msgid = {s["msgid"]: s for s in sim.settlements()}
    assert reached and all(by_msgid[m]["status"] == "reversed" for m in reached if m in by_msgid)
    assert all(m in by_msgid for m in reached), "a held 2102 that reached the platform did not commit"

    assert all(k["backlog"] > 0 for k in kills), [k["backlog"] for k in kills]  # each one while re-entering
    with_2102 = [k for k in kills if k["sent_2102"]]
    assert len(kills) == KILLS and len(with_2102) >= 2 * KILLS // 3, [len(k["sent_2102"]) for k in kills]
    print(f"\n{len(kills)} kills; {len(with_2102)} with a 2102 in flight (logged `sent`), "
          f"{sum(1 for k in kills if k['arrived'])} of them with it at the platform; "
          f"{len(reached)} 2102s reached the platform and were reversed; "
          f"in flight at the kill: {sorted({i for k in kills for i in k['in_flight']})}")
