"""Re-entry (补录) of an outage backlog on the national platform: nhsa.concurrency 1 vs 4 vs 16.

One run per concurrency, all in this process's run, each from the same starting point: a fresh
daemon state directory and a fresh simulator database. A run:

1. `terminald serve` (a subprocess, with a config file, as a user runs it: the spool and the
   call log fsync for real) with `upstream.protocol = "nhsa"` and `nhsa.concurrency = N`,
   pointed at a 127.0.0.1 port where nothing listens yet: the platform is down.
2. 2,000 sales over 400 persons (5 each, interleaved: person i % 400) through the daemon's HTTP
   API (`POST /v1/transactions`, the POS's way), every one answered 202: outage sales, pending.
3. The platform simulator (`python -m terminald.sim.nhsa`, a process of its own, fresh database,
   `--synthetic-persons 400`: the made-up card holders S00000001…, see docs/nhsa-simulator.md)
   comes up on that port with 50 ms of latency before every answer.
4. The daemon notices by itself (its own backoff) and re-enters the backlog. Measured on the
   daemon's own clock, from its spool file afterwards (read-only): from the first call the
   platform answered (the call log's `sent_at`: the backoff wait before the daemon noticed is
   detection, not re-entry, and is printed apart) to the last record settled (the spool's
   history). `/v1/status` is polled once a second only to know when it is over. Nothing is
   extrapolated.
5. The money, on the simulator's books: every sale exactly one standing settlement (the
   simulator's `money_problems` with the expected sales: total and business time of each, no
   other sale standing), every local record settled with the split the platform answered.

Settings are the defaults except what a run needs: the platform's address and the [nhsa]
institution keys, the concurrency under test, and `offline.require_card_present = false` (the
sales are typed in: a benchmark has no card reader). The sales' amounts (8 to 32 yuan) keep the
whole backlog under the default outage limit (`offline.max_total_fen`, 50,000 yuan), so that
limit is left alone; logging stays at its default level (to a file).

From the measured rates: how long a 10-day outage of one busy counter (5,000 sales) takes to
re-enter at concurrency 4 (the default) and 16. Target: concurrency 16 >= 10x serial.

    .venv/bin/python bench/reentry.py [--sales 2000] [--persons 400] [--latency-ms 50]
                                      [--concurrency 1,4,16] [--outage-sales 5000]

Ends with one RESULT line.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from terminald.sim.demo_nhsa import calls_by_msgid, sale_problems
from terminald.sim.nhsa.persons import Person, synthetic_persons
from terminald.sim.nhsa.store import NhsaStore
from terminald.sim.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
POS_CLIENTS = 8  # concurrent POS requests while the backlog is made (setup, not measured)


@dataclass
class Run:
    concurrency: int
    records: int
    seconds: float
    detect_s: float  # simulator up -> its first call (the daemon's backoff; not in `seconds`)
    calls: dict[str, int]

    @property
    def rps(self) -> float:
        return self.records / self.seconds


def config_text(api_port: int, sim_port: int, concurrency: int) -> str:
    return (
        '[terminal]\nid = "T0001"\ninstitution_name = "示例大药房(基准)"\n'
        f'[api]\nlisten = "127.0.0.1:{api_port}"\n'
        f'[upstream]\nurl = "http://127.0.0.1:{sim_port}"\nprotocol = "nhsa"\n'
        '[nhsa]\nfixmedins_code = "P11010100001"\nfixmedins_name = "示例大药房"\n'
        'mdtrtarea_admvs = "110101"\nrecer_sys_code = "TERMINALD"\n'
        f"concurrency = {concurrency}\n"
        "[offline]\nrequire_card_present = false\n"
    )


def sale(i: int, person: Person) -> dict[str, Any]:
    """Sale i: one or two lines, 8 to 32 yuan (averaging 20: 2,000 sales stay under the default
    outage limit)."""
    price = 800 + (i * 37) % 2401
    items = [{"code": f"X{i % 97:03d}", "name": "阿莫西林胶囊 0.25g×24粒", "qty": 1,
              "unit_price_fen": price, "amount_fen": price}]
    if i % 3 == 0:  # some two-line baskets: the split is computed over the lines
        half = price // 2
        items = [{**items[0], "unit_price_fen": half, "amount_fen": half},
                 {"code": "XB02", "name": "布洛芬缓释胶囊", "qty": 1, "unit_price_fen": price - half,
                  "amount_fen": price - half}]
    return {"kind": "settlement",
            "card": {"card_number": person.card_number, "ssn": person.certno, "name": person.name,
                     "issuer_code": person.insuplc_admdvs},
            "items": items, "total_fen": price, "operator": {"id": "op7", "name": "王芳"},
            "meta": {"pos_order_id": f"bench-{i}"}}


def wait_until(what: str, check: Any, timeout_s: float, proc: subprocess.Popen[bytes] | None = None,
               poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(poll_s)


def make_backlog(url: str, token: str, sales: int, persons: list[Person]) -> None:
    """`sales` outage sales through the API; each must be answered 202 (kept, pending)."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
        def one(i: int) -> None:
            r = http.post("/v1/transactions?wait=0", json=sale(i, persons[i % len(persons)]),
                          headers={"Idempotency-Key": f"bench-{i}"})
            if r.status_code != 202:
                raise SystemExit(f"sale {i}: expected 202 (outage sale), got {r.status_code}: {r.text[:300]}")

        with ThreadPoolExecutor(POS_CLIENTS) as pool:
            list(pool.map(one, range(sales)))


