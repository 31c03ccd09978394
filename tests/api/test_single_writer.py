"""Issue #13 item 2, through the real daemon in this process (its routes on an ASGI transport):
nothing waits for SQLite on the event loop during a sale, and the spool's writer thread is the
only writer of spool.db.

Every SQLite connection opened after `SqlTrace.install` reports each statement on the thread
that runs it (sqlite3's trace callback), so the checks are exact counts, not timings.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from spool import AppendRequest, Spool, digest
from terminald.app import create_app
from terminald.config import load_config
from terminald.daemon import Daemon
from terminald.sim.central import CentralSim
from terminald.sim.ports import free_port
from tests.api.helpers import sale
from tests.sqltrace import SqlTrace, Statement, outside_migrations

TID = "T0001"
BACKLOG = 3000


def _config(tmp_path: Path, url: str) -> Any:
    return load_config(
        None,
        terminal={"id": TID, "timezone": "Asia/Shanghai"},
        spool={"path": str(tmp_path / "state" / "spool.db")},
        upstream={"url": url, "timeout_s": 2, "wait_s": 5, "batch_size": 100},
        offline={"require_card_present": False},
        printers=[{"name": "receipt", "uri": "memory://", "columns": 42}],
    )


def _backlog(path: Path, count: int) -> None:
    """`count` pending sales from a month ago: past the re-entry deadline, so the check has work."""
    when = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    with Spool.open(path, TID, background_check=False) as spool:
        for n in range(count):
            payload = {"card": {"card_number": "C1", "ssn": "110101199001011234", "name": "张三",
                                "issuer_code": "110100"}, "items": [], "total_fen": 100, "idempotency_key": f"old-{n}"}
            spool.append(AppendRequest("settlement", when, payload, idempotency_key=f"old-{n}",
                                       request_digest=digest(payload)))


async def _until(predicate: Callable[[], Any], what: str, timeout_s: float = 30.0) -> None:
    """Wait for a condition the daemon reaches by itself (polls the loop; never a fixed sleep)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def _running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> AsyncIterator[
        tuple[Daemon, httpx.AsyncClient]]:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    daemon = Daemon(_config(tmp_path, url))
    await daemon.start()
    try:
        transport = httpx.ASGITransport(app=create_app(daemon))
        async with httpx.AsyncClient(transport=transport, base_url="http://terminal") as client:
            yield daemon, client
    finally:
        await daemon.stop()


async def _sale(client: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    response = await client.post("/v1/transactions", json=sale(), headers={"Idempotency-Key": key}, params=params)
    assert response.status_code in (201, 202), response.text
    body: dict[str, Any] = response.json()
    return body


def _on(statements: list[Statement], thread_id: int) -> list[str]:
    return [s.sql for s in statements if s.thread_id == thread_id]


def test_offline_sales_with_a_long_backlog_run_no_sqlite_on_the_event_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "state").mkdir()
    spool_path = tmp_path / "state" / "spool.db"
    _backlog(spool_path, BACKLOG)
    trace = SqlTrace().install(monkeypatch)
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens: every call to central fails at once

    async def main() -> None:
        async with _running(tmp_path, monkeypatch, down) as (daemon, client):
            uploader = daemon.uploader
            await _until(lambda: uploader.link.state == "offline" and uploader.link.outage_since is not None,
                         "the link to go offline")
            loop_thread = threading.get_ident()
            trace.clear()
            for n in range(20):
                body = await _sale(client, f"sale-{n}")  # the POS's defaults: no ?wait
                assert body["status"] == "pending" and body["offline_reason"] == "upstream_unreachable"
                assert uploader.offline_reason() == "upstream_unreachable"
            await uploader._check_deadline()  # the check the watch task runs every 30 s
            assert any(a["code"] == "reentry_deadline" for a in uploader.link.alarms)
            statements = trace.statements(spool_path)
            assert _on(statements, loop_thread) == []
            # The trace did see the sales: their commits, on the spool's writer thread.
            assert sum(s.sql.startswith("INSERT INTO records") for s in statements) >= 1
            assert daemon.spool is not None and daemon.spool.pending_summary().pending == BACKLOG + 20

    asyncio.run(main())


