"""Receipts (print, reprint, preview), print jobs, devices, status, outages, reconciliation, metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from terminald.sim.central import CentralSim
from terminald.sim.printer import PrinterSim
from tests.api.helpers import TYPED_CARD, assert_problem, central_config, item, post_tx, revoke, sale
from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for

OFFLINE_TYPED = "[offline]\nrequire_card_present = false\n"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def wait_job(api: httpx.Client, job_id: str, timeout_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        r = api.get(f"/v1/print-jobs/{job_id}")
        assert r.status_code == 200, r.text
        job: dict[str, Any] = r.json()
        if job["state"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.05)


def test_print_reprint_and_preview(printer_sim: PrinterSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc(config=OFFLINE_TYPED + f'[[printers]]\nname = "counter"\nuri = "{printer_sim.uri}"\n'
                      ).client()
    tx = post_tx(api, sale(), "rcpt").json()
    first = api.post(f"/v1/transactions/{tx['id']}/receipt", json={})
    assert first.status_code == 202, first.text
    assert first.json() == {"job_id": first.json()["job_id"], "printer": "counter", "reprint": False,
                            "document": "receipt"}
    job = wait_job(api, first.json()["job_id"])
    assert job["state"] == "done", job
    assert {k: job[k] for k in ("tx_id", "document", "printer", "copies", "reprint", "error", "idempotency_key",
                                "retry_of", "retried_by")} == {
        "tx_id": tx["id"], "document": "receipt", "printer": "counter", "copies": 1, "reprint": False,
        "error": None, "idempotency_key": None, "retry_of": None, "retried_by": None}
    second = api.post(f"/v1/transactions/{tx['id']}/receipt", json={"printer": "counter", "copies": 2})
    assert second.status_code == 202 and second.json()["reprint"] is True
    assert wait_job(api, second.json()["job_id"])["state"] == "done"
    assert len(printer_sim.jobs_text()) >= 2
    # The receipt never carries the full identity number.
    assert all("110101199001011234" not in text for text in printer_sim.jobs_text())

    png = api.get(f"/v1/transactions/{tx['id']}/receipt.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content.startswith(PNG_MAGIC)

    devices = api.get("/v1/devices").json()
    assert [p["name"] for p in devices["printers"]] == ["counter"]
    assert devices["printers"][0]["state"] in ("ok", "paper_near_end", "paper_out", "cover_open", "offline",
                                               "unknown")

    assert_problem(api.post(f"/v1/transactions/{tx['id']}/receipt", json={"printer": "nope"}),
                   503, "printer_unavailable")
    for body in ({"copies": 0}, {"copies": 4}, {"document": "poster"}, {"colour": "red"}):
        assert_problem(api.post(f"/v1/transactions/{tx['id']}/receipt", json=body), 422, "validation_failed")
    assert_problem(api.post("/v1/transactions/nope/receipt", json={}), 404, "not_found")
    assert_problem(api.get("/v1/transactions/nope/receipt.png"), 404, "not_found")
    assert_problem(api.get("/v1/print-jobs/nope"), 404, "not_found")
    assert_problem(api.delete("/v1/print-jobs/nope"), 404, "not_found")
    assert_problem(api.post("/v1/print-jobs/nope/retry"), 404, "not_found")
    # A finished job can be neither cancelled nor retried.
    assert_problem(api.delete(f"/v1/print-jobs/{first.json()['job_id']}"), 409, "invalid_transition")
    assert_problem(api.post(f"/v1/print-jobs/{first.json()['job_id']}/retry"), 409, "invalid_transition")
    assert_problem(api.post("/v1/transactions/nope/receipt", json={}, headers={"Idempotency-Key": "k"}),
                   404, "not_found")


def test_no_printer_configured(daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc(config="printers = []\n" + OFFLINE_TYPED).client()
    tx = post_tx(api, sale(), "np").json()
    assert_problem(api.post(f"/v1/transactions/{tx['id']}/receipt", json={}), 503, "printer_unavailable")
    # The preview needs no printer.
    assert api.get(f"/v1/transactions/{tx['id']}/receipt.png").content.startswith(PNG_MAGIC)
    assert api.get("/v1/devices").json()["printers"] == []


def test_status_and_instance_id(daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config=OFFLINE_TYPED + '[terminal]\nid = "T0042"\n')
    api = d.client()
    status = api.get("/v1/status").json()
    for key in ("terminal_id", "version", "instance_id", "started_at", "mode", "upstream", "spool", "devices"):
        assert key in status, key
    assert status["terminal_id"] == "T0042" and status["mode"] == "offline"
    for key in ("state", "last_ok_at", "last_error", "outage_since", "planned_downtime"):
        assert key in status["upstream"], key
    for key in ("pending", "pending_amount_fen", "oldest_pending_at", "rejected_unresolved", "settled_total",
                "last_seq"):
        assert key in status["spool"], key
    assert {"readers", "printers"} <= status["devices"].keys()
    datetime.fromisoformat(status["started_at"])
    post_tx(api, sale(), "s1")
    spool = api.get("/v1/status").json()["spool"]
    assert spool["pending"] == 1 and spool["pending_amount_fen"] == 2500 and spool["last_seq"] == 1
    assert api.get("/v1/status").json()["instance_id"] == status["instance_id"]
    d.restart()
    assert d.client().get("/v1/status").json()["instance_id"] != status["instance_id"]


def test_reports_and_metrics(daemon_proc: Callable[..., DaemonProcess]) -> None:
    api = daemon_proc(config=OFFLINE_TYPED).client()
    tx = post_tx(api, sale(business_time="2026-03-04T10:00:00+08:00"), "rep").json()
    outages = api.get("/v1/outages")
    assert outages.status_code == 200 and isinstance(outages.json(), list)
    rec = api.get("/v1/reconciliation", params={"date": "2026-03-04"})
    assert rec.status_code == 200, rec.text
    body = rec.json()
    # A pending sale carries no money yet: only what central accepted is counted.
    assert body["date"] == "2026-03-04" and tx["status"] == "pending"
    assert body["local"] == {"count": 0, "total_fen": 0, "fund_paid_fen": 0, "account_paid_fen": 0,
                             "by_status": {"pending": 1}}
    assert body["central"] is None and body["matches"] is False and body["differences"] == []
    assert body["error"] == "no upstream configured"
    for bad in ("2026-3-4", "yesterday", ""):
        assert_problem(api.get("/v1/reconciliation", params={"date": bad}), 422, "validation_failed")
    assert_problem(api.get("/v1/reconciliation"), 422, "validation_failed")
    metrics = api.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")


def test_reconciliation_against_central(central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    """Through the daemon: settled sales and a revoke give equal net sums at both ends; a sale central
    committed whose answer was lost is named until it is uploaded again."""
    day = datetime.now(ZoneInfo("Asia/Shanghai")).date().isoformat()
    central_sim.control(freeze=["A10000009"])
    d = daemon_proc(config=central_config(central_sim.url) + OFFLINE_TYPED)  # the default zone: Asia/Shanghai
    api = d.client()
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "online", what="online")
    first = post_tx(api, sale(items=[item(unit_price_fen=1001, qty=1)]), "rc-1", wait=10).json()
    second = post_tx(api, sale(items=[item(unit_price_fen=999, qty=3)]), "rc-2", wait=10).json()
    frozen = post_tx(api, sale(card={**TYPED_CARD, "card_number": "A10000009"}), "rc-3", wait=10).json()
    assert [t["status"] for t in (first, second, frozen)] == ["settled", "settled", "rejected"]
    revoked = post_tx(api, revoke(first["id"]), "rc-4", wait=10).json()
    assert revoked["status"] == "settled" and revoked["total_fen"] == -1001
    assert revoked["settlement"]["fund_paid_fen"] == -first["settlement"]["fund_paid_fen"]

    body = api.get("/v1/reconciliation", params={"date": day}).json()
    fund = second["settlement"]["fund_paid_fen"]
    expected = {"count": 3, "total_fen": 2997, "fund_paid_fen": fund, "account_paid_fen": 0}
    assert body["local"] == {**expected, "by_status": {"accepted": 3, "rejected": 1}}
    assert body["central"] == {**expected, "by_status": {"accepted": 3, "rejected": 1}}
    assert body["matches"] is True and body["differences"] == []

    central_sim.control(drop_after_commit_rate=1.0)
    lost = post_tx(api, sale(), "rc-5", wait=0).json()
    wait_for(lambda: len(central_sim.records("T0001")) == 5, what="central committed the sale")
    body = api.get("/v1/reconciliation", params={"date": day}).json()
    assert body["matches"] is False
    assert {"figure": "count", "local": 3, "central": 4} in body["differences"]
    named = [x for x in body["differences"] if "record_id" in x]
    assert [(x["record_id"], x["why"]) for x in named] == [(lost["id"], "pending")]
    central_sim.control(drop_after_commit_rate=0.0)
    wait_for(lambda: api.get(f"/v1/transactions/{lost['id']}").json()["status"] == "settled", what="settled")
    assert api.get("/v1/reconciliation", params={"date": day}).json()["matches"] is True


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/v1/transactions"), ("PUT", "/v1/status")])
def test_wrong_method_is_a_problem(daemon_proc: Callable[..., DaemonProcess], method: str, path: str) -> None:
    r = daemon_proc().client().request(method, path)
    assert_problem(r, 405, "method_not_allowed")
