"""POST /v1/transactions with central down (the durable spool path), 16 clients.

Measures transactions/s and p99 latency of the real daemon (`terminald
serve`, access control, validation, offline policy, group-committed spool)
and, in the same run, of a trivial FastAPI endpoint served by uvicorn the same
way; prints the ratio. Load comes from `wrk` (C, so the load generator takes
little of the 2 cores); each request carries a fresh Idempotency-Key.

    .venv/bin/python bench/api.py [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
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
    print(f"trivial FastAPI: {base_rate:.0f} req/s, p99 {base_p99:.1f} ms")
    print(f"terminald (central down, durable): {rate:.0f} tx/s, p99 {p99:.1f} ms, "
          f"pending {pending['spool']['pending']}")
    print(f"RESULT tx_per_s={rate:.0f} p99_ms={p99:.1f} ratio={rate / base_rate:.2f} "
          f"trivial_per_s={base_rate:.0f} trivial_p99_ms={base_p99:.1f}")


if __name__ == "__main__":
    main()