def test_the_spool_writer_thread_is_the_only_writer_of_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, central_sim: CentralSim) -> None:
    (tmp_path / "state").mkdir()
    spool_path = tmp_path / "state" / "spool.db"
    trace = SqlTrace().install(monkeypatch)
    central_sim.control(freeze=["F1", "F2"])

    started = 0

    async def main() -> None:
        nonlocal started
        async with _running(tmp_path, monkeypatch, central_sim.url) as (daemon, client):
            started = trace.mark()  # every namespace has migrated its tables (at open, on its own connection)
            uploader = daemon.uploader
            await _until(lambda: uploader.is_frozen("F1"), "the first sync with central (its frozen list)")
            # A burst: sales settled by central (acks, outcomes), a receipt each (print jobs),
            # events for all of it.
            online = await asyncio.gather(*(_sale(client, f"on-{n}", wait=5) for n in range(12)))
            assert {b["status"] for b in online} == {"settled"}
            prints: list[Awaitable[httpx.Response]] = [
                client.post(f"/v1/transactions/{b['id']}/receipt", json={}) for b in online]
            assert {r.status_code for r in await asyncio.gather(*prints)} == {202}
            # An outage: central goes away, sales go on offline, central comes back.
            central_sim.control(down=True)
            offline = await asyncio.gather(*(_sale(client, f"off-{n}", wait=0) for n in range(12)))
            assert {b["status"] for b in offline} == {"pending"}
            await _until(lambda: uploader.link.state == "offline", "the outage to be seen")
            central_sim.control(down=False)
            uploader.wake()
            await _until(lambda: daemon.spool is not None and daemon.spool.pending_summary().pending == 0,
                         "the backlog to drain")
            await _until(lambda: all(j["state"] == "done" for j in _jobs(daemon)), "the receipts to print")
            await daemon.retention.run_once(datetime.now(UTC) + timedelta(days=400))  # prunes print jobs, events
        # Stopped: the event log's clean-stop mark is written too.

    asyncio.run(main())
    statements = trace.statements(spool_path)
    # While it started: outside the writer, only the namespaces' migrations (each on its own
    # connection, at open, as docs/spool.md says) and the spool's claim of the file.
    opening = [(s.thread, s.sql[:80]) for s in outside_migrations(statements[:started])
               if s.writes and s.thread != "spool-writer"]
    assert opening == [("MainThread", "BEGIN IMMEDIATE"),
                       ("MainThread", "INSERT INTO meta (key, value) VALUES ('terminal_id', 'T0001')")], opening
    # From then on, through the burst, the outage, retention and the stop: one writer thread.
    writes = [s for s in statements[started:] if s.writes]
    assert [(s.thread, s.sql[:80]) for s in writes if s.thread != "spool-writer"] == []
    tables = {s.table() for s in writes}
    assert {"records", "events", "events_run", "print_jobs", "upload_state", "upload_frozen_cards",
            "upload_outages"} <= tables, tables


def _jobs(daemon: Daemon) -> list[dict[str, Any]]:
    return daemon.print_queue._execute("SELECT state FROM print_jobs")


def test_offline_reason_with_central_online_and_a_backlog_reads_memory_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Online with records waiting, every sale asks whether it is behind a backlog: no query."""
    (tmp_path / "state").mkdir()
    spool_path = tmp_path / "state" / "spool.db"
    _backlog(spool_path, BACKLOG)
    trace = SqlTrace().install(monkeypatch)

    async def main() -> None:
        from spool import Outcome
        from terminald.upload.uploader import Uploader

        with Spool.open(spool_path, TID, background_check=False) as spool:
            uploader = Uploader(spool, _config(tmp_path, "http://127.0.0.1:9"), on_event=lambda n, d: None)
            uploader.link.state = "online"  # as after a sync; the loop is not started
            mark = trace.mark()
            assert [uploader.offline_reason() for _ in range(100)] == ["backlog"] * 100
            assert trace.statements(spool_path, since=mark) == []
            await asyncio.to_thread(spool.apply_outcomes,
                                    [Outcome(seq, "settled", {"fund_paid_fen": 0}) for seq in range(1, BACKLOG + 1)])
            mark = trace.mark()
            assert uploader.offline_reason() is None
            assert trace.statements(spool_path, since=mark) == []
            await uploader.stop()

    asyncio.run(main())


def test_the_event_log_still_writes_a_burst_in_a_few_group_commits(tmp_path: Path) -> None:
    from terminald.events import EventBus

    path = tmp_path / "spool.db"
    with Spool.open(path, TID, background_check=False) as spool:
        bus = EventBus(path)
        bus.open()  # finds the spool open in this process: its writer writes the events
        try:
            before = spool.commits
            for n in range(500):
                bus.publish("test.burst", {"n": n})
            bus.flush()
            written = spool.commits - before
            assert len(bus.since(0)) == 500
        finally:
            bus.close()
    # Gathered for 20 ms, a burst is one write (a savepoint in one of the writer's commits), not
    # one per event; a loaded machine may split it in a few.
    assert 1 <= written <= 25, written
