"""The adapter's test bench: a real spool, a small host, records made the way terminald makes them.

`Bench` holds a spool in tmp_path, a config for protocol "nhsa" against the simulator, and
`FakeHost` (the uploader's side of `UpstreamHost`: apply writes outcomes to the spool the way
the uploader does). Nothing here sleeps: every step is awaited.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from spool import AppendRequest, Outcome, Record, Spool, digest
from terminald.config import Config, load_config
from terminald.sim.nhsa import NhsaSim
from terminald.sim.nhsa.persons import Person
from terminald.upload.errors import Transient
from terminald.upload.results import RecordResult
from terminald.upstream.nhsa.adapter import NhsaAdapter
from terminald.upstream.nhsa.calllog import CallLog
from terminald.upstream.nhsa.sale import feedetl_sn

TID = "T0001"
CODE = "H11010500123"
TZ = ZoneInfo("Asia/Shanghai")
_keys = itertools.count(1)


def make_config(spool_path: Path, url: str, *, concurrency: int = 4, profile: str = "mock",
                timeout_s: float = 2.0) -> Config:
    return load_config(
        None,
        terminal={"id": TID, "timezone": "Asia/Shanghai"},
        spool={"path": str(spool_path)},
        upstream={"url": url, "protocol": "nhsa", "timeout_s": timeout_s, "batch_size": 200},
        nhsa={"fixmedins_code": CODE, "fixmedins_name": "示例大药房", "mdtrtarea_admvs": "110105",
              "recer_sys_code": "YBXT", "profile": profile, "concurrency": concurrency,
              "opter": "0001", "opter_name": "王药师"},
    )


class FakeHost:
    """The uploader's side, as small as the adapter needs."""

    def __init__(self, spool: Spool, cfg: Config) -> None:
        self.spool = spool
        self.cfg = cfg
        self.tz = TZ
        self.state: Any = None
        self.applied: list[RecordResult] = []
        self.alarms: dict[str, str] = {}
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.reached_count = 0
        self.waiting: set[str] = set()  # record ids not eligible (awaiting their patient)
        self.fail_apply: Callable[[RecordResult], None] | None = None
        self.stopping = False  # the uploader's stop flag

    def reached(self) -> None:
        self.reached_count += 1

    async def apply(self, results: list[RecordResult]) -> None:
        for result in results:
            if self.fail_apply is not None:
                self.fail_apply(result)
        outcomes = [Outcome(r.seq, r.final, dict(r.settlement or r.reason or {})) for r in results]
        await asyncio.to_thread(self.spool.apply_outcomes, outcomes)
        self.applied.extend(results)

    def alarm(self, code: str, message: str) -> bool:
        new = code not in self.alarms
        self.alarms[code] = message
        return new

    def clear_alarm(self, code: str) -> None:
        self.alarms.pop(code, None)

    def emit(self, name: str, data: dict[str, Any]) -> None:
        self.events.append((name, data))

    def eligible(self, record: Record) -> bool:
        return record.record_id not in self.waiting


def card_of(person: Person, *, with_sn: bool = False) -> dict[str, str]:
    """The card as a card read gives it (number, ID number, name, issuer); `with_sn` adds the
    card identifier, which the POS could send."""
    card = {"card_number": person.card_number, "ssn": person.certno, "name": person.name,
            "issuer_code": person.insuplc_admdvs}
    if with_sn:
        card["card_sn"] = person.card_sn
    return card


def sale(spool: Spool, card: dict[str, str], *, when: str = "2026-11-23T10:15:00+08:00",
         items: list[tuple[str, str, Any, int]] | None = None, operator: dict[str, str] | None = None) -> Record:
    """A settlement as terminald spools it (transactions.py `_payload`)."""
    lines = items or [("XA01", "阿莫西林胶囊", 2, 1250), ("XB02", "布洛芬缓释胶囊", 1, 3333)]
    key = f"k{next(_keys)}"
    rows = [{"code": code, "name": name, "qty": qty, "unit_price_fen": price,
             "amount_fen": int((Decimal(str(qty)) * price).quantize(Decimal(1), rounding=ROUND_HALF_UP))}
            for code, name, qty, price in lines]
    payload = {"operator": operator or {"id": "0007", "name": "李药师"}, "idempotency_key": key, "meta": {},
               "card": card, "card_present": True, "items": rows,
               "total_fen": sum(r["amount_fen"] for r in rows)}
    req = AppendRequest(kind="settlement", business_time=when, payload=payload, idempotency_key=key,
                        request_digest=digest(payload))
    return spool.append(req).record


def revoke(spool: Spool, original: Record, *, when: str = "2026-11-24T09:00:00+08:00") -> Record:
    key = f"k{next(_keys)}"
    payload = {"operator": {"id": "0007", "name": "李药师"}, "idempotency_key": key, "meta": {},
               "card": original.payload["card"], "card_present": False, "items": [],
               "total_fen": -original.total_fen, "original_record_id": original.record_id}
    req = AppendRequest(kind="revoke", business_time=when, payload=payload, idempotency_key=key,
                        request_digest=digest(payload), original_record_id=original.record_id)
    return spool.append(req).record


def sale_id(record: Record) -> str:
    """The simulator's sale id of a record: its first line's feedetl_sn."""
    return feedetl_sn(record.record_id, 0)


