"""Every time the API shows is in the terminal's zone (`terminal.timezone`), whatever the zone of
the machine that stored it: the daemon runs with TZ=UTC (so the spool's `spooled_at` and
history, the print jobs and the events are written in UTC or +00:00) and the terminal is in
Asia/Shanghai. A sale settled, one rejected and resolved, an outage sale refunded, a print job,
the outage log, the status and the event stream: every RFC 3339 time in them ends with +08:00.
The stored values are not changed.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from terminald.sim.central import CentralSim
from terminald.sim.printer import PrinterSim
from tests.api.helpers import TYPED_CARD, post_tx, sale
from tests.api.sse import EventStream
from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
OPERATOR = {"id": "op7", "name": "王芳"}


def times(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """(path, value) of every string in `value` that is a date-time."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from times(item, f"{where}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from times(item, f"{where}[{n}]")
    elif isinstance(value, str) and TIME.match(value):
        yield where, value


def assert_local(document: Any, what: str) -> int:
    found = list(times(document))
    wrong = [(path, value) for path, value in found if not value.endswith("+08:00")]
    assert wrong == [], f"{what}: {wrong}"
    return len(found)


def test_every_time_in_the_api_is_in_the_terminals_zone(
        central_sim: CentralSim, printer_sim: PrinterSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    config = (f'[terminal]\nid = "T0001"\ntimezone = "Asia/Shanghai"\n'
              f'[upstream]\nurl = "{central_sim.url}"\nwait_s = 5\n'
              "[offline]\nrequire_card_present = false\n"
              f'[[printers]]\nname = "counter"\nuri = "{printer_sim.uri}"\n')
    d = daemon_proc(config=config, env={"TZ": "UTC"})
    api = d.client()
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "online", what="online")
    with EventStream(d, last_event_id=0) as events:
        # Settled online.
        settled = post_tx(api, sale(), "settled", wait=10)
        assert settled.status_code == 201, settled.text
        tx = settled.json()
        assert len(tx["history"]) == 2 and tx["created_at"].endswith("+08:00")
        # Rejected by central, resolved by staff.
        central_sim.control(not_insured=[TYPED_CARD["card_number"]])
        rejected = post_tx(api, sale(), "rejected", wait=10).json()
        assert rejected["status"] == "rejected", rejected
        central_sim.control(not_insured=[])
        resolved = api.post(f"/v1/transactions/{rejected['id']}/resolve",
                            json={"resolution": "self_pay", "note": "paid in cash"})
        assert resolved.status_code == 200, resolved.text
        assert resolved.json()["resolution"]["at"].endswith("+08:00")
        # An outage: central down, a sale paid in full, settled after, the refund handed over.
        central_sim.control(down=True)
        wait_for(lambda: api.get("/v1/status").json()["mode"] == "offline", what="offline")
        outage_sale = post_tx(api, sale(), "outage", wait=0).json()
        assert outage_sale["status"] == "pending", outage_sale
        status_offline = api.get("/v1/status").json()
        assert status_offline["spool"]["oldest_pending_at"].endswith("+08:00")
        central_sim.control(down=False)
        refund_owed = wait_for(lambda: (t := api.get(f"/v1/transactions/{outage_sale['id']}").json())
                               ["status"] == "settled" and t["refund_owed_fen"], timeout_s=60,
                               what="the outage sale settled")
        refunded = api.post(f"/v1/transactions/{outage_sale['id']}/refund",
                            json={"paid_fen": refund_owed, "operator": OPERATOR})
        assert refunded.status_code == 200, refunded.text
        assert refunded.json()["refund"]["at"].endswith("+08:00")
        # A print job.
        job = api.post(f"/v1/transactions/{tx['id']}/receipt", json={"printer": "counter"})
        assert job.status_code == 202, job.text
        printed = wait_for(lambda: (j := api.get(f"/v1/print-jobs/{job.json()['job_id']}").json())
                           ["state"] == "done" and j, what="the receipt printed")
        events.wait_for("transaction.refunded")

        counted = {
            "settled": assert_local(api.get(f"/v1/transactions/{tx['id']}").json(), "a settled sale"),
            "resolved": assert_local(api.get(f"/v1/transactions/{rejected['id']}").json(), "a resolved sale"),
            "refunded": assert_local(refunded.json(), "a refunded outage sale"),
            "list": assert_local(api.get("/v1/transactions").json(), "the list"),
            "job": assert_local(printed, "a print job"),
            "outages": assert_local(api.get("/v1/outages").json(), "the outage log"),
            "status": assert_local(api.get("/v1/status").json(), "the status"),
            "status_offline": assert_local(status_offline, "the status while offline"),
            "events": assert_local([e.data for e in events.events], "the events"),
        }
    # Each of them did show times: a settled sale its creation, business time and two history
    # entries; the print job its creation and update; the outage its start and end.
    assert counted["settled"] >= 4 and counted["resolved"] >= 5 and counted["refunded"] >= 6, counted
    assert counted["job"] >= 2 and counted["outages"] >= 2 and counted["events"] >= 8, counted
    history = api.get(f"/v1/transactions/{outage_sale['id']}").json()["history"]
    assert [h["status"] for h in history][:1] == ["pending"] and len(history) >= 3

    # What is stored did not change: the spool keeps the time as its writer wrote it.
    conn = sqlite3.connect(f"{(d.state_dir / 'spool.db').resolve().as_uri()}?mode=ro", uri=True)
    try:
        spooled_at = conn.execute("SELECT spooled_at FROM records WHERE record_id = ?", (tx["id"],)).fetchone()[0]
    finally:
        conn.close()
    assert spooled_at.endswith("+00:00"), spooled_at
    assert spooled_at != tx["created_at"]
