"""Releases need the patient, and last only while they are there: through the real HTTP API of a
daemon in this process (its routes on an ASGI transport, so that the card reads' clock can be
moved ten minutes on), speaking `nhsa` to the platform simulator, cards read through pcscd and
the card emulator. The POS's defaults throughout: no `wait`.

- a resettle while the platform is down answers 202; when the card read ends before the sale
  was sent, it waits for its patient again, and nothing goes to the platform without them;
- a new sale of a patient at the counter whose wait runs out (their outage sales go first)
  does not end up waiting for them: it settles when the platform gets to it;
- a sale with a typed-in card proves nobody at the counter: it releases nothing;
- sales waiting for their patient are no backlog ahead of a new sale (`offline_reason`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminald.app import create_app
from terminald.cardreads import TTL_S
from terminald.config import load_config
from terminald.daemon import Daemon
from terminald.sim.nhsa import NhsaSim
from tests.api.helpers import item, sale
from tests.fixtures.pcsc import reader_name

pytestmark = pytest.mark.pcsc

P1_SLOT, P2_SLOT = 0, 1  # ssc2: 张伟; ssc2_t0: 王秀英


class Clock:
    """The card reads' clock (and so the releases'), which the test moves on."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@asynccontextmanager
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str) -> AsyncIterator[
        tuple[Daemon, httpx.AsyncClient, Clock]]:
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    cfg = load_config(
        None,
        terminal={"id": "T0001", "timezone": "Asia/Shanghai"},
        spool={"path": str(tmp_path / "state" / "spool.db")},
        upstream={"url": url, "protocol": "nhsa"},
        nhsa={"fixmedins_code": "P11010100001", "fixmedins_name": "示例大药房", "mdtrtarea_admvs": "110101",
              "recer_sys_code": "TERMINALD", "reentry": "patient_present"},
    )
    daemon = Daemon(cfg)
    clock = Clock()
    daemon.card_reads.clock = clock
    daemon.reentry.clock = clock
    await daemon.start()
    try:
        transport = httpx.ASGITransport(app=create_app(daemon))
        async with httpx.AsyncClient(transport=transport, base_url="http://terminal", timeout=60) as client:
            await until(lambda: daemon.uploader.link.state == "online", "the daemon signed in")
            yield daemon, client, clock
    finally:
        await daemon.stop()