def wire_time(record: Record) -> str:
    from terminald.upstream.nhsa.sale import business_time

    return business_time(record, TZ)


def expected(spool: Spool) -> dict[str, dict[str, Any]]:
    """What the platform must hold for the spool: each settled sale once, at its business time,
    with its total, revoked exactly when a settled revoke points at it."""
    records = spool.records(after_seq=0, limit=100_000)
    revoked = {r.payload["original_record_id"] for r in records if r.kind == "revoke" and r.status == "settled"}
    return {sale_id(r): {"medfee_fen": r.total_fen, "business_time": wire_time(r), "revoked": r.record_id in revoked}
            for r in records if r.kind == "settlement" and r.status == "settled"}


class Bench:
    def __init__(self, tmp_path: Path, sim: NhsaSim, **config: Any) -> None:
        self.tmp_path = tmp_path
        self.sim = sim
        self.spool = Spool.open(tmp_path / "spool.db", TID, background_check=False)
        self.cfg = make_config(self.spool.path, sim.url, **config)
        self.host = FakeHost(self.spool, self.cfg)

    def adapter(self, transport: httpx.AsyncBaseTransport | None = None) -> NhsaAdapter:
        return NhsaAdapter(self.host, transport=transport)

    @contextlib.asynccontextmanager
    async def opened(self, transport: httpx.AsyncBaseTransport | None = None) -> AsyncIterator[NhsaAdapter]:
        """`adapter(transport)`, closed however the block ends."""
        adapter = self.adapter(transport)
        try:
            yield adapter
        finally:
            await adapter.aclose()

    def drain(self, transport: httpx.AsyncBaseTransport | None = None, *, sync: bool = False,
              transient_ok: bool = True) -> int:
        """One run of a new adapter: `sync()` first when `sync`, then `drain`; how many were decided."""

        async def go() -> int:
            async with self.opened(transport) as adapter:
                if sync:
                    await adapter.sync()
                return await drain(adapter, transient_ok=transient_ok)

        return int(run(go))

    def call_states(self, record_id: str) -> list[tuple[str, str]]:
        """(infno, state) of each call the call log holds for the record, in order."""
        with CallLog(self.spool, fixmedins_code=CODE) as log:
            return [(c.infno, c.state) for c in log.for_record(record_id)]

    def record(self, record: Record) -> Record:
        found = self.spool.get(record.record_id)
        assert found is not None
        return found

    def check_money(self) -> None:
        self.sim.assert_money_consistent(expected(self.spool))

    def close(self) -> None:
        self.spool.close()

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def region_bench(tmp_path: Path, sim: NhsaSim, profile: str, **config: Any) -> Bench:
    """A bench whose profile is `profile`, the text of a region's profile file."""
    path = tmp_path / "region.toml"
    path.write_text(profile, encoding="utf-8")
    return Bench(tmp_path, sim, profile=str(path), **config)


def age_calls(spool: Spool, seconds: float) -> None:
    """Move every call-log time `seconds` into the past: a restart that came that much later
    (the 2601 of an open call waits for the profile's reversal_delay_s from these times)."""
    from datetime import datetime, timedelta

    def shift(value: str | None) -> str | None:
        return None if value is None else (datetime.fromisoformat(value) - timedelta(seconds=seconds)).isoformat(
            timespec="milliseconds")

    def update(conn: Any) -> None:
        rows = conn.execute("SELECT msgid, sent_at, completed_at FROM nhsa_calls").fetchall()
        for msgid, sent_at, completed_at in rows:
            conn.execute("UPDATE nhsa_calls SET sent_at = ?, completed_at = ? WHERE msgid = ?",
                         (shift(sent_at), shift(completed_at), msgid))

    spool.write(update)


async def until(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``check`` on the running loop until true; AssertionError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def run(coro_fn: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(coro_fn())


async def drain(adapter: NhsaAdapter, rounds: int = 50, *, transient_ok: bool = True) -> int:
    """upload() until it has nothing to do; how many were decided. A Transient (the link moves)
    is retried at once, as the uploader does after its backoff, unless `transient_ok` is False."""
    total = 0
    for _ in range(rounds):
        try:
            decided = await adapter.upload()
        except Transient:
            if not transient_ok:
                raise
            continue
        if decided == 0:
            return total
        total += decided
    raise AssertionError("the backlog did not drain")


class Tap(httpx.AsyncBaseTransport):
    """The real transport, with a hook that sees (and may change) each request and answer."""

    def __init__(self, on_answer: Callable[[dict[str, Any], bytes], bytes] | None = None,
                 before: Callable[[dict[str, Any]], Coroutine[Any, Any, None]] | None = None,
                 after: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.on_answer = on_answer
        self.before = before
        self.after = after

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import json

        body = await request.aread()
        envelope = json.loads(body)
        if self.before is not None:
            await self.before(envelope)
        response = await self._inner.handle_async_request(request)
        content = await response.aread()
        if self.after is not None:
            self.after(envelope)
        if self.on_answer is not None:
            content = self.on_answer(envelope, content)
        return httpx.Response(response.status_code, headers={"content-type": "application/json"}, content=content)

    async def aclose(self) -> None:
        await self._inner.aclose()
