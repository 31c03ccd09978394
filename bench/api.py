"""POST /v1/transactions with central down (the durable spool path).

Two measurements, each against a trivial FastAPI endpoint served by uvicorn
the same way in the same run, each ending in its own RESULT line:

1. Throughput: 16 clients through `wrk` (C, so the load generator takes
   little of the 2 cores), each request with a fresh Idempotency-Key and
   `?wait=0`: transactions/s and p99 of the real daemon (`terminald serve`,
   access control, validation, offline policy, group-committed spool) and the
   ratio to the trivial endpoint. (This config also lifts
   `offline.max_total_fen`, so that the whole run is accepted.)
2. What a POS feels: the POS's default parameters, as docs/api.md's Python
   client sends them: no `?wait` (so `upstream.wait_s`, 5 s by default,
   applies when central can answer), a typed card, one sale after the other
   from one httpx client, against a daemon with default settings except
   `[offline] require_card_present = false` (a typed card is refused
   otherwise) and an `upstream.url` on a closed 127.0.0.1 port (central down:
   connection refused). p50/p99/max of a sale, the first sale after start, and
   the p99 ratio to the trivial endpoint called the same way. Target: p99 <=
   20 ms. The default offline limit (`max_total_fen` 5,000,000 fen) holds
   2,000 of these 2,500-fen sales; any 403 is counted in the RESULT line and
   left out of the latencies.

The issue asks for one RESULT line per benchmark and for this second line, so
this one prints two: the throughput line first, the POS line last.

    .venv/bin/python bench/api.py [--seconds 10] [--connections 16] [--sales 1000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from terminald.sim.ports import free_port

BODY = ('{"kind":"settlement","card":{"card_number":"A12345678","ssn":"110101199003077777",'
        '"name":"张三丰","issuer_code":"110000"},"items":[{"code":"XA01","name":"阿莫西林胶囊","qty":2,'
        '"unit_price_fen":1250,"amount_fen":2500}],"total_fen":2500,"operator":{"id":"op7","name":"王芳"}}')

TRIVIAL_APP = """
from fastapi import FastAPI, Request
app = FastAPI()

@app.post("/v1/transactions")
async def create(request: Request) -> dict:
    body = await request.json()
    return {"ok": True, "total_fen": body.get("total_fen")}
"""

WRK_SCRIPT = """
local counter = 0
local thread_id = 0
setup = function(thread) thread_id = thread_id + 1; thread:set("tid", thread_id) end
request = function()
  counter = counter + 1
  local headers = {}
  headers["Content-Type"] = "application/json"
  headers["Authorization"] = "Bearer TOKEN"
  headers["Idempotency-Key"] = "bench-" .. tid .. "-" .. counter .. "-" .. RUN
  return wrk.format("POST", "/v1/transactions?wait=0", headers, BODY)
