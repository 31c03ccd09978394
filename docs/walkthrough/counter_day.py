"""A day at the counter, as a POS calls terminald's local API (docs/api.md, "Walk-through").

    export TERMINALD_URL=http://127.0.0.1:8631 TERMINALD_TOKEN="$(cat /var/lib/terminald-api/api-token)"
    python3 counter_day.py open sale_online                 # central is up
    python3 counter_day.py sale_outage revoke               # central is down
    python3 counter_day.py settled followups refund reconcile events    # central is back

Each step is what the POS does at one moment of the day; the steps run in that order, on a
terminal with no sale yet (a second run gets the stored answers: 200). Needs httpx.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, NoReturn

import httpx

URL = os.environ.get("TERMINALD_URL", "http://127.0.0.1:8631")
TOKEN = os.environ["TERMINALD_TOKEN"]  # the POS's token (api.token_file), never the status page's
# The POS's defaults: no ?wait. A sale answers within upstream.wait_s (5 s) and a card read
# within its timeout_s (30 s here): 40 s covers both.
api = httpx.Client(base_url=URL, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=40)

OPERATOR = {"id": "op7", "name": "王芳"}
# What staff type in from the card when there is no reader (card_present is then false).
TYPED_CARD = {"card_number": "A10000001", "ssn": "110101199001011234", "name": "张三"}
ORDERS = {  # the POS's orders: its own id, and what the patient buys (money in fen)
    "A-1001": [{"code": "XA01", "name": "阿莫西林胶囊", "qty": 2, "unit_price_fen": 1250, "amount_fen": 2500}],
    "A-1002": [{"code": "XB02", "name": "布洛芬缓释胶囊", "qty": 0.5, "unit_price_fen": 999, "amount_fen": 500},
               {"code": "XC03", "name": "维生素C片", "qty": 1, "unit_price_fen": 1800, "amount_fen": 1800}],
}


def yuan(fen: int) -> str:
    return f"{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def fail(r: httpx.Response) -> NoReturn:
    problem = r.json()  # application/problem+json: type, title, status, detail, code
    sys.exit(f"{r.request.method} {r.request.url.path}: {r.status_code} {problem['code']}: {problem['detail']}")


def get(path: str, **params: Any) -> Any:
    r = api.get(path, params=params)
    if r.status_code != 200:
        fail(r)
    return r.json()


def sale_of(order: str) -> dict[str, Any]:
    """The POS finds its sale by its own order id (meta.pos_order_id); a revoke may carry it too."""
    [tx] = [t for t in get("/v1/transactions", pos_order_id=order)["items"] if t["kind"] == "settlement"]
    return tx


def card() -> dict[str, Any]:
    """The patient's card for one sale: read it (the patient has 30 s to insert it), or type it in."""
    r = api.post("/v1/card/read", json={"timeout_s": 30})
    if r.status_code == 200:
        print(f"card: read in {r.json()['reader']}")
        return {"card_read_id": r.json()["card_read_id"]}  # proves the card was here, for one sale
    if r.json()["code"] in ("no_reader", "no_card"):
        print(f"card: {r.json()['code']}, typed in")
        return {"card": TYPED_CARD}
    fail(r)  # card_unreadable, card_locked, reader_busy: the card or the reader needs a person


def record(body: dict[str, Any], key: str) -> httpx.Response:
    """POST a sale or a revoke. No answer (a timeout, the daemon restarting) or a 503: send the
    very same request again under the same key; it is never recorded twice."""
    for _ in range(3):
        try:
            r = api.post("/v1/transactions", json=body, headers={"Idempotency-Key": key})
        except httpx.TransportError as exc:
            print(f"{key}: no answer ({type(exc).__name__}), sending it again")
            time.sleep(1)
            continue
        if r.status_code != 503:  # 503 spool_unavailable "may have recorded it": the retry says
            return r
        time.sleep(1)
    sys.exit(f"{key}: terminald does not answer")