def local_records(http: httpx.Client) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    after = 0
    while True:
        page = http.get("/v1/transactions", params={"after_seq": after, "limit": 500}).json()
        items += page["items"]
        if page["next_after_seq"] is None:
            return items
        after = page["next_after_seq"]


def check_money(sim_db: Path, spool_db: Path, records: list[dict[str, Any]]) -> list[str]:
    """The simulator's money check, every sale expected exactly once with its total and business
    time (the demo's check: records tied to settlements through the daemon's call log, read-only)."""
    store = NhsaStore(sim_db)
    try:
        return sale_problems(records, calls_by_msgid(spool_db), store.settlements(), store.revokes(), store.calls())
    finally:
        store.close()


def reentry_window(spool_db: Path) -> tuple[float, float]:
    """(start, end) of the re-entry in epoch seconds, both on the daemon's clock, read-only from
    its spool file: the first call the platform answered (call log `sent_at`; the calls tried
    while it was down have no answer) and the last record settled (history `at`)."""
    conn = sqlite3.connect(f"file:{spool_db}?mode=ro", uri=True)
    try:
        (first,) = conn.execute("SELECT MIN(sent_at) FROM nhsa_calls WHERE state IN ('ok', 'failed')").fetchone()
        (last,) = conn.execute("SELECT MAX(at) FROM history WHERE status = 'settled'").fetchone()
    finally:
        conn.close()
    if first is None or last is None:
        raise SystemExit("the call log or the spool's history shows no re-entry")
    return datetime.fromisoformat(first).timestamp(), datetime.fromisoformat(last).timestamp()


