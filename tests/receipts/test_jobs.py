"""Durable print jobs against the printer emulator and the spool database."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.printers import Printer, PrinterConfig
from spool.store import connect, migrate, schema_version
from terminald.errors import PrinterNotConfigured, ValidationFailed
from terminald.receipts.jobs import MIGRATIONS, PrintQueue
from terminald.receipts.templates import render_receipt
from terminald.sim.printer import PrinterSim
from tests.waiting import wait_for

from .samples import DOCUMENTS

Events = list[tuple[str, dict[str, Any]]]


def receipt(reprint: bool = False, state: str = "online", language: str = "zh-CN") -> bytes:
    tx, kwargs = DOCUMENTS[state]
    return render_receipt(
        tx,
        reprint=reprint,
        institution="示例大药房",
        terminal_id="T0001",
        columns=42,
        chinese="fs",
        language=language,
        **kwargs,
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


def test_reprint_is_counted_per_document(make_queue: Any, printer_sim: PrinterSim) -> None:
    """The issue: the first notice of a sale whose receipt was printed came out as a reprint."""
    q, _ = make_queue(printer_sim.uri)
    issued = []
    for document in ("receipt", "notice", "notice", "receipt"):
        sample = "settled_after_outage" if document == "receipt" else "settled_after_outage_notice"
        issued.append(q.submit_document("tx-1", document, lambda reprint, s=sample: receipt(reprint, s), "receipt"))
    assert [reprint for _, reprint in issued] == [False, False, True, True]
    wait_for(lambda: all(state(q, job) == "done" for job, _ in issued))
    jobs = printer_sim.jobs_text(42)
    assert ["重打 REPRINT" in j for j in jobs] == [False, False, True, True]
    assert ["补录结算通知" in j for j in jobs] == [False, True, True, False]
    assert q.printed_count("tx-1") == 2 and q.printed_count("tx-1", "notice") == 2
    assert q.printed_count("tx-2", "notice") == 0
    job = q.get(issued[1][0])
    assert job is not None and job["document"] == "notice" and job["reprint"] is False
    with pytest.raises(ValidationFailed):
        q.submit_document("tx-1", "invoice", receipt, "receipt")


def test_a_failed_print_issued_nothing(make_queue: Any) -> None:
    q, _ = make_queue("memory://")
    job, reprint = q.submit_document("tx-1", "notice", lambda r: receipt(r, "notice"), "receipt")
    assert reprint is False
    q._update(job, state="failed", error="unprintable")
    assert q.printed_count("tx-1", "notice") == 0
    assert q.submit_document("tx-1", "notice", lambda r: receipt(r, "notice"), "receipt")[1] is False


def test_a_render_that_fails_queues_nothing(make_queue: Any) -> None:
    q, _ = make_queue("memory://")

    def broken(reprint: bool) -> bytes:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        q.submit_document("tx-1", "receipt", broken, "receipt")
    assert q.printed_count("tx-1") == 0
    assert q.submit_document("tx-1", "receipt", receipt, "receipt")[1] is False


@pytest.mark.parametrize("document", ["receipt", "notice"])
def test_concurrent_requests_get_one_original(make_queue: Any, document: str) -> None:
    """Requests racing for one sale: exactly one original, the rest reprints, even when
    rendering is slow enough for every request to have counted before any has queued."""
    q, _ = make_queue("memory://?status=none")
    n = 8
    gate = threading.Barrier(n)
    answers: list[bool] = []

    def slow(reprint: bool) -> bytes:
        time.sleep(0.02)
        return receipt(reprint)

    def request() -> None:
        gate.wait()
        answers.append(q.submit_document("tx-1", document, slow, "receipt")[1])

    threads = [threading.Thread(target=request) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(answers) == [False] + [True] * (n - 1)
    assert q.printed_count("tx-1", document) == n


def test_jobs_queued_before_the_document_column_are_classified(tmp_path: Path, make_queue: Any) -> None:
    """Migration step 2 adds `document`; a job from before it is a notice when its bytes carry
    a notice's title (Chinese or English), a receipt otherwise."""
    db = connect(tmp_path / "spool.db")
    migrate(db, "print_jobs", MIGRATIONS[:1])
    insert = (
        "INSERT INTO print_jobs (job_id, tx_id, printer, copies, reprint, state, created_at, updated_at,"
        " data) VALUES (?, 'tx-1', 'receipt', 1, ?, 'done', 'x', 'x', ?)"
    )
    db.execute(insert, ("pj-receipt", 0, receipt()))
    db.execute(insert, ("pj-notice", 1, receipt(state="notice")))
    db.execute(insert, ("pj-notice-en", 1, receipt(state="notice", language="en")))
    db.close()
    q, _ = make_queue("memory://")
    assert [(q.get(j) or {})["document"] for j in ("pj-receipt", "pj-notice", "pj-notice-en")] == [
        "receipt", "notice", "notice"]
    assert q.printed_count("tx-1") == 1 and q.printed_count("tx-1", "notice") == 2
    q.stop()
    db = sqlite3.connect(tmp_path / "spool.db")
    assert schema_version(db, "print_jobs") == len(MIGRATIONS) == 2
    with pytest.raises(sqlite3.IntegrityError):  # the column only takes the two kinds
        db.execute("UPDATE print_jobs SET document = 'poster'")
    db.close()
