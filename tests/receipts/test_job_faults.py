"""A print worker survives database errors: real faults in the real table (a SQLite trigger that
refuses the worker's writes while the test keeps it armed, a full disk), with the printer emulator.

The trigger cannot count itself down (the write it refuses is rolled back with everything the
trigger did), so the test waits for the failures it wants to see in the log, then disarms it.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.printers import Printer, PrinterConfig
from terminald.receipts.jobs import PrintQueue
from terminald.receipts.templates import render_receipt
from terminald.sim.printer import PrinterSim
from tests.api.helpers import sale
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.tmpfs import fill
from tests.waiting import wait_for

from .samples import DOCUMENTS

INSTITUTION = "示例大药房"


def receipt(reprint: bool = False) -> bytes:
    tx, kwargs = DOCUMENTS["online"]
    return render_receipt(tx, reprint=reprint, institution=INSTITUTION, terminal_id="T0001", columns=42,
                          chinese="fs", language="zh-CN", **kwargs)


def inject(db: Path, new_state: str) -> None:
    """Until `heal`, every update of a job to `new_state` fails, as on a full or locked disk."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS test_faults (state TEXT PRIMARY KEY)")
        conn.execute("INSERT OR IGNORE INTO test_faults VALUES (?)", (new_state,))
        conn.execute(
            "CREATE TRIGGER IF NOT EXISTS test_fault BEFORE UPDATE OF state ON print_jobs"
            " WHEN EXISTS (SELECT 1 FROM test_faults WHERE state = NEW.state)"
            " BEGIN SELECT RAISE(ABORT, 'injected fault: disk I/O error'); END"
        )
    finally:
        conn.close()


def heal(db: Path, new_state: str) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("DELETE FROM test_faults WHERE state = ?", (new_state,))
    finally:
        conn.close()


def errors(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.ERROR and all(w in r.getMessage() for w in words)]


@pytest.fixture
def make_queue() -> Iterator[Callable[..., PrintQueue]]:
    queues: list[PrintQueue] = []

    def make(db: Path, uri: str) -> PrintQueue:
        printer = Printer(PrinterConfig(name="receipt", uri=uri, columns=42))
        printer.status_timeout_s = 0.2
        q = PrintQueue(db, {"receipt": printer}, poll_s=0.1, retry_min_s=0.05, retry_max_s=0.2)
        queues.append(q)
        q.start()
        return q

    yield make
    for q in queues:
        q.stop()


def state(q: PrintQueue, job_id: str) -> str:
    job = q.get(job_id)
    assert job is not None
    return str(job["state"])


def workers_alive(q: PrintQueue) -> bool:
    return bool(q._threads) and all(t.is_alive() for t in q._threads)


@pytest.mark.parametrize("times", [1, 3])
def test_recording_done_fails_then_the_next_job_prints(
    tmp_path: Path, make_queue: Any, printer_sim: PrinterSim, caplog: pytest.LogCaptureFixture, times: int
) -> None:
    """The job was sent, but the database refuses to record it (`times` times or more): the worker
    keeps trying, never sends it again, and goes on to the next job once the database is back."""
    db = tmp_path / "spool.db"
    q = make_queue(db, printer_sim.uri)
    inject(db, "done")
    caplog.set_level(logging.INFO, logger="terminald.receipts.jobs")
    first = q.submit("tx-1", receipt(), "receipt")
    second = q.submit("tx-2", receipt(True), "receipt")
    wait_for(lambda: len(errors(caplog, first, "cannot record")) >= times, what=f"{times} refused writes")
    assert state(q, first) == "printing" and state(q, second) == "queued"  # neither lost nor sent twice
    assert len(printer_sim.jobs_text(42)) == 1 and workers_alive(q)
    heal(db, "done")
    wait_for(lambda: state(q, second) == "done", what="the job after the fault printed")
    assert state(q, first) == "done"
    jobs = printer_sim.jobs_text(42)
    assert len(jobs) == 2 and "REPRINT" not in jobs[0] and "REPRINT" in jobs[1]  # the first printed once
    assert workers_alive(q)
    refused = errors(caplog)
    assert len(refused) >= times and all(first in m and "injected fault" in m for m in refused), refused
    recovered = [r.getMessage() for r in caplog.records if "recorded as done after" in r.getMessage()]
    assert len(recovered) == 1 and first in recovered[0], recovered
    assert not any(INSTITUTION in r.getMessage() or r.exc_info for r in caplog.records)  # no content, no trace


