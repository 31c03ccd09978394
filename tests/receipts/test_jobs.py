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
from terminald.errors import ConflictError, NotFoundError, PrinterNotConfigured, ValidationFailed
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
    assert schema_version(db, "print_jobs") == len(MIGRATIONS) == 3
    with pytest.raises(sqlite3.IntegrityError):  # the column only takes the two kinds
        db.execute("UPDATE print_jobs SET document = 'poster'")
    db.close()


def test_step_3_keeps_every_job_and_its_order(tmp_path: Path, make_queue: Any) -> None:
    """Migration step 3 rebuilds the table (to add `cancelled`, the key and the retry links):
    jobs of every state survive with their columns, a queued one still prints, in seq order."""
    db = connect(tmp_path / "spool.db")
    migrate(db, "print_jobs", MIGRATIONS[:2])
    insert = (
        "INSERT INTO print_jobs (job_id, tx_id, document, printer, copies, reprint, state, error, attempts,"
        " created_at, updated_at, data) VALUES (?, ?, ?, 'receipt', ?, ?, ?, ?, ?, 'c', 'u', ?)"
    )
    db.execute(insert, ("pj-done", "tx-1", "receipt", 1, 0, "done", None, 1, receipt()))
    db.execute(insert, ("pj-unknown", "tx-1", "notice", 2, 1, "unknown", "cut", 1, receipt(state="notice")))
    db.execute(insert, ("pj-failed", "tx-2", "receipt", 1, 0, "failed", "bad", 3, b"x"))
    db.execute(insert, ("pj-a", "tx-3", "receipt", 1, 0, "queued", None, 0, receipt()))
    db.execute(insert, ("pj-b", "tx-4", "receipt", 1, 0, "queued", None, 0, receipt(True)))
    db.close()
    q, _ = make_queue("memory://")
    wait_for(lambda: state(q, "pj-b") == "done")
    sent = q.printers["receipt"].transport.jobs  # type: ignore[attr-defined]
    assert [job_id for job_id, _ in sent] == ["pj-a", "pj-b"]
    unknown = q.get("pj-unknown")
    assert unknown is not None
    assert {k: unknown[k] for k in ("tx_id", "document", "copies", "reprint", "state", "error", "attempts",
                                    "created_at", "idempotency_key", "retry_of", "retried_by")} == {
        "tx_id": "tx-1", "document": "notice", "copies": 2, "reprint": True, "state": "unknown", "error": "cut",
        "attempts": 1, "created_at": "c", "idempotency_key": None, "retry_of": None, "retried_by": None}
    assert q.printed_count("tx-1") == 1 and q.printed_count("tx-1", "notice") == 1
    assert q.printed_count("tx-2") == 0
    # The new job goes after every old one.
    later = q.submit("tx-5", receipt(), "receipt")
    wait_for(lambda: state(q, later) == "done")
    q.stop()
    db = sqlite3.connect(tmp_path / "spool.db")
    seqs = dict(db.execute("SELECT job_id, seq FROM print_jobs").fetchall())
    assert seqs[later] > max(v for k, v in seqs.items() if k != later)
    with pytest.raises(sqlite3.IntegrityError):  # still only the known states
        db.execute("UPDATE print_jobs SET state = 'lost'")
    db.execute("UPDATE print_jobs SET idempotency_key = 'k1' WHERE job_id = 'pj-a'")
    with pytest.raises(sqlite3.IntegrityError):  # a key names one job
        db.execute("UPDATE print_jobs SET idempotency_key = 'k1' WHERE job_id = 'pj-b'")
    db.close()


def test_a_repeated_key_queues_one_job(make_queue: Any, printer_sim: PrinterSim) -> None:
    q, _ = make_queue(printer_sim.uri)
    rendered: list[bool] = []

    def render(reprint: bool) -> bytes:
        rendered.append(reprint)
        return receipt(reprint)

    first = q.submit_once("pos-1001-r", "tx-1", "receipt", render, "receipt")
    again = q.submit_once("pos-1001-r", "tx-1", "receipt", render, "receipt")
    assert first[1:] == (False, True) and again == (first[0], False, False)
    assert rendered == [False]  # the repeat rendered nothing
    wait_for(lambda: state(q, first[0]) == "done")
    assert q.submit_once("pos-1001-r", "tx-1", "receipt", render, "receipt") == (first[0], False, False)
    # The same key with anything else is refused and queues nothing.
    for other in (("tx-2", "receipt", 1), ("tx-1", "notice", 1), ("tx-1", "receipt", 2)):
        tx_id, document, copies = other
        with pytest.raises(ConflictError) as refused:
            q.submit_once("pos-1001-r", tx_id, document, render, "receipt", copies)
        assert refused.value.code == "idempotency_conflict" and refused.value.extra["existing_job_id"] == first[0]
    # Another key is another request: a reprint. No key at all: as before.
    second = q.submit_once("pos-1001-r2", "tx-1", "receipt", render, "receipt")
    assert second[1:] == (True, True)
    wait_for(lambda: state(q, second[0]) == "done")
    assert len(printer_sim.jobs_text(42)) == 2 and q.printed_count("tx-1") == 2
    job = q.get(first[0])
    assert job is not None and job["idempotency_key"] == "pos-1001-r"


def test_a_key_whose_render_failed_is_free(make_queue: Any) -> None:
    q, _ = make_queue("memory://")

    def broken(reprint: bool) -> bytes:
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        q.submit_once("k", "tx-1", "receipt", broken, "receipt")
    _, reprint, created = q.submit_once("k", "tx-1", "receipt", receipt, "receipt")
    assert (reprint, created) == (False, True) and q.printed_count("tx-1") == 1


