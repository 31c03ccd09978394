"""A real `terminald serve` with `[mirror] dsn` against a real PostgreSQL primary and synchronous
standby: sales go through the API, the mirror follows, and its outage shows only as lag."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Callable

import httpx

from terminald.sim.central import CentralSim
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import mirrored_rows, prepare
from tests.mirror_daemon.helpers import (
    TID,
    config,
    copier_processes,
    events_named,
    mirror_of,
    pg_connections,
    sell,
    wait_caught_up,
    wait_equal,
)
from tests.waiting import wait_for


def test_without_a_dsn_the_status_says_the_mirror_is_off(daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc()
    with d.client() as api:
        m = mirror_of(api)
        assert m["enabled"] is False and m["alarms"] == [] and m["mirrored_seq"] is None
        assert b"terminald_mirror_" not in api.get("/metrics").content


def test_500_sales_while_postgres_is_up_then_central_settles_them(
        pg_pair: PgPair, pg_database: str, central_sim: CentralSim,
        daemon_proc: Callable[..., DaemonProcess]) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    d = daemon_proc(config(dsn, upstream_url=central_sim.url))
    with d.client() as api:
        seqs = sell(api, 500)
        assert seqs == list(range(1, 501))
        m = wait_caught_up(api, 500)
        assert m["enabled"] and m["connected"] and m["alarms"] == [] and m["last_error"] is None
        assert str(pg_pair.primary.port) in m["server"]
        wait_for(lambda: api.get("/v1/status").json()["spool"]["pending"] == 0, 30, "central to settle every sale")
        metrics = api.get("/metrics").text
        assert "terminald_mirror_connected 1.0" in metrics and "terminald_mirror_lag_records 0.0" in metrics
    # Statuses follow as updates: every record as the spool holds it, settled by central.
    assert wait_equal(pg_pair, pg_database, d) == 500
    statuses = {row[5] for row in mirrored_rows(pg_pair, pg_database, TID)}
    assert statuses <= {"settled", "rejected"} and "settled" in statuses

    def fleet_row() -> tuple[object, ...] | None:  # the heartbeat, sent again when the mode changed
        with pg_pair.admin(pg_database) as conn:
            row: tuple[object, ...] | None = conn.execute(
                "SELECT mode, version FROM terminald_terminals WHERE terminal_id = %s", (TID,)).fetchone()
        return row if row is not None and row[0] == "online" else None

    assert wait_for(fleet_row, 10, "the fleet row to say online")[1]


def test_postgres_down_during_300_offline_sales_then_back(
        pg_pair_factory: Callable[[], PgPair], daemon_proc: Callable[..., DaemonProcess]) -> None:
    pair = pg_pair_factory()  # stopped and started here: a pair of this test's own
    dbname = pair.create_database()
    dsn = prepare(pair, dbname, TID)[TID]
    d = daemon_proc(config(dsn, lag_alarm_s=0.5))  # no upstream: every sale is an outage sale
    with d.client() as api:
        sell(api, 5, "before")
        wait_caught_up(api, 5)
        pair.stop(pair.primary)  # the standby is read-only: the DSN's second host is skipped
        sold = sell(api, 300, "down")
        assert sold[-1] == 305  # sales go on as if nothing happened

        def lag_alarm() -> dict[str, object] | None:
            m = mirror_of(api)
            return m if any(a["code"] == "mirror_lag" for a in m["alarms"]) else None

        m = wait_for(lag_alarm, 20, "the mirror_lag alarm in /v1/status")
        assert m["unmirrored"] == 300 and m["mirrored_seq"] == 5 and m["lag_s"] > 0.5 and not m["connected"]
        assert m["last_error"] and m["oldest_unmirrored_at"]
        assert "terminald_mirror_lag_records 300.0" in api.get("/metrics").text
        wait_for(lambda: [e["lagging"] for e in events_named(d, "mirror.lag")] == [True], 10, "the mirror.lag event")

        pair.start(pair.primary)
        pair.wait_sync()
        m = wait_caught_up(api, 305)
        assert m["alarms"] == [] and m["connected"]
        wait_for(lambda: [e["lagging"] for e in events_named(d, "mirror.lag")] == [True, False], 10,
                 "the mirror.lag event that ends it")
    assert wait_equal(pair, dbname, d) == 305


def test_ten_kill9s_of_terminald_while_mirroring(pg_pair: PgPair, pg_database: str,
                                                 daemon_proc: Callable[..., DaemonProcess]) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    d = daemon_proc(config(dsn))
    answered: list[int] = []  # seqs the POS was given: each must be in the mirror at the end
    for round_ in range(10):
        with d.client() as api:
            # Sales on a thread while the kill comes: the copier is mid-pass, often mid-batch.
            sold: list[int] = []
            seller = threading.Thread(target=_sell_until_killed, args=(api, sold, f"r{round_}"))
            seller.start()
            wait_for(lambda: len(sold) >= 15, 20, "some sales")  # noqa: B023 (this round's list)
            daemon_pid = d.pid
            # Killed while mirroring: its process connected and copying this round's sales.
            copier = wait_for(functools.partial(_copying, api, sold[0]), 20, "the mirror to copy this round's sales")
            assert copier_processes(daemon_pid) == [copier]
            assert d.kill(signal.SIGKILL) == -signal.SIGKILL
            seller.join(10)
            assert not seller.is_alive()
            answered += sold
            # The copier dies with its daemon (PR_SET_PDEATHSIG, else EOF on its socket): no orphan
            # holding a connection and a head row that nobody watches.
            wait_for(lambda: not copier_processes(daemon_pid), 10, "the copier to end with its daemon")  # noqa: B023
        d.start()
    with d.client() as api:
        tail = api.get("/v1/status").json()["spool"]["last_seq"]
        assert tail >= max(answered) and len(answered) >= 150
        wait_caught_up(api, tail)
    assert wait_equal(pg_pair, pg_database, d) == tail


def test_the_copier_runs_in_a_process_of_its_own_and_comes_back_when_killed(
        pg_pair: PgPair, pg_database: str, daemon_proc: Callable[..., DaemonProcess]) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    d = daemon_proc(config(dsn))
    port = pg_pair.primary.port
    with d.client() as api:
        sell(api, 20)
        copier = wait_caught_up(api, 20)["pid"]
        # Not a thread of the daemon's: another process, started by it, holding the connection.
        assert copier and copier != d.pid and copier_processes(d.pid) == [copier]
        assert pg_connections(copier, port) >= 1 and pg_connections(d.pid, port) == 0

        os.kill(copier, signal.SIGKILL)
        assert sell(api, 30, "copier-down")[-1] == 50  # sales as ever

        def restarted() -> int | None:
            pid: int | None = mirror_of(api)["pid"]
            return pid if pid not in (None, copier) else None

        again = wait_for(restarted, 20, "a new copier process")
        m = wait_caught_up(api, 50)
        assert m["alarms"] == [] and m["connected"] and m["pid"] == again
        assert copier_processes(d.pid) == [again] and pg_connections(d.pid, port) == 0

        def child_alarm() -> list[tuple[str, bool]]:
            return [(e["code"], e["raised"]) for e in events_named(d, "mirror.alarm")]

        # While it was down: the alarm, raised and cleared.
        wait_for(lambda: child_alarm() == [("mirror_child", True), ("mirror_child", False)], 10,
                 "the mirror_child alarm to come and go")
    assert wait_equal(pg_pair, pg_database, d) == 50
    assert f"copier process started (pid {again})" in d.stderr_text()
    # A graceful stop asks the copier to stop and waits for it: nothing left, nothing killed.
    daemon_pid = d.pid
    assert d.stop() in (0, -signal.SIGTERM)
    assert not copier_processes(daemon_pid) and "killing it" not in d.stderr_text()


def _copying(api: httpx.Client, seq: int) -> int | None:
    """The copier's pid once it is connected and has copied ``seq``."""
    m = mirror_of(api)
    pid: int | None = m["pid"]
    return pid if m["connected"] and (m["mirrored_seq"] or 0) >= seq else None


