"""Drain throughput: our uploader vs two baselines, on the same records.

Setup: three spools (temp dir, deleted after), each with the same 50,000
pending records (only the terminal id differs), and for each uploader its own
central simulator (own process, fresh database) with 20 ms of latency per
request, as a real central would be. Everything uses the default
`upstream.batch_size` and the same `CentralClient` (same httpx, same encoding,
same answer checks), so the figures differ only by strategy:

* ours: the real `Uploader`: batches, one in flight, the outcomes of batch N
  written to the spool while batch N+1 is on the wire;
* batched: batches of the same size, one in flight, but read -> post -> write
  the outcomes -> next batch, one step after the other (no pipelining);
* naive: one record per request, its outcome written after each (what a
  simple outbox poller does). At ~20 ms a request it would need about 20
  minutes for 50,000, so it drains the first `--naive-records` of its 50,000
  and the rate is extrapolated: the RESULT line says `naive_extrapolated=1`
  (0 when it drained them all).

    python bench/drain.py [--records 50000] [--latency-ms 20] [--naive-records 300]

Targets: speed-up over naive >= 50x and >= 3,000 records/s. Ends with one
RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spool import AppendRequest, Outcome, Record, Spool, digest
from terminald.config import Config, UpstreamConfig, load_config
from terminald.sim.central_store import CentralStore
from terminald.upload.uploader import Uploader
from terminald.upstream.v1.client import CentralClient


def fill(spool: Spool, count: int) -> None:
    """Append `count` records with 64 concurrent appenders (the spool group-commits them)."""

    def one(i: int) -> None:
        payload = {
            "card": {"card_number": f"C{i % 997:07d}", "ssn": "110101199003071234", "name": "张三丰"},
            "card_present": True,
            "items": [{"code": "XA01", "qty": 1, "amount_fen": 1250}],
            "total_fen": 1250,
            "idempotency_key": f"bench-{i}",
        }
        spool.append(
            AppendRequest(
                kind="settlement",
                business_time="2026-11-23T10:15:00+08:00",
                payload=payload,
                idempotency_key=f"bench-{i}",
                request_digest=digest(payload),
            )
        )

    with ThreadPoolExecutor(64) as pool:
        list(pool.map(one, range(count)))


def config(spool: Spool, url: str) -> Config:
    """Defaults, but for where the spool and central are."""
    return load_config(None, terminal={"id": spool.terminal_id}, spool={"path": str(spool.path)},
                       upstream={"url": url})


async def ours(spool: Spool, url: str, total: int) -> float:
    """The real uploader, started as the daemon starts it, until the backlog is empty."""
    uploader = Uploader(spool, config(spool, url), on_event=lambda name, data: None)
    start = time.perf_counter()
    await uploader.start()
    while spool.stats().pending:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    await uploader.stop()
    return total / elapsed


async def write_outcomes(spool: Spool, client: CentralClient, records: list[Record]) -> int:
    """Post `records` as one batch and write central's outcomes before returning."""
    answer = await client.post_records([r.wire() for r in records])
    outcomes = [Outcome(r.seq, r.final, dict(r.settlement or r.reason or {})) for r in answer.results]
    await asyncio.to_thread(spool.apply_outcomes, outcomes)
    return len(outcomes)


async def batched(spool: Spool, url: str) -> float:
    """Batches of upstream.batch_size, one in flight, each step awaited before the next: read
    the batch, post it, write its outcomes, then read the next. Our uploader minus pipelining."""
    cfg = config(spool, url)
    start = time.perf_counter()
    client = CentralClient(cfg.upstream, spool.terminal_id)
    done = 0
    try:
        while batch := await asyncio.to_thread(spool.backlog, 0, cfg.upstream.batch_size):
            done += await write_outcomes(spool, client, batch)
    finally:
        await client.aclose()
    return done / (time.perf_counter() - start)


async def naive(spool: Spool, url: str, count: int) -> float:
    """One record per request, its outcome written after each: what a simple outbox poller does."""
    start = time.perf_counter()
    client = CentralClient(config(spool, url).upstream, spool.terminal_id)
    done = 0
    try:
        while done < count and (batch := await asyncio.to_thread(spool.backlog, 0, 1)):
            done += await write_outcomes(spool, client, batch)
    finally:
        await client.aclose()
    return done / (time.perf_counter() - start)


