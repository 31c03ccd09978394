"""Documents through the API, as a counter uses them: a real daemon, the central simulator
and the printer emulator; what was printed is read back with the project's decoder."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from drivers.printers.escpos import display_width
from terminald.sim.central import CentralSim
from terminald.sim.printer import PrinterSim
from tests.api.helpers import central_config, post_tx, revoke, sale
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
    answer: dict[str, Any] = post_tx(api, sale(), "timeout-1", wait=0).json()
    assert answer["status"] == "pending" and answer["offline"] is True, answer
    tx_id, total = answer["id"], answer["total_fen"]

    reprint, receipt = printed(api, printer_sim, tx_id, "receipt")
    assert reprint is False and "REPRINT" not in receipt
    assert "离线交易 OFFLINE — 系统停机期间" in receipt
    assert line(receipt, "现金应付").endswith(yuan(total)) and "结算处理中" not in receipt
    assert all(display_width(ln) <= COLUMNS for ln in receipt.splitlines() if not ln.startswith("[QR"))

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
