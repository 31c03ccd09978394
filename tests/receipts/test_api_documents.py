"""Documents through the API, as a counter uses them: a real daemon, the central simulator
and the printer emulator; what was printed is read back with the project's decoder."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from drivers.printers.escpos import display_width
from terminald.sim.central import CentralSim
from terminald.sim.printer import PrinterSim
from tests.api.helpers import assert_problem, central_config, post_tx, revoke, sale
from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for

COLUMNS = 32


def printed(api: httpx.Client, printer: PrinterSim, tx_id: str, document: str) -> tuple[bool, str]:
    """Print one document; (marked reprint?, the text that came out of the printer)."""
    before = len(printer.jobs_text(COLUMNS))
    r = api.post(f"/v1/transactions/{tx_id}/receipt", json={"document": document})
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 15
    while api.get(f"/v1/print-jobs/{job_id}").json()["state"] != "done":
        assert time.monotonic() < deadline, api.get(f"/v1/print-jobs/{job_id}").json()
        time.sleep(0.05)
    wait_for(lambda: len(printer.jobs_text(COLUMNS)) > before, what="the printer has the job")
    return bool(r.json()["reprint"]), printer.jobs_text(COLUMNS)[-1]


def line(text: str, start: str) -> str:
    found = [ln for ln in text.splitlines() if ln.startswith(start)]
    assert len(found) == 1, (start, text)
    return found[0]


def yuan(fen: int) -> str:
    return f"¥{fen // 100}.{fen % 100:02d}"


def test_timeout_sale_from_receipt_to_notice(central_sim: CentralSim, printer_sim: PrinterSim,
                                             daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config=central_config(central_sim.url) + "[offline]\nrequire_card_present = false\n"
                    + f'[[printers]]\nname = "counter"\nuri = "{printer_sim.uri}"\ncolumns = {COLUMNS}\n')
    api = d.client()
    # Central up, but the POS does not wait: answered "pending", the patient pays the total.
    # Central's answers are lost until the receipt is out: else the uploader may settle the sale
    # before the receipt is rendered, and the receipt (rightly) states the settlement.
    central_sim.control(drop_after_commit_rate=1.0)
    answer: dict[str, Any] = post_tx(api, sale(), "timeout-1", wait=0).json()
    assert answer["status"] == "pending" and answer["offline"] is True, answer
    tx_id, total = answer["id"], answer["total_fen"]

    reprint, receipt = printed(api, printer_sim, tx_id, "receipt")
    assert reprint is False and "REPRINT" not in receipt
    assert "离线交易 OFFLINE — 中心未应答" in receipt
    assert line(receipt, "现金应付").endswith(yuan(total)) and "结算处理中" not in receipt
    assert all(display_width(ln) <= COLUMNS for ln in receipt.splitlines() if not ln.startswith("[QR"))
    central_sim.control(drop_after_commit_rate=0.0)

    wait_for(lambda: api.get(f"/v1/transactions/{tx_id}").json()["status"] == "settled", timeout_s=20,
             what="central settles the sale")
    settled = api.get(f"/v1/transactions/{tx_id}").json()
    owed = settled["refund_owed_fen"]
    assert settled["offline"] is True and owed > 0, settled

    # The first notice is an original although the receipt was printed; the second is a reprint.
    reprint, notice = printed(api, printer_sim, tx_id, "notice")
    assert reprint is False and "REPRINT" not in notice
    assert line(notice, "应退患者").endswith(yuan(owed))
    reprint, again = printed(api, printer_sim, tx_id, "notice")
    assert reprint is True and again.count("重打 REPRINT") == 2
    reprint, receipt = printed(api, printer_sim, tx_id, "receipt")
    assert reprint is True and line(receipt, "已全额付款").endswith(yuan(total))
    assert line(receipt, "应退患者").endswith(yuan(owed))

    # Revoked before central confirms: "to be confirmed", and the patient gets back what they paid.
    rv = post_tx(api, revoke(tx_id), "revoke-1", wait=0).json()
    assert rv["kind"] == "revoke" and rv["status"] == "pending", rv
    reprint, revoked = printed(api, printer_sim, rv["id"], "receipt")
    assert reprint is False and "撤销待确认" in revoked and "原凭条作废" not in revoked
    assert line(revoked, "退还患者").endswith(yuan(settled["paid_at_counter_fen"]))


def test_two_requests_at_once_print_one_original(printer_sim: PrinterSim,
                                                 daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config="[offline]\nrequire_card_present = false\n"
                    + f'[[printers]]\nname = "counter"\nuri = "{printer_sim.uri}"\n')
    api = d.client()
    tx_id = post_tx(api, sale(), "race-1").json()["id"]

    def submit(_: int) -> bool:
        with d.client() as own:
            r = own.post(f"/v1/transactions/{tx_id}/receipt", json={})
            assert r.status_code == 202, r.text
            return bool(r.json()["reprint"])

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(submit, range(4)))
    assert sorted(answers) == [False, True, True, True]


def printer_config(printer: PrinterSim) -> str:
    return ("[offline]\nrequire_card_present = false\n"
            f'[[printers]]\nname = "counter"\nuri = "{printer.uri}"\ncolumns = {COLUMNS}\n')


def job_state(api: httpx.Client, job_id: str) -> str:
    return str(api.get(f"/v1/print-jobs/{job_id}").json()["state"])


def test_a_retried_receipt_request_prints_once(printer_sim: PrinterSim,
                                               daemon_proc: Callable[..., DaemonProcess]) -> None:
    """The POS lost the answer and sends the request again (several times, at once): one receipt."""
    d = daemon_proc(config=printer_config(printer_sim))
    api = d.client()
    tx_id = post_tx(api, sale(), "order-7").json()["id"]
    other_tx = post_tx(api, sale(), "order-8").json()["id"]
    key = {"Idempotency-Key": "order-7"}  # the POS's order id, also the sale's key: kept apart

    def send(_: int) -> httpx.Response:
        with d.client() as own:
            return own.post(f"/v1/transactions/{tx_id}/receipt", json={"document": "receipt"}, headers=key)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(send, range(4)))
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 202], [r.text for r in answers]
    first = answers[0].json()
    assert all(r.json() == first for r in answers)
    assert first == {"job_id": first["job_id"], "printer": "counter", "reprint": False, "document": "receipt"}
    again = api.post(f"/v1/transactions/{tx_id}/receipt", json={}, headers=key)  # the same request, defaults
    assert again.status_code == 200 and again.json() == first
    wait_for(lambda: job_state(api, first["job_id"]) == "done", what="the receipt printed")
    assert api.post(f"/v1/transactions/{tx_id}/receipt", headers=key).json() == first  # no body at all: same
    assert api.get(f"/v1/print-jobs/{first['job_id']}").json()["idempotency_key"] == "order-7"

    # The same key with another request is refused, whatever differs.
    for path, body in ((f"/v1/transactions/{tx_id}/receipt", {"document": "notice"}),
                       (f"/v1/transactions/{tx_id}/receipt", {"copies": 2}),
                       (f"/v1/transactions/{other_tx}/receipt", {})):
        problem = assert_problem(api.post(path, json=body, headers=key), 409, "idempotency_conflict")
        assert problem["existing_job_id"] == first["job_id"]
    for bad in ("x" * 65, ""):
        assert_problem(api.post(f"/v1/transactions/{tx_id}/receipt", json={}, headers={"Idempotency-Key": bad}),
                       422, "validation_failed")

    # Another key is another copy: a reprint. Once it printed, the worker went past everything
    # queued before it, so the count below is final: the retried request printed once.
    later = api.post(f"/v1/transactions/{tx_id}/receipt", json={}, headers={"Idempotency-Key": "order-7-copy"})
    assert later.status_code == 202 and later.json()["reprint"] is True
    wait_for(lambda: job_state(api, later.json()["job_id"]) == "done", what="the later receipt printed")
    wait_for(lambda: len(printer_sim.jobs_text(COLUMNS)) >= 2, what="the printer has both")
    jobs = printer_sim.jobs_text(COLUMNS)
    assert ["REPRINT" in j for j in jobs] == [False, True]


def test_cancel_a_receipt_stuck_on_paper_out(printer_sim: PrinterSim,
                                             daemon_proc: Callable[..., DaemonProcess]) -> None:
    """The printer ran out of paper and the patient left: the job is cancelled, never prints when
    the paper is back, and the sale's next receipt is still the original."""
    printer_sim.state = "paper_out"
    d = daemon_proc(config=printer_config(printer_sim))
    api = d.client()
    tx_id = post_tx(api, sale(), "paper-1").json()["id"]
    stuck = api.post(f"/v1/transactions/{tx_id}/receipt", json={}).json()["job_id"]
    wait_for(lambda: "paper out" in (api.get(f"/v1/print-jobs/{stuck}").json()["error"] or ""),
             what="the job waits for paper")
    cancelled = api.delete(f"/v1/print-jobs/{stuck}")
    assert cancelled.status_code == 200, cancelled.text
    job = cancelled.json()
    assert job["state"] == "cancelled" and job["job_id"] == stuck and "paper out" in job["error"], job
    assert_problem(api.delete(f"/v1/print-jobs/{stuck}"), 409, "invalid_transition")

    printer_sim.state = "online"
    later = api.post(f"/v1/transactions/{tx_id}/receipt", json={})
    assert later.status_code == 202 and later.json()["reprint"] is False, later.text
    # Jobs print in order: once the later one is done, the worker has passed the cancelled one.
    wait_for(lambda: job_state(api, later.json()["job_id"]) == "done", what="the later receipt printed")
    wait_for(lambda: printer_sim.jobs_text(COLUMNS), what="the printer has it")
    jobs = printer_sim.jobs_text(COLUMNS)
    assert len(jobs) == 1 and "REPRINT" not in jobs[0]
    assert printer_sim.discarded == b"" and job_state(api, stuck) == "cancelled"
    assert_problem(api.delete(f"/v1/print-jobs/{later.json()['job_id']}"), 409, "invalid_transition")
    assert_problem(api.delete("/v1/print-jobs/pj-nope"), 404, "not_found")