def test_racing_repeats_of_one_key_queue_one_job(make_queue: Any) -> None:
    q, _ = make_queue("memory://?status=none")
    n = 8
    gate = threading.Barrier(n)
    answers: list[tuple[str, bool, bool]] = []

    def request() -> None:
        gate.wait()
        answers.append(q.submit_once("same", "tx-1", "receipt", receipt, "receipt"))

    threads = [threading.Thread(target=request) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({job_id for job_id, _, _ in answers}) == 1
    assert sorted(created for _, _, created in answers) == [False] * (n - 1) + [True]
    assert q.printed_count("tx-1") == 1


def test_cancel_a_job_waiting_for_paper(make_queue: Any, printer_sim: PrinterSim) -> None:
    """The patient has left: the job stuck on paper-out is cancelled and never prints, the
    next job prints, and the next receipt of that sale is still the original."""
    printer_sim.state = "paper_out"
    q, _ = make_queue(printer_sim.uri)
    stuck, reprint = q.submit_document("tx-1", "receipt", receipt, "receipt")
    assert reprint is False
    wait_for(lambda: (q.get(stuck) or {}).get("attempts", 0) >= 3, what="several refused attempts")
    cancelled = q.cancel(stuck)
    assert cancelled["state"] == "cancelled" and "paper out" in cancelled["error"], cancelled
    assert q.printed_count("tx-1") == 0
    for again in (lambda: q.cancel(stuck), lambda: q.cancel(stuck)):
        with pytest.raises(ConflictError) as refused:
            again()
        assert refused.value.code == "invalid_transition"
    printer_sim.state = "online"
    later, reprint = q.submit_document("tx-1", "receipt", receipt, "receipt")
    assert reprint is False  # the cancelled one put nothing on paper
    wait_for(lambda: state(q, later) == "done")  # printed in order: the worker went past the cancelled job
    assert len(printer_sim.jobs_text(42)) == 1 and "REPRINT" not in printer_sim.jobs_text(42)[0]
    assert printer_sim.discarded == b"" and state(q, stuck) == "cancelled"
    with pytest.raises(ConflictError):  # done: too late
        q.cancel(later)
    with pytest.raises(NotFoundError):
        q.cancel("pj-nope")


def test_a_job_the_worker_took_cannot_be_cancelled(tmp_path: Path) -> None:
    printer = Printer(PrinterConfig(name="receipt", uri="memory://", columns=42))
    q = PrintQueue(tmp_path / "spool.db", {"receipt": printer})  # not started: the test is the worker
    job_id = q.submit("tx-1", receipt(), "receipt")
    head = q._next_job("receipt")
    assert head is not None and head["job_id"] == job_id
    q._changed("UPDATE print_jobs SET state = 'printing' WHERE job_id = ? AND state = 'queued'", (job_id,))
    with pytest.raises(ConflictError) as refused:
        q.cancel(job_id)
    assert refused.value.extra["state"] == "printing"
    # And the other way round: cancelled first, the worker's take finds nothing and sends nothing.
    other = q.submit("tx-2", receipt(), "receipt")
    head = q._next_job("receipt")
    assert head is not None and head["job_id"] == other
    q.cancel(other)
    q._print("receipt", printer, head)
    assert printer.transport.jobs == [] and state(q, other) == "cancelled"  # type: ignore[attr-defined]
    q.stop()


def test_cancels_racing_the_worker(make_queue: Any) -> None:
    """Every job is either cancelled (and never sent) or taken (and the cancel refused)."""
    q, _ = make_queue("memory://")
    sent = q.printers["receipt"].transport.jobs  # type: ignore[attr-defined]
    outcomes: dict[str, str] = {}
    n = 0
    # Try to see both sides of the race; under load the cancel may win every time, which is no
    # fault (a taken job refusing its cancel is pinned by test_a_job_the_worker_took_cannot_be_cancelled).
    while n < 60 or (len(set(outcomes.values())) < 2 and n < 300):
        n += 1
        job_id = q.submit(f"tx-{n}", receipt(), "receipt")
        try:
            q.cancel(job_id)
            outcomes[job_id] = "cancelled"
        except ConflictError:
            outcomes[job_id] = "taken"
    last = q.submit("tx-last", receipt(), "receipt")
    wait_for(lambda: state(q, last) == "done")
    printed = {job_id for job_id, _ in sent}
    assert printed == {j for j, o in outcomes.items() if o == "taken"} | {last}
    assert all(state(q, j) == ("cancelled" if o == "cancelled" else "done") for j, o in outcomes.items())


def test_retry_an_unknown_job(make_queue: Any, printer_sim: PrinterSim) -> None:
    printer_sim.drop_next_connection_after(300)
    q, _ = make_queue(printer_sim.uri)
    cut_off, _ = q.submit_document("tx-1", "receipt", lambda r: receipt(r) * 20, "receipt", 2)
    wait_for(lambda: state(q, cut_off) == "unknown")
    printer_sim.clear()
    new = q.retry(cut_off, receipt)
    assert new["reprint"] is True and new["retry_of"] == cut_off and new["copies"] == 2
    assert new["document"] == "receipt" and new["tx_id"] == "tx-1" and new["printer"] == "receipt"
    wait_for(lambda: state(q, new["job_id"]) == "done")
    old = q.get(cut_off)
    assert old is not None and old["state"] == "unknown" and old["retried_by"] == new["job_id"]
    assert [("重打 REPRINT" in j) for j in printer_sim.jobs_text(42)] == [True, True]
    with pytest.raises(ConflictError) as twice:
        q.retry(cut_off, receipt)
    assert twice.value.code == "invalid_transition" and twice.value.extra["retried_by"] == new["job_id"]
    with pytest.raises(ConflictError):  # done: nothing to retry
        q.retryable(new["job_id"])
    with pytest.raises(NotFoundError):
        q.retry("pj-nope", receipt)