def _sell_until_killed(api: httpx.Client, sold: list[int], prefix: str) -> None:
    """Sell until the daemon dies under a sale (committed or not: the spool says), noting each seq."""
    with contextlib.suppress(httpx.TransportError):
        for i in range(10_000):
            sold += sell(api, 1, f"{prefix}-{i}")


def test_a_forged_head_row_raises_an_alarm_and_is_never_overwritten(
        pg_pair: PgPair, pg_database: str, daemon_proc: Callable[..., DaemonProcess]) -> None:
    dsn = prepare(pg_pair, pg_database, TID)[TID]
    d = daemon_proc(config(dsn))
    forged = "f" * 64
    with d.client() as api:
        sell(api, 20)
        wait_caught_up(api, 20)
        with pg_pair.admin(pg_database) as conn:
            conn.execute("UPDATE terminald_terminals SET last_hash = %s WHERE terminal_id = %s", (forged, TID))
        sell(api, 3, "after")  # 201/202 as always: the mirror is nobody's business at the counter

        def fork() -> dict[str, object] | None:
            m = mirror_of(api)
            return m if any(a["code"] == "mirror_fork" for a in m["alarms"]) else None

        m = wait_for(fork, 20, "the mirror_fork alarm in /v1/status")
        alarm = next(a for a in m["alarms"] if a["code"] == "mirror_fork")
        assert alarm["seq"] == 20 and "fork" in alarm["message"] and alarm["since"]
        assert m["unmirrored"] == 3
        wait_for(lambda: any(e["code"] == "mirror_fork" and e["raised"] for e in events_named(d, "mirror.alarm")),
                 10, "the mirror.alarm event")
    with pg_pair.admin(pg_database) as conn:
        head = conn.execute("SELECT last_seq, last_hash FROM terminald_terminals WHERE terminal_id = %s",
                            (TID,)).fetchone()
    assert head == (20, forged)  # nothing overwrote it
    assert [row[0] for row in mirrored_rows(pg_pair, pg_database, TID)] == list(range(1, 21))