def test_taking_a_job_fails_then_it_prints_once(
    tmp_path: Path, make_queue: Any, printer_sim: PrinterSim, caplog: pytest.LogCaptureFixture
) -> None:
    """The database refuses the worker's take (queued -> printing): nothing is sent, the job says
    why it is late, and it prints once the database takes writes again."""
    db = tmp_path / "spool.db"
    printer_sim.state = "paper_out"  # hold the job until the fault is in place
    q = make_queue(db, printer_sim.uri)
    caplog.set_level(logging.INFO, logger="terminald.receipts.jobs")
    first = q.submit("tx-1", receipt(), "receipt")
    wait_for(lambda: (q.get(first) or {}).get("attempts", 0) >= 1, what="a refused attempt")
    inject(db, "printing")
    printer_sim.state = "online"
    wait_for(lambda: len(errors(caplog, f"job {first} failed", "injected fault")) >= 2, what="two refused takes")
    job = q.get(first)
    assert job is not None and job["state"] == "queued" and "database refused" in job["error"], job
    assert printer_sim.received == b"" and workers_alive(q)
    heal(db, "printing")
    second = q.submit("tx-2", receipt(), "receipt")
    wait_for(lambda: state(q, second) == "done", what="the next job printed")
    assert state(q, first) == "done" and len(printer_sim.jobs_text(42)) == 2
    assert printer_sim.discarded == b"" and workers_alive(q)


def test_a_full_disk(tiny_fs: Path, make_queue: Any, printer_sim: PrinterSim,
                     caplog: pytest.LogCaptureFixture) -> None:
    """The spool's disk fills up while a job waits for paper: the worker cannot write the job's row
    (SQLite: database or disk is full), so it sends nothing, keeps serving, and prints the job once
    when space is freed. Needs root for the tmpfs (skipped otherwise)."""
    db = tiny_fs / "spool.db"
    printer_sim.state = "paper_out"
    q = make_queue(db, printer_sim.uri)
    caplog.set_level(logging.INFO, logger="terminald.receipts.jobs")
    job = q.submit("tx-1", receipt(), "receipt")
    wait_for(lambda: (q.get(job) or {}).get("attempts", 0) >= 1, what="a refused attempt")
    filler = fill(tiny_fs)
    try:
        printer_sim.state = "online"
        wait_for(lambda: any("full" in r.getMessage() and job in r.getMessage() for r in caplog.records),
                 what="the worker hit the full disk")
        assert state(q, job) == "queued" and printer_sim.received == b"" and workers_alive(q)
    finally:
        filler.unlink()
    wait_for(lambda: state(q, job) == "done", what="the job printed after space was freed")
    after = q.submit("tx-2", receipt(), "receipt")
    wait_for(lambda: state(q, after) == "done")
    assert len(printer_sim.jobs_text(42)) == 2


def test_through_the_daemon(printer_sim: PrinterSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    """The real daemon: its database refuses to record a printed receipt; the receipt is not printed
    again, the next one prints, and the journal names the job, not what it printed."""
    d = daemon_proc(config="[offline]\nrequire_card_present = false\n"
                    + f'[[printers]]\nname = "counter"\nuri = "{printer_sim.uri}"\n')
    api = d.client()
    tx_id = api.post("/v1/transactions", params={"wait": 0}, json=sale(),
                     headers={"Idempotency-Key": "fault-1"}).json()["id"]
    db = d.state_dir / "spool.db"
    inject(db, "done")
    first = api.post(f"/v1/transactions/{tx_id}/receipt", json={}).json()["job_id"]
    wait_for(lambda: any("cannot record" in ln and first in ln for ln in d.stderr_text().splitlines()),
             what="the daemon hit the fault")
    assert api.get(f"/v1/print-jobs/{first}").json()["state"] == "printing"
    heal(db, "done")
    second = api.post(f"/v1/transactions/{tx_id}/receipt", json={}).json()["job_id"]
    wait_for(lambda: api.get(f"/v1/print-jobs/{second}").json()["state"] == "done", what="the next receipt")
    assert api.get(f"/v1/print-jobs/{first}").json()["state"] == "done"
    jobs = printer_sim.jobs_text()
    assert len(jobs) == 2 and "REPRINT" not in jobs[0] and "REPRINT" in jobs[1]
    log = [line for line in d.stderr_text().splitlines() if first in line]
    assert any("cannot record" in line and "injected fault" in line for line in log), d.stderr_tail()
    assert not any("阿莫西林" in line or "王芳" in line for line in d.stderr_text().splitlines())