def one_run(work: Path, concurrency: int, sales: int, persons: list[Person], latency_ms: float) -> Run:
    api_port, sim_port = free_port(), free_port()
    cfg = work / "terminald.toml"
    cfg.write_text(config_text(api_port, sim_port, concurrency), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TERMINALD_")}
    env.update(STATE_DIRECTORY=str(work / "state"), PYTHONPATH=str(ROOT))
    env.pop("NOTIFY_SOCKET", None)
    url = f"http://127.0.0.1:{api_port}"
    sim: subprocess.Popen[bytes] | None = None
    with open(work / "terminald.log", "wb") as log:
        daemon = subprocess.Popen([sys.executable, "-m", "terminald.cli", "serve", "--config", str(cfg)],
                                  env=env, stdout=log, stderr=log, cwd=ROOT)
    try:
        wait_until("terminald", lambda: httpx.get(url + "/v1/health", timeout=1).status_code == 200, 30, daemon)
        token = (work / "state" / "api-token").read_text().strip()
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        t0 = time.perf_counter()
        make_backlog(url, token, sales, persons)
        pending = http.get("/v1/status").json()["spool"]["pending"]
        if pending != sales:
            raise SystemExit(f"{pending} pending after {sales} outage sales")
        print(f"  c={concurrency}: {sales:,} outage sales made through the API in "
              f"{time.perf_counter() - t0:.1f} s; the platform comes up", flush=True)

        sim_db = work / "nhsa.db"
        with open(work / "sim.log", "wb") as sim_log:
            sim = subprocess.Popen(
                [sys.executable, "-m", "terminald.sim.nhsa", "--port", str(sim_port), "--db", str(sim_db),
                 "--latency-ms", f"{latency_ms:g}", "--synthetic-persons", str(len(persons))],
                env=env, stdout=sim_log, stderr=sim_log, cwd=ROOT)
        sim_url = f"http://127.0.0.1:{sim_port}"
        wait_until("the platform simulator", lambda: httpx.get(sim_url + "/_control", timeout=1).is_success,
                   30, sim)
        up = time.time()
        # Generous: the serial run at 2 calls of 50 ms per sale, three times over, plus the backoff.
        budget = sales * 2 * latency_ms / 1000 * 3 + 120
        state: dict[str, Any] = {}

        def drained() -> bool:
            state["status"] = http.get("/v1/status").json()
            return state["status"]["spool"]["pending"] == 0  # type: ignore[no-any-return]

        # Polled once a second only to know when to stop: the times come from the spool after.
        wait_until(f"the backlog to be re-entered (c={concurrency})", drained, budget, daemon, poll_s=1.0)
        requests = httpx.get(sim_url + "/_control", timeout=10).json()["requests"]
        records = local_records(http)
        http.close()
    finally:
        daemon.terminate()
        daemon.wait(30)
        if sim is not None:
            sim.terminate()
            sim.wait(30)
    start, done = reentry_window(work / "state" / "spool.db")
    problems = check_money(sim_db, work / "state" / "spool.db", records)
    if problems:
        shown = "\n  ".join(problems[:20])
        raise SystemExit(f"c={concurrency}: the money is wrong ({len(problems)} problems):\n  {shown}")
    return Run(concurrency, len(records), done - start, max(start - up, 0.0), requests)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sales", type=int, default=2000)
    parser.add_argument("--persons", type=int, default=400)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", default="1,4,16", help="comma-separated; the first is the baseline")
    parser.add_argument("--outage-sales", type=int, default=5000, help="a 10-day outage of one busy counter")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    persons = synthetic_persons(args.persons)
    print(f"re-entry of {args.sales:,} outage sales over {args.persons} persons, platform latency "
          f"{args.latency_ms:g} ms per call; fresh daemon state and simulator database per run", flush=True)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="terminald-bench-reentry-") as tmp:
        for level in levels:
            work = Path(tmp) / f"c{level}"
            work.mkdir()
            run = one_run(work, level, args.sales, persons, args.latency_ms)
            runs.append(run)
            calls = ", ".join(f"{n} {infno}" for infno, n in sorted(run.calls.items()))
            print(f"concurrency {level:>2}: {run.rps:7.1f} records/s ({run.records:,} in {run.seconds:.1f} s; "
                  f"noticed the platform {run.detect_s:.1f} s after it came up; calls: {calls}); "
                  f"money check: every sale stands exactly once", flush=True)
    base = runs[0]
    by_level = {r.concurrency: r for r in runs}
    for r in runs[1:]:
        print(f"concurrency {r.concurrency} vs {base.concurrency}: {r.rps / base.rps:.1f}x")
    for r in runs:
        print(f"a 10-day outage ({args.outage_sales:,} sales) at concurrency {r.concurrency}: "
              f"{args.outage_sales / r.rps / 60:.1f} min to re-enter")
    fields = [f"sales={args.sales}", f"persons={args.persons}", f"latency_ms={args.latency_ms:g}"]
    names = {1: "serial"}
    for r in runs:
        fields.append(f"{names.get(r.concurrency, f'c{r.concurrency}')}_rps={r.rps:.1f}")
    for r in runs[1:]:
        fields.append(f"{names.get(r.concurrency, f'c{r.concurrency}')}_vs_serial={r.rps / base.rps:.1f}")
    for level in (4, 16):
        if level in by_level:
            fields.append(f"outage_10d_min_c{level}={args.outage_sales / by_level[level].rps / 60:.1f}")
    if 16 in by_level:
        print(f"target: concurrency 16 >= 10x serial: {'met' if by_level[16].rps >= 10 * base.rps else 'NOT met'}")
    print("RESULT " + " ".join(fields))


if __name__ == "__main__":
    main()
