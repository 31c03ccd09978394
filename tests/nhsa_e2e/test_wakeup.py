"""A record made eligible while an upload round runs must be sent at once, not after the idle probe.

With `[nhsa] reentry = "patient_present"`, `POST /v1/transactions/{id}/resettle` releases a
waiting outage sale (nothing is appended) and wakes the uploader. If that wake-up arrives while
an upload round is running that has already found the sale not eligible, and the round decides
nothing, `Uploader._idle` clears the wake-up and sleeps until the idle probe (15 s in the daemon):
the POS, waiting `wait_s` with the patient at the counter, is answered 202 "pending" although the
platform is up. Seen once through the daemon (a person's outage sales re-settled one after the
other: the second `resettle`, sent as soon as the first answered 200, was answered 202); shown
here deterministically with an adapter that pauses its round at that moment.

The cause: `Uploader._idle` (terminald/upload/uploader.py) clears `_wake` after the round and
only looks for records appended meanwhile (`last_seq > _read_through`); a release appends nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar

import pytest

from spool import AppendRequest, Spool, digest
from terminald.config import load_config
from terminald.upload.results import RecordResult
from terminald.upload.uploader import Uploader
from terminald.upstream import adapters

TID = "T0001"
IDLE_PROBE_S = 5.0


class PausingAdapter:
    """Decides every eligible pending record; a round that finds none eligible pauses (as a real
    round takes time after its eligibility checks) until the test lets it end."""

    instances: ClassVar[list[PausingAdapter]] = []

    def __init__(self, host: Any, transport: Any = None) -> None:
        self.host = host
        self.rounds = 0
        self.paused = asyncio.Event()
        self.go_on = asyncio.Event()
        PausingAdapter.instances.append(self)

    async def upload(self) -> int:
        self.rounds += 1
        pending = await asyncio.to_thread(self.host.spool.backlog, 0, 100)
        ready = [r for r in pending if self.host.eligible(r)]
        if not ready:
            if self.rounds == 1:
                self.paused.set()
                await self.go_on.wait()
            return 0
        await self.host.apply([RecordResult(r.seq, r.record_id, "accepted",
                                            {"central_ref": "x", "fund_paid_fen": 0, "account_paid_fen": 0,
                                             "cash_paid_fen": r.total_fen}, None) for r in ready])
        return len(ready)

    async def sync(self) -> None:
        return None

    async def probe(self) -> None:
        return None

    async def notices(self, frozen_since: int | None) -> None:
        return None

    async def flush(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def reconcile(self, date: str, local: dict[str, Any]) -> dict[str, Any]:
        return {}


def _sale(spool: Spool) -> None:
    payload = {"card": {"card_number": "A10000123", "ssn": "110105198003150039", "name": "张伟"},
               "items": [], "total_fen": 1250, "idempotency_key": "k1"}
    spool.append(AppendRequest(kind="settlement", business_time="2026-11-23T10:15:00+08:00", payload=payload,
                               idempotency_key="k1", request_digest=digest(payload)))


def test_a_release_during_an_empty_round_is_not_lost(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(adapters.ADAPTERS, "v1", f"{__name__}:PausingAdapter")
    PausingAdapter.instances.clear()
    spool = Spool.open(tmp_path / "spool.db", TID, background_check=False)
    _sale(spool)
    released = {"yes": False}
    cfg = load_config(None, terminal={"id": TID, "timezone": "Asia/Shanghai"}, spool={"path": str(spool.path)},
                      upstream={"url": "http://127.0.0.1:9", "protocol": "v1"})

    async def main() -> float:
        up = Uploader(spool, cfg, on_event=lambda name, data: None, idle_probe_s=IDLE_PROBE_S,
                      eligible=lambda record: released["yes"])
        await up.start()
        try:
            while not PausingAdapter.instances:
                await asyncio.sleep(0.01)
            adapter = PausingAdapter.instances[0]
            await asyncio.wait_for(adapter.paused.wait(), 10)
            # What `resettle` does while that round runs: release the sale, wake the uploader.
            released["yes"] = True
            up.wake()
            adapter.go_on.set()
            start = asyncio.get_running_loop().time()
            while spool.stats().pending:
                assert asyncio.get_running_loop().time() - start < IDLE_PROBE_S + 5, "never sent"
                await asyncio.sleep(0.02)
            return asyncio.get_running_loop().time() - start
        finally:
            await up.stop()

    try:
        took = asyncio.run(main())
    finally:
        spool.close()
    assert took < 2.0, f"the released sale was sent only after {took:.1f}s (the idle probe): its wake-up was lost"