async def until(predicate: Callable[[], Any], what: str, timeout_s: float = 40.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def platform_down(api: httpx.AsyncClient, sim: NhsaSim, daemon: Daemon) -> dict[str, Any]:
    """The platform goes away, and the daemon notices with a sale it cannot send (with the card
    typed in: nobody proved at the counter, so it waits for its patient). From then on sales
    are outage sales in their commit, with no wait that a patient could outlast."""
    sim.control(down=True)
    detector = await sell(api, "X", 100, 202)
    assert detector["awaiting_patient"] is True, detector
    await until(lambda: daemon.uploader.link.state != "online", "the daemon to see the platform down")
    return detector


async def read(api: httpx.AsyncClient, slot: int) -> dict[str, Any]:
    r = await api.post("/v1/card/read", json={"reader": reader_name(slot), "timeout_s": 5})
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def sell(api: httpx.AsyncClient, key: str, fen: int, expect: int, **card: Any) -> dict[str, Any]:
    body = sale(items=[item(qty=1, unit_price_fen=fen)], meta={"pos_order_id": key}, **card)
    r = await api.post("/v1/transactions", json=body, headers={"Idempotency-Key": key})
    assert r.status_code == expect, r.text
    return r.json()  # type: ignore[no-any-return]


async def get(api: httpx.AsyncClient, tx_id: str) -> dict[str, Any]:
    r = await api.get(f"/v1/transactions/{tx_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def settled_fen(sim: NhsaSim) -> list[int]:
    return [s["medfee_fen"] for s in sim.settlements() if s["status"] == "standing"]


def test_a_release_lapses_with_its_card_read_when_nothing_was_sent(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nhsa_sim: NhsaSim, vcard: Any) -> None:
    vcard("ssc2", slot=P1_SLOT)
    vcard("ssc2_t0", slot=P2_SLOT)

    async def main() -> None:
        async with running(tmp_path, monkeypatch, nhsa_sim.url) as (daemon, api, clock):
            x = await platform_down(api, nhsa_sim, daemon)
            a = await sell(api, "A", 2500, 202, card_read_id=(await read(api, P1_SLOT))["card_read_id"])
            assert a["awaiting_patient"] is True
            # The patient is back, the platform still down: released, 202.
            p1 = await read(api, P1_SLOT)
            r = await api.post(f"/v1/transactions/{a['id']}/resettle", json={"card_read_id": p1["card_read_id"]})
            assert r.status_code == 202 and r.json()["awaiting_patient"] is False, r.text

            # The card read ends (the patient has left) before the platform is back.
            clock.offset += TTL_S
            assert (await get(api, a["id"]))["awaiting_patient"] is True
            listed = (await api.get("/v1/transactions", params={"awaiting_patient": "true"})).json()["items"]
            assert [t["id"] for t in listed] == [x["id"], a["id"]]
            # The resettle repeated with that read: its state, waiting for the patient again.
            again = await api.post(f"/v1/transactions/{a['id']}/resettle", json={"card_read_id": p1["card_read_id"]})
            assert again.status_code == 202 and again.json()["awaiting_patient"] is True, again.text

            # The platform is back: another patient's sale settles, so the uploader has been round;
            # A's 2102 did not go out without its patient.
            nhsa_sim.control(down=False)
            await until(lambda: daemon.uploader.link.state == "online", "the link online again")
            b = await sell(api, "B", 1800, 201, card_read_id=(await read(api, P2_SLOT))["card_read_id"])
            assert b["status"] == "settled"
            assert settled_fen(nhsa_sim) == [1800]
            assert (await get(api, a["id"]))["status"] == "pending"
            assert [s["id"] for s in (await read(api, P1_SLOT))["awaiting_patient"]] == [a["id"]]

    asyncio.run(main())


def test_a_present_patients_new_sale_never_waits_for_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nhsa_sim: NhsaSim, vcard: Any) -> None:
    vcard("ssc2", slot=P1_SLOT)

    async def main() -> None:
        async with running(tmp_path, monkeypatch, nhsa_sim.url) as (daemon, api, _clock):
            await platform_down(api, nhsa_sim, daemon)
            a = await sell(api, "A", 2500, 202, card_read_id=(await read(api, P1_SLOT))["card_read_id"])
            assert a["awaiting_patient"] is True
            nhsa_sim.control(down=False)
            await until(lambda: daemon.uploader.link.state == "online", "the link online again")

            # The patient buys again; the platform is slow: their outage sale A goes first and
            # takes longer than the POS's wait, so the new sale is answered "pending".
            nhsa_sim.control(latency_ms=1000 * daemon.cfg.upstream.wait_s / 2 + 200)
            new = await sell(api, "N", 4200, 202, card_read_id=(await read(api, P1_SLOT))["card_read_id"])
            assert new["status"] == "pending" and new["awaiting_patient"] is False, new
            # It was made with the patient here: it settles after A, without a resettle.
            nhsa_sim.control(latency_ms=0)
            await until(lambda: settled_fen(nhsa_sim) == [2500, 4200], "A, then the new sale, at the platform")
            for tx_id in (a["id"], new["id"]):
                await until(lambda: (daemon.spool is not None
                                     and getattr(daemon.spool.get(tx_id), "status", "") == "settled"),  # noqa: B023
                            "both settled in the spool")

    asyncio.run(main())


def test_a_sale_without_a_card_read_releases_nothing_and_waiting_sales_are_no_backlog(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nhsa_sim: NhsaSim, vcard: Any) -> None:
    vcard("ssc2", slot=P1_SLOT)
    vcard("ssc2_t0", slot=P2_SLOT)

    async def main() -> None:
        async with running(tmp_path, monkeypatch, nhsa_sim.url) as (daemon, api, _clock):
            await platform_down(api, nhsa_sim, daemon)
            p1 = await read(api, P1_SLOT)
            a = await sell(api, "A", 2500, 202, card_read_id=p1["card_read_id"])
            assert a["awaiting_patient"] is True
            nhsa_sim.control(down=False)
            await until(lambda: daemon.uploader.link.state == "online", "the link online again")

            # Another patient at the counter: A is nothing the uploader can send, so no backlog
            # stands ahead of their sale (it is told online, not offline "backlog").
            b = await sell(api, "B", 1800, 201, card_read_id=(await read(api, P2_SLOT))["card_read_id"])
            assert (b["status"], b["offline"], b["offline_reason"], b["mode"]) == ("settled", False, None, "online")

            # A sale of A's person with the card typed in (no read: nobody proved at the counter)
            # releases nothing: A still waits, and the typed-in sale waits behind it.
            typed = {k: p1["card"][k] for k in ("card_number", "ssn", "name")}
            typed["issuer_code"] = p1["card"].get("issuer_code") or ""
            c = await sell(api, "C", 990, 202, card=typed)
            assert c["card_present"] is False and c["awaiting_patient"] is True, c
            assert (await get(api, a["id"]))["awaiting_patient"] is True
            assert settled_fen(nhsa_sim) == [1800]

    asyncio.run(main())