def tell(key: str, r: httpx.Response, seconds: float) -> dict[str, Any]:
    """What to tell the patient (docs/api.md, "What to tell the patient and what prints")."""
    if r.status_code not in (200, 201, 202):
        fail(r)  # 403: the offline policy refuses it; 409, 422: fix the request
    tx = r.json()
    said = f"{key}: {r.status_code} {tx['status']}"
    if tx["status"] == "settled" and not tx["offline"]:
        s = tx["settlement"]
        print(f"{said}: fund {yuan(s['fund_paid_fen'])} + account {yuan(s['account_paid_fen'])}, "
              f"patient pays {yuan(s['cash_paid_fen'])}")
    elif tx["status"] == "rejected" and not tx["offline"]:
        print(f"{said}: refused by insurance ({tx['rejection']['message']}): "
              f"self-pay {yuan(tx['total_fen'])} or void")
    else:  # every 202 (and a repeat of one): an outage sale, whatever the reason
        print(f"{said} (offline: {tx['offline_reason']}) in {seconds:.2f} s: "
              f"patient pays {yuan(tx['paid_at_counter_fen'])} in full and keeps the receipt")
    return tx


def sale_body(order: str) -> dict[str, Any]:
    items = ORDERS[order]
    return {**card(), "items": items, "total_fen": sum(i["amount_fen"] for i in items),
            "operator": OPERATOR, "meta": {"pos_order_id": order}}


