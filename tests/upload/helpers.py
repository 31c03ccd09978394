"""Helpers for the upstream tests: a spool, a config, records, and the exactly-once check."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spool import GENESIS_HASH, AppendRequest, Record, Spool, digest, record_hash
from terminald.config import Config, load_config
from terminald.sim.central import CentralSim

TID = "T0001"


def make_config(spool_path: Path, url: str = "", **sections: Any) -> Config:
    upstream = {"url": url, "batch_size": 50, "timeout_s": 2, **sections.pop("upstream", {})}
    return load_config(
        None,
        terminal={"id": TID, "timezone": "Asia/Shanghai"},
        spool={"path": str(spool_path)},
        upstream=upstream,
        **sections,
    )


def append(
    spool: Spool,
    n: int,
    *,
    card: str = "C0000001",
    day: str = "2026-11-23",
    total: int = 1250,
    kind: str = "settlement",
    extra: dict[str, Any] | None = None,
) -> list[Record]:
    out = []
    for _ in range(n):
        key = f"k{spool.stats().last_seq + 1}-{card}"
        payload = {
            "card": {
                "card_number": card,
                "ssn": "110101199003071234",
                "name": "张三丰",
                "issuer_code": "110000",
            },
            "card_present": True,
            "items": [],
            "total_fen": total,
            "idempotency_key": key,
            **(extra or {}),
        }
        req = AppendRequest(
            kind=kind,
            business_time=f"{day}T10:15:00+08:00",
            payload=payload,
            idempotency_key=key,
            request_digest=digest(payload),
        )
        out.append(spool.append(req).record)
    return out


def assert_exactly_once(
    sim: CentralSim | list[dict[str, Any]], spool: Spool, *, all_final: bool = True
) -> None:
    """Central's stored sequence equals the local spool: same records, each once, seq order, chain valid."""
    central = sim.records(TID) if isinstance(sim, CentralSim) else sim
    local = spool.records(after_seq=0, limit=1_000_000)
    wires = [r.wire() for r in local]
    stored = [{k: v for k, v in c.items() if not k.startswith("central_")} for c in central]
    assert [c["seq"] for c in stored] == list(range(1, len(stored) + 1))
    assert len({c["record_id"] for c in stored}) == len(stored)
    prev = GENESIS_HASH
    for c in stored:
        assert c["prev_hash"] == prev and record_hash(c) == c["hash"]
        prev = c["hash"]
    if all_final:
        assert stored == wires
        for record, c in zip(local, central, strict=True):
            expected = "settled" if c["central_status"] == "accepted" else "rejected"
            assert record.status == expected, (record.seq, record.status, c["central_status"])
            assert record.outcome == (
                c["central_outcome"].get("settlement") or c["central_outcome"]["reason"]
            )
    else:
        assert stored == wires[: len(stored)]


async def until(predicate: Callable[[], bool], timeout: float = 20.0, step: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(step)