def test_retry_a_receipt_whose_outcome_is_unknown(printer_sim: PrinterSim,
                                                  daemon_proc: Callable[..., DaemonProcess]) -> None:
    """The connection dropped mid-receipt: staff look, and print it again with `terminald print
    retry`; the new copy says REPRINT (the first may have come out)."""
    d = daemon_proc(config=printer_config(printer_sim))
    api = d.client()
    tx_id = post_tx(api, sale(), "cut-1").json()["id"]
    printer_sim.drop_next_connection_after(100)
    cut = api.post(f"/v1/transactions/{tx_id}/receipt", json={}).json()["job_id"]
    wait_for(lambda: job_state(api, cut) == "unknown", what="the transfer broke")
    printer_sim.clear()

    done = subprocess.run([sys.executable, "-m", "terminald.cli", "print", "retry", cut], env=d.env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    old = api.get(f"/v1/print-jobs/{cut}").json()
    new_id = old["retried_by"]
    assert old["state"] == "unknown" and new_id and new_id in done.stdout
    new = api.get(f"/v1/print-jobs/{new_id}").json()
    assert new["retry_of"] == cut and new["reprint"] is True and new["document"] == "receipt"
    wait_for(lambda: job_state(api, new_id) == "done", what="the retry printed")
    wait_for(lambda: printer_sim.jobs_text(COLUMNS), what="the printer has it")
    assert [j.count("重打 REPRINT") for j in printer_sim.jobs_text(COLUMNS)] == [2]

    # Once only; and only an unknown job.
    problem = assert_problem(api.post(f"/v1/print-jobs/{cut}/retry"), 409, "invalid_transition")
    assert problem["retried_by"] == new_id
    assert_problem(api.post(f"/v1/print-jobs/{new_id}/retry"), 409, "invalid_transition")
    assert_problem(api.post("/v1/print-jobs/pj-nope/retry"), 404, "not_found")
    refused = subprocess.run([sys.executable, "-m", "terminald.cli", "print", "retry", new_id], env=d.env,
                             capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1 and "invalid_transition" in refused.stdout, refused.stdout