def test_a_daemon_restarted_while_postgres_is_down_shows_the_lag_at_once(
        pg_pair_factory: Callable[[], PgPair], daemon_proc: Callable[..., DaemonProcess]) -> None:
    """The new copier cannot reach PostgreSQL, so it never learns the head; the daemon kept the
    head its last copier saw, so /v1/status shows what waits and how old it is from the start,
    and the lag alarm is up at once, not lag_alarm_s after the restart."""
    import time

    pair = pg_pair_factory()
    dbname = pair.create_database()
    dsn = prepare(pair, dbname, TID)[TID]
    lag_alarm_s = 3.0
    d = daemon_proc(config(dsn, lag_alarm_s=lag_alarm_s))
    with d.client() as api:
        sell(api, 5, "before")
        wait_caught_up(api, 5)
        pair.stop(pair.primary)
        sell(api, 3, "down")
        sold_at = time.time()
    d.stop()
    # The three unmirrored records grow older than the alarm's threshold while no daemon runs.
    wait_for(lambda: time.time() - sold_at > lag_alarm_s + 0.5, lag_alarm_s + 5, "the records to age", 0.1)
    d.start()
    with d.client() as api:
        m = mirror_of(api)  # the first look, well within lag_alarm_s of the start
        assert (m["mirrored_seq"], m["spool_seq"], m["unmirrored"]) == (5, 8, 3), m
        assert m["lag_s"] is not None and m["lag_s"] > lag_alarm_s, m
        assert not m["connected"]
        wait_for(lambda: any(a["code"] == "mirror_lag" for a in mirror_of(api)["alarms"]), 5, "the lag alarm")
        pair.start(pair.primary)
        pair.wait_sync()
        m = wait_caught_up(api, 8)
        assert m["alarms"] == []
    assert wait_equal(pair, dbname, d) == 8