def sell(key: str, body: dict[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    r = record(body, key)
    return tell(key, r, time.monotonic() - started)


def print_document(tx_id: str, key: str, document: str = "receipt") -> None:
    """Print a receipt (or a settlement notice) and follow the job until it is out."""
    r = api.post(f"/v1/transactions/{tx_id}/receipt", json={"document": document},
                 headers={"Idempotency-Key": key})  # a repeat of this request prints nothing more
    if r.status_code not in (200, 202):
        fail(r)
    job = r.json()
    for _ in range(60):
        job = get(f"/v1/print-jobs/{job['job_id']}")
        if job["state"] not in ("queued", "printing"):
            break
        time.sleep(0.5)
    print(f"{key}: {document} {job['state']}{' (REPRINT)' if job['reprint'] else ''}")
    if job["state"] != "done":  # unknown: look at the paper, then POST /v1/print-jobs/{id}/retry
        sys.exit(f"{key}: the printer says {job['error']}")


def open_() -> None:
    """Morning: is the terminal there, and can it settle?"""
    print("health:", httpx.get(f"{URL}/v1/health").json()["status"])  # the one call without a token
    status = get("/v1/status")
    print(f"terminal {status['terminal_id']}: {status['mode']}, {status['spool']['pending']} pending")
    openapi = get("/openapi.json")  # the reference for every field: keep a copy with your code
    print(f"openapi {openapi['openapi']}: {len(openapi['paths'])} paths")


def sale_online() -> None:
    """Central is up: central decides while the POS waits, and the patient pays the cash part."""
    tx = sell("A-1001", sale_body("A-1001"))  # the POS's order id is the Idempotency-Key
    print_document(tx["id"], key="A-1001-receipt")


def sale_outage() -> None:
    """Central is down: the sale is committed and answered 202 at once; the patient pays in full."""
    body = sale_body("A-1002")
    tx = sell("A-1002", body)
    # Say the POS lost that answer (it crashed). It asks by the key, without the body ...
    [found] = get("/v1/transactions", idempotency_key="A-1002")["items"]
    # ... or sends the request again under the same key, rebuilt or not (here the default kind is
    # now spelt out): the same request by its meaning, so 200 and the same sale, never a second one.
    again = sell("A-1002", {"kind": "settlement", **body})
    if not found["id"] == again["id"] == tx["id"]:
        sys.exit("A-1002: recorded twice?")
    print_document(tx["id"], key="A-1002-receipt")


def revoke() -> None:
    """The patient of A-1001 brings the medicine back: revoke the settlement, print the revoke."""
    sale = sale_of("A-1001")
    body = {"kind": "revoke", "original_id": sale["id"], "operator": OPERATOR,
            "meta": {"pos_order_id": "A-1001"}}
    r = record(body, key="A-1001-revoke")
    if r.status_code not in (200, 201, 202):
        fail(r)  # 409 not_revocable: revoked already, or central rejected the sale
    tx = r.json()
    back = sale["paid_at_counter_fen"] - (sale["refund"] or {}).get("paid_fen", 0)
    print(f"A-1001-revoke: {r.status_code} {tx['status']}: hand back {yuan(back)}")
    print_document(tx["id"], key="A-1001-revoke-receipt")


def settled() -> None:
    """Central is back: the outage sale is uploaded in order and settles; print the notice."""
    tx = sale_of("A-1002")
    deadline = time.monotonic() + 180  # the uploader retries with a back-off of up to 60 s
    while tx["status"] == "pending":
        if time.monotonic() > deadline:
            sys.exit("A-1002: still pending after 180 s: is central back? (GET /v1/status)")
        time.sleep(1)
        tx = get(f"/v1/transactions/{tx['id']}")
    print(f"A-1002: {tx['status']} after the outage: refund owed {yuan(tx['refund_owed_fen'])}")
    print_document(tx["id"], key="A-1002-notice", document="notice")


def followups() -> None:
    """Who staff must contact: refunds owed after an outage, rejections to settle."""
    listed = get("/v1/followups")
    for item in listed["items"]:
        order = get(f"/v1/transactions/{item['id']}")["meta"].get("pos_order_id")
        print(f"followup: {item['reason']} {order}: {yuan(item['owed_fen'])} by {item['deadline']}"
              f" (card {item['card']['card_number']}, {'overdue' if item['overdue'] else 'not overdue'})")
    print(f"followups: {listed['count']}, owed {yuan(listed['owed_fen'])}")


def refund() -> None:
    """The patient of A-1002 comes back: hand over the fund's share and record it, once."""
    tx = sale_of("A-1002")
    r = api.post(f"/v1/transactions/{tx['id']}/refund",
                 json={"paid_fen": tx["refund_owed_fen"], "operator": OPERATOR})
    if r.status_code != 200:
        fail(r)  # 409 refund_amount_mismatch: not what is owed; invalid_transition: recorded already
    print(f"A-1002: refunded {yuan(r.json()['refund']['paid_fen'])}, "
          f"owed now {yuan(r.json()['refund_owed_fen'])}; followups: {get('/v1/followups')['count']}")


def reconcile() -> None:
    """Evening: this terminal's figures of the day against central's."""
    day = sale_of("A-1001")["business_time"][:10]  # the business day, in the sale's own offset
    rec = get("/v1/reconciliation", date=day)
    local = rec["local"]
    print(f"reconciliation {day}: {'matches' if rec['matches'] else 'DIFFERS'}: "
          f"{local['count']} records, net {yuan(local['total_fen'])}, fund {yuan(local['fund_paid_fen'])}")
    if not rec["matches"]:
        sys.exit(f"differences: {rec['differences']} {rec.get('error') or ''}")


def events() -> None:
    """What happened, as events: the stream from the first stored one (since=0) until 2 s of quiet.
    A POS keeps the id of the last event it handled and resumes with Last-Event-ID."""
    event: dict[str, str] = {}
    try:
        with api.stream("GET", "/v1/events", params={"since": 0}, timeout=httpx.Timeout(40, read=2)) as r:
            for line in r.iter_lines():
                if line:  # "id: 7", "event: upstream.offline", "data: {...}"; ": keep-alive" every 15 s
                    field, _, value = line.partition(": ")
                    event[field] = value
                    continue
                if "event" in event:  # a blank line ends an event
                    print(f"event {event['id']} {event['event']}")
                event = {}
    except httpx.ReadTimeout:
        pass


STEPS = {"open": open_, "sale_online": sale_online, "sale_outage": sale_outage, "revoke": revoke,
         "settled": settled, "followups": followups, "refund": refund, "reconcile": reconcile,
         "events": events}

if __name__ == "__main__":
    if not sys.argv[1:] or not set(sys.argv[1:]) <= STEPS.keys():
        sys.exit(f"usage: counter_day.py STEP...; the steps of the day: {' '.join(STEPS)}")
    for step in sys.argv[1:]:
        STEPS[step]()
