"""Drain throughput: our batching uploader vs a naive one-record-per-request uploader.

Setup: 50,000 pending records in a fresh spool (temp dir, deleted after), the
central simulator with 20 ms of latency per request, in its own process as a
real central would be. Both uploaders run in this process with httpx against
that same simulator; the naive one (one record per
request, outcome written after each) is measured on a sample and extrapolated,
because at ~20 ms a request it would need about 17 minutes for 50,000.

    python bench/drain.py [--records 50000] [--latency-ms 20] [--naive-sample 300]

Targets: speed-up >= 50x and >= 3,000 records/s. Ends with one RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spool import AppendRequest, Outcome, Spool, digest
from terminald.config import load_config
from terminald.sim.central_store import CentralStore
from terminald.upload.answers import parse_batch
from terminald.upload.uploader import Uploader


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


async def ours(spool: Spool, url: str, total: int, batch_size: int) -> float:
    cfg = load_config(
        None,
        terminal={"id": spool.terminal_id},
        spool={"path": str(spool.path)},
        upstream={"url": url, "batch_size": batch_size},
    )
    uploader = Uploader(spool, cfg, on_event=lambda name, data: None)
    start = time.perf_counter()
    await uploader.start()
    while spool.stats().pending:
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - start
    await uploader.stop()
    return total / elapsed


async def naive(spool: Spool, url: str, sample: int) -> float:
    """One record per request, outcome applied after each: what a simple outbox poller does."""
    async with httpx.AsyncClient(
        base_url=url, headers={"X-Terminal-Id": spool.terminal_id}, timeout=10
    ) as http:
        start = time.perf_counter()
        for _ in range(sample):
            record = (await asyncio.to_thread(spool.backlog, 0, 1))[0]
            response = await http.post(
                f"/v1/terminals/{spool.terminal_id}/records",
                content=json.dumps({"records": [record.wire()]}, ensure_ascii=False),
            )
            result = parse_batch(response.json(), [(record.seq, record.record_id)]).results[0]
            await asyncio.to_thread(
                spool.apply_outcomes,
                [Outcome(result.seq, result.final, dict(result.settlement or result.reason or {}))],
            )
        return sample / (time.perf_counter() - start)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--naive-sample", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=200, help="upstream.batch_size (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="terminald-bench-") as tmp:
        proc, url = start_central(Path(tmp) / "central.db", args.latency_ms)
        try:
            big = Spool.open(Path(tmp) / "ours.db", "T0001", background_check=False)
            small = Spool.open(Path(tmp) / "naive.db", "T0002", background_check=False)
            t0 = time.perf_counter()
            fill(big, args.records)
            fill(small, args.naive_sample)
            print(
                f"setup: {args.records + args.naive_sample} records spooled"
                f" in {time.perf_counter() - t0:.1f} s"
            )
            naive_rps = asyncio.run(naive(small, url, args.naive_sample))
            print(
                f"naive (1 record/request, sample of {args.naive_sample}, extrapolated):"
                f" {naive_rps:,.0f} rec/s"
                f" -> {args.records / naive_rps / 60:.1f} min for {args.records:,}"
            )
            ours_rps = asyncio.run(ours(big, url, args.records, args.batch_size))
            print(
                f"ours (batches of {args.batch_size}, one in flight): {ours_rps:,.0f} rec/s"
                f" -> {args.records / ours_rps:.1f} s for {args.records:,}"
            )
            big.close()
            small.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        store = CentralStore(Path(tmp) / "central.db")
        stored = len(store.records("T0001"))
        store.close()
        if stored != args.records:
            raise SystemExit(f"central stored {stored} records, expected {args.records}")
    speedup = ours_rps / naive_rps
    print(f"speed-up: {speedup:.0f}x (targets: >= 50x and >= 3,000 rec/s)")
    print(
        f"RESULT records={args.records} latency_ms={args.latency_ms:g} ours_rps={ours_rps:.0f} "
        f"naive_rps={naive_rps:.1f} naive_sample={args.naive_sample} batch_size={args.batch_size} "
        f"speedup={speedup:.1f}"
    )


if __name__ == "__main__":
    main()
