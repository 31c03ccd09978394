"""The thin slice, through every real part at once:
card (pyscard -> pcscd -> vpcd -> emulator) -> API -> spool (SQLite on disk)
-> uploader -> central simulator (HTTP), and the receipt to a TCP printer.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = pytest.mark.pcsc


def sale(card_read_id: str) -> dict[str, Any]:
    return {
        "kind": "settlement",
        "card_read_id": card_read_id,
        "items": [{"code": "XA01", "name": "阿莫西林胶囊", "qty": 2, "unit_price_fen": 1250, "amount_fen": 2500},
                  {"code": "XB02", "name": "布洛芬缓释胶囊", "qty": 0.5, "unit_price_fen": 999, "amount_fen": 500}],
        "total_fen": 3000,
        "operator": {"id": "op7", "name": "王芳"},
    }


def wait_job(client: Any, job_id: str, timeout_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(f"/v1/print-jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "unknown") or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_card_to_central_to_printer(pcscd: Any, vcard: Any, printer_sim: Any, central_sim: Any,
                                    daemon_proc: Any) -> None:
    vcard("ssc2", slot=0)
    d = daemon_proc(config=f"""
[terminal]
id = "T0001"
[upstream]
url = "{central_sim.url}"
wait_s = 5
[[printers]]
name = "receipt"
uri = "{printer_sim.uri}"
columns = 42
""")
    client = d.client()

    read = client.post("/v1/card/read", json={"timeout_s": 10})
    assert read.status_code == 200, read.text
    card = read.json()["card"]
    assert card["ssn"] and card["name"] and card["card_number"]

    created = client.post("/v1/transactions", json=sale(read.json()["card_read_id"]),
                          headers={"Idempotency-Key": "slice-1"})
    assert created.status_code == 201, created.text
    tx = created.json()
    assert tx["status"] == "settled"
    assert tx["settlement"]["central_ref"]
    assert tx["card"]["ssn_masked"] != card["ssn"]

    stored = central_sim.records("T0001")
    assert [r["record"]["seq"] if "record" in r else r["seq"] for r in stored] == [1]

    replay = client.post("/v1/transactions", json=sale(read.json()["card_read_id"]),
                         headers={"Idempotency-Key": "slice-1"})
    assert replay.status_code == 200
    assert replay.json()["id"] == tx["id"]

    job = client.post(f"/v1/transactions/{tx['id']}/receipt", json={})
    assert job.status_code == 202, job.text
    assert wait_job(client, job.json()["job_id"])["state"] == "done"
    text = "\n".join(printer_sim.jobs_text())
    assert "阿莫西林胶囊" in text
    assert card["ssn"] not in text


def test_pending_when_central_is_down_then_settled(pcscd: Any, vcard: Any, central_sim: Any,
                                                   daemon_proc: Any) -> None:
    vcard("ssc2", slot=0)
    central_sim.control(down=True)
    d = daemon_proc(config=f"""
[terminal]
id = "T0002"
[upstream]
url = "{central_sim.url}"
wait_s = 1
""")
    client = d.client()
    read = client.post("/v1/card/read", json={"timeout_s": 10}).json()
    created = client.post("/v1/transactions", json=sale(read["card_read_id"]),
                          headers={"Idempotency-Key": "slice-2"})
    assert created.status_code == 202, created.text
    assert created.json()["status"] == "pending"
    assert central_sim.records("T0002") == []

    central_sim.control(down=False)
    deadline = time.monotonic() + 60
    while client.get(f"/v1/transactions/{created.json()['id']}").json()["status"] == "pending":
        assert time.monotonic() < deadline, "the pending record was never settled"
        time.sleep(0.2)
    assert client.get(f"/v1/transactions/{created.json()['id']}").json()["status"] == "settled"
    assert len(central_sim.records("T0002")) == 1