def start_central(db: Path, latency_ms: float) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "terminald.sim.central",
            "--port",
            str(port),
            "--db",
            str(db),
            "--latency-ms",
            str(latency_ms),
        ],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(f"{url}/v1/health", timeout=1)
            return proc, url
        except httpx.HTTPError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit("the central simulator did not start") from None
            time.sleep(0.1)


def stored(db: Path, terminal_id: str) -> int:
    store = CentralStore(db)
    try:
        return len(store.records(terminal_id))
    finally:
        store.close()


def run_against_central(db: Path, latency_ms: float, measure: Callable[[str], float]) -> float:
    """Start a central of its own for one uploader, measure, stop it."""
    proc, url = start_central(db, latency_ms)
    try:
        return measure(url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--naive-records", type=int, default=300,
                        help="how many of its records the naive uploader drains (extrapolated when fewer)")
    args = parser.parse_args()
    batch_size = UpstreamConfig().batch_size  # the default, as a user runs it
    naive_count = min(args.naive_records, args.records)
    with tempfile.TemporaryDirectory(prefix="terminald-bench-") as tmp:
        d = Path(tmp)
        spools = {name: Spool.open(d / f"{name}.db", tid, background_check=False)
                  for name, tid in (("ours", "T0001"), ("batched", "T0002"), ("naive", "T0003"))}
        try:
            t0 = time.perf_counter()
            for sp in spools.values():
                fill(sp, args.records)
            print(f"setup: 3 spools of {args.records:,} records each in {time.perf_counter() - t0:.1f} s")

            naive_rps = run_against_central(
                d / "central-naive.db", args.latency_ms,
                lambda url: asyncio.run(naive(spools["naive"], url, naive_count)))
            extrapolated = naive_count < args.records
            print(f"naive (1 record/request, outcome after each): {naive_rps:,.1f} rec/s over "
                  f"{naive_count:,} records -> {args.records / naive_rps / 60:.1f} min for {args.records:,}"
                  f"{' (extrapolated)' if extrapolated else ''}")

            batched_rps = run_against_central(
                d / "central-batched.db", args.latency_ms,
                lambda url: asyncio.run(batched(spools["batched"], url)))
            print(f"batched ({batch_size}/request, one in flight, no pipelining): {batched_rps:,.0f} rec/s"
                  f" -> {args.records / batched_rps:.1f} s for {args.records:,}")

            ours_rps = run_against_central(
                d / "central-ours.db", args.latency_ms,
                lambda url: asyncio.run(ours(spools["ours"], url, args.records)))
            print(f"ours ({batch_size}/request, one in flight, outcomes written while the next is on the wire):"
                  f" {ours_rps:,.0f} rec/s -> {args.records / ours_rps:.1f} s for {args.records:,}")
            left = {name: sp.stats().pending for name, sp in spools.items()}
        finally:
            for sp in spools.values():
                sp.close()
        expected = {"ours": ("T0001", args.records), "batched": ("T0002", args.records),
                    "naive": ("T0003", naive_count)}
        for name, (tid, count) in expected.items():
            got = stored(d / f"central-{name}.db", tid)
            if got != count or left[name] != args.records - count:
                raise SystemExit(f"{name}: central stored {got} records and {left[name]} are pending locally;"
                                 f" expected {count} and {args.records - count}")
    speedup = ours_rps / naive_rps
    print(f"speed-up: {speedup:.0f}x naive (targets: >= 50x and >= 3,000 rec/s); "
          f"batching alone {batched_rps / naive_rps:.0f}x, pipelining on top {ours_rps / batched_rps:.2f}x")
    print(
        f"RESULT records={args.records} latency_ms={args.latency_ms:g} batch_size={batch_size}"
        f" ours_rps={ours_rps:.0f} batched_rps={batched_rps:.0f} naive_rps={naive_rps:.1f}"
        f" naive_records={naive_count} naive_extrapolated={int(extrapolated)}"
        f" speedup={speedup:.1f} batched_vs_naive={batched_rps / naive_rps:.1f}"
        f" pipelining_gain={ours_rps / batched_rps:.2f}"
    )


if __name__ == "__main__":
    main()