end
"""


def wait_health(url: str, path: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def run_wrk(url: str, token: str, seconds: int, connections: int, workdir: Path, run_id: str) -> tuple[float, float]:
    script = workdir / "post.lua"
    body_lua = "[[" + BODY + "]]"
    script.write_text(WRK_SCRIPT.replace("TOKEN", token).replace("BODY", body_lua)
                      .replace("RUN", f'"{run_id}"'), encoding="utf-8")
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
                         capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert p99 is not None, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise SystemExit(f"{non2xx.group(1)} requests failed:\n{out}")
    return rate, float(p99.group(1)) * scale


def pos_sales(url: str, token: str, sales: int, run_id: str,
              pause_s: float = 0.0) -> tuple[list[float], dict[int, int]]:
    """`sales` sales one after the other, sent as docs/api.md's POS client sends them (no `?wait`),
    each ``pause_s`` after the answer to the one before (0: at once).

    Returns the latency of each 2xx answer in ms (in order) and the count of each status code.
    """
    body = json.loads(BODY)
    latencies: list[float] = []
    codes: dict[int, int] = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=40) as http:
        for i in range(sales):
            if pause_s:
                time.sleep(pause_s)
            start = time.perf_counter()
            r = http.post("/v1/transactions", json=body, headers={"Idempotency-Key": f"pos-{run_id}-{i}"})
            elapsed = (time.perf_counter() - start) * 1000
            codes[r.status_code] = codes.get(r.status_code, 0) + 1
            if 200 <= r.status_code < 300:
                latencies.append(elapsed)
    return latencies, codes


def percentile(values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(math.ceil(q * len(ordered)) - 1, 0)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sales", type=int, default=1000, help="sales of the POS measurement (one at a time)")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # The trivial baseline, served by the same uvicorn with the same options.
        (work / "trivial.py").write_text(textwrap.dedent(TRIVIAL_APP))
        port = free_port()
        base = subprocess.Popen([sys.executable, "-m", "uvicorn", "trivial:app", "--port", str(port),
                                 "--no-access-log", "--log-level", "warning"], cwd=work)
        try:
            wait_health(f"http://127.0.0.1:{port}", "/docs")
            run_wrk(f"http://127.0.0.1:{port}", "x", 2, args.connections, work, "warm")
            base_rate, base_p99 = run_wrk(f"http://127.0.0.1:{port}", "x", args.seconds, args.connections,
                                          work, "base")
            base_pos, _ = pos_sales(f"http://127.0.0.1:{port}", "x", args.sales, "base")
        finally:
            base.terminate()
            base.wait()

        port = free_port()
        # Central configured but unreachable: every transaction takes the durable offline path.
        dead = free_port()
        (work / "t.toml").write_text(f'[api]\nlisten = "127.0.0.1:{port}"\n[upstream]\nurl = "http://127.0.0.1:{dead}"\n'
                                     f'[offline]\nrequire_card_present = false\nmax_total_fen = 100000000000\n'
                                     f'[logging]\nlevel = "warning"\n', encoding="utf-8")
        env = {**os.environ, "STATE_DIRECTORY": str(work / "state")}
        daemon = subprocess.Popen([sys.executable, "-m", "terminald.cli", "serve", "--config", str(work / "t.toml")],
                                  env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_health(url, "/v1/health")
            token = (work / "state" / "api-token").read_text().strip()
            run_wrk(url, token, 2, args.connections, work, "warm")
            rate, p99 = run_wrk(url, token, args.seconds, args.connections, work, "main")
            pending = httpx.get(url + "/v1/status", headers={"Authorization": f"Bearer {token}"}).json()
        finally:
            daemon.terminate()
            daemon.wait()

        # What a POS feels: default settings but for the two a typed card and a dead central need.
        port = free_port()
        dead = free_port()
        (work / "pos.toml").write_text(f'[api]\nlisten = "127.0.0.1:{port}"\n[upstream]\nurl = "http://127.0.0.1:{dead}"\n'
                                       f'[offline]\nrequire_card_present = false\n', encoding="utf-8")
        env = {**os.environ, "STATE_DIRECTORY": str(work / "pos-state")}
        with open(work / "pos-daemon.log", "wb") as log:  # default logging level (info), kept off the report
            daemon = subprocess.Popen([sys.executable, "-m", "terminald.cli", "serve", "--config",
                                       str(work / "pos.toml")], env=env, stdout=log, stderr=log)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_health(url, "/v1/health")
            token = (work / "pos-state" / "api-token").read_text().strip()
            pos, codes = pos_sales(url, token, args.sales, "pos")
        finally:
            daemon.terminate()
            daemon.wait()
    if not pos:
        raise SystemExit(f"no sale was answered 2xx: {codes}")
    refused = codes.get(403, 0)
    other = sum(n for code, n in codes.items() if code not in (201, 202, 403))
    pos_p50, pos_p99, pos_max = percentile(pos, 0.50), percentile(pos, 0.99), max(pos)
    base_pos_p50, base_pos_p99 = percentile(base_pos, 0.50), percentile(base_pos, 0.99)
    print(f"trivial FastAPI: {base_rate:.0f} req/s, p99 {base_p99:.1f} ms")
    print(f"terminald (central down, durable): {rate:.0f} tx/s, p99 {p99:.1f} ms, "
          f"pending {pending['spool']['pending']}")
    print(f"RESULT tx_per_s={rate:.0f} p99_ms={p99:.1f} ratio={rate / base_rate:.2f} "
          f"trivial_per_s={base_rate:.0f} trivial_p99_ms={base_p99:.1f}")
    print(f"trivial FastAPI, one request at a time: p50 {base_pos_p50:.1f} ms, p99 {base_pos_p99:.1f} ms")
    print(f"terminald, POS defaults (no ?wait, central down, {args.sales} sales one at a time): "
          f"p50 {pos_p50:.1f} ms, p99 {pos_p99:.1f} ms, max {pos_max:.1f} ms, first sale {pos[0]:.1f} ms; "
          f"answers {dict(sorted(codes.items()))} (target p99 <= 20 ms)")
    print(f"RESULT pos_default_sales={args.sales} pos_default_p50_ms={pos_p50:.1f} pos_default_p99_ms={pos_p99:.1f} "
          f"pos_default_max_ms={pos_max:.1f} pos_default_first_ms={pos[0]:.1f} answered_201={codes.get(201, 0)} "
          f"answered_202={codes.get(202, 0)} refused_403={refused} other={other} "
          f"trivial_serial_p99_ms={base_pos_p99:.1f} p99_vs_trivial={pos_p99 / base_pos_p99:.2f} target_p99_ms=20")


if __name__ == "__main__":
    main()
