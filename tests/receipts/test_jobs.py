"""Durable print jobs against the printer emulator and the spool database."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.printers import Printer, PrinterConfig
from terminald.errors import PrinterNotConfigured, ValidationFailed
from terminald.receipts.jobs import PrintQueue
from terminald.receipts.templates import render_receipt
from terminald.sim.printer import PrinterSim
from tests.waiting import wait_for

from .samples import DOCUMENTS

Events = list[tuple[str, dict[str, Any]]]


def receipt(reprint: bool = False) -> bytes:
    tx, _ = DOCUMENTS["online"]
    return render_receipt(
        tx,
        reprint=reprint,
        institution="示例大药房",
        terminal_id="T0001",
        columns=42,
        chinese="fs",
        language="zh-CN",
    )


@pytest.fixture
def make_queue(tmp_path: Path) -> Iterator[Callable[..., tuple[PrintQueue, Events]]]:
    queues: list[PrintQueue] = []

    def make(uri: str, **kwargs: Any) -> tuple[PrintQueue, Events]:
        events: Events = []
        printer = Printer(PrinterConfig(name="receipt", uri=uri, columns=42))
        printer.status_timeout_s = 0.2
        q = PrintQueue(
            tmp_path / "spool.db",
            {"receipt": printer},
            lambda n, d: events.append((n, d)),
            poll_s=0.1,
            retry_min_s=0.05,
            retry_max_s=0.2,
            **kwargs,
        )
        queues.append(q)
        q.start()
        return q, events

    yield make
    for q in queues:
        q.stop()


def state(q: PrintQueue, job_id: str) -> str:
    job = q.get(job_id)
    assert job is not None
    return str(job["state"])


def test_prints_in_order_and_counts(make_queue: Any, printer_sim: PrinterSim) -> None:
    q, events = make_queue(printer_sim.uri)
    ids = [q.submit("tx-1", receipt(), "receipt"), q.submit("tx-1", receipt(True), "receipt", 2, True)]
    wait_for(lambda: all(state(q, j) == "done" for j in ids))
    jobs = printer_sim.jobs_text(42)
    assert len(jobs) == 3
    assert "重打 REPRINT" not in jobs[0] and all("重打 REPRINT" in j for j in jobs[1:])
    assert q.printed_count("tx-1") == 2 and q.printed_count("tx-2") == 0
    job = q.get(ids[1])
    assert job is not None and job["reprint"] is True and job["copies"] == 2 and job["error"] is None
    assert ("printer.state", {"at": events[0][1]["at"], "printer": "receipt", "state": "ok"}) in events
    assert q.printer_states() == {"receipt": "ok"}


def test_paper_out_waits_then_prints_once_after_refill(make_queue: Any, printer_sim: PrinterSim) -> None:
    printer_sim.state = "paper_out"
    q, events = make_queue(printer_sim.uri)
    first = q.submit("tx-1", receipt(), "receipt")
    second = q.submit("tx-2", receipt(), "receipt")
    wait_for(lambda: (q.get(first) or {}).get("attempts", 0) >= 2)
    # Between retries the head job is queued (briefly "printing" while tried).
    assert state(q, first) in ("queued", "printing") and state(q, second) == "queued"
    assert "paper out" in str((q.get(first) or {})["error"])
    assert q.printer_states() == {"receipt": "paper_out"}
    assert printer_sim.received == b"" and printer_sim.discarded == b""
    printer_sim.state = "online"
    wait_for(lambda: state(q, second) == "done")
    assert state(q, first) == "done"
    assert len(printer_sim.jobs_text(42)) == 2
    assert [d["state"] for n, d in events if n == "printer.state"][:2] == ["paper_out", "ok"]


def test_connection_dropped_mid_job_is_unknown_and_not_reprinted(
    make_queue: Any, printer_sim: PrinterSim
) -> None:
    printer_sim.drop_next_connection_after(300)
    q, _ = make_queue(printer_sim.uri)
    cut_off = q.submit("tx-1", receipt() * 20, "receipt")
    wait_for(lambda: state(q, cut_off) == "unknown")
    after = q.submit("tx-2", receipt(), "receipt")
    wait_for(lambda: state(q, after) == "done")
    time.sleep(0.3)
    assert state(q, cut_off) == "unknown" and (q.get(cut_off) or {})["attempts"] == 1
    assert q.printed_count("tx-1") == 1  # an unknown receipt may exist: the next one is a reprint


def test_printer_off_waits_and_recovers(make_queue: Any, printer_sim: PrinterSim) -> None:
    port = printer_sim.port
    printer_sim.stop()
    q, _ = make_queue(f"tcp://127.0.0.1:{port}?timeout=1")
    job = q.submit("tx-1", receipt(), "receipt")
    wait_for(lambda: q.printer_states()["receipt"] == "offline")
    assert state(q, job) in ("queued", "printing")
    with PrinterSim(port=port) as back:
        wait_for(lambda: state(q, job) == "done")
        assert len(back.jobs_text(42)) == 1


def test_jobs_survive_a_restart_and_a_crash_mid_print(
    tmp_path: Path, make_queue: Any, printer_sim: PrinterSim
) -> None:
    printer_sim.state = "paper_out"
    q, _ = make_queue(printer_sim.uri)
    waiting = q.submit("tx-1", receipt(), "receipt")
    q.stop()
    db = sqlite3.connect(tmp_path / "spool.db")
    insert = (
        "INSERT INTO print_jobs (job_id, tx_id, printer, copies, reprint, state, created_at, updated_at,"
        " data) VALUES (?, ?, ?, 1, 0, ?, 'x', 'x', x'00')"
    )
    with db:  # as if the process died while sending
        db.execute(insert, ("pj-crashed", "tx-0", "receipt", "printing"))
        db.execute(insert, ("pj-gone", "tx-9", "old-printer", "queued"))
    db.close()
    printer_sim.state = "online"
    q2, _ = make_queue(printer_sim.uri)
    wait_for(lambda: state(q2, waiting) == "done")
    crashed = q2.get("pj-crashed")
    assert crashed is not None and crashed["state"] == "unknown" and "restart" in crashed["error"]
    assert state(q2, "pj-gone") == "failed"
    assert len(printer_sim.jobs_text(42)) == 1


def test_submit_validation(make_queue: Any) -> None:
    q, _ = make_queue("memory://")
    with pytest.raises(PrinterNotConfigured):
        q.submit("tx-1", b"x", "kitchen")
    for bad in ({"copies": 0}, {"copies": 4}, {"data": b""}, {"tx_id": ""}):
        args: dict[str, Any] = {"tx_id": "tx-1", "data": b"x", "printer": "receipt", **bad}
        with pytest.raises(ValidationFailed):
            q.submit(**args)
    assert q.get("pj-nope") is None


def test_preview_printer_writes_files(make_queue: Any, tmp_path: Path) -> None:
    q, _ = make_queue(f"preview://{tmp_path}/receipts")
    job = q.submit("tx-1", receipt(), "receipt")
    wait_for(lambda: state(q, job) == "done")
    assert (tmp_path / "receipts" / f"{job}.png").stat().st_size > 0
    assert (tmp_path / "receipts" / f"{job}.bin").read_bytes() == receipt()
