"""The mirror to PostgreSQL: its throughput and lag under the API benchmark's load, against a bare
INSERT loop, and what it costs a sale.

Everything runs against a real PostgreSQL primary with a real synchronous standby that this
script starts (tests/fixtures/postgres.py's `start_pair`, used as a library: initdb, pg_basebackup
-R, `synchronous_commit = on`; as root the servers run as the `postgres` user) and stops at the
end. Where PostgreSQL cannot run it says why and skips. Each database below is fresh, created by
`init_db` with the terminal's own role under row-level security, as in production. Defaults
everywhere (the copier's batch size, the daemon's settings) except what bench/api.py changes.

1. Under the API benchmark's load (bench/api.py's first measurement: `wrk`, 16 connections, a
   fresh Idempotency-Key each, `?wait=0`, central down, `offline.max_total_fen` lifted), once
   with `[mirror]` off and once on: the API's transactions/s both times and, with the mirror,
   its records/s during the load, the lag (records waiting and the age of the oldest, sampled
   from /v1/status every 0.5 s) and how long it takes to catch up after the load.
2. The copier alone on that backlog (the spool the load left, every record pending), copied
   into a fresh database by one `MirrorCopier.sync_once()`: records/s. Against the same records
   through a bare INSERT loop (the copier's own INSERT statement and values, one INSERT per row,
   each committed: what a naive copier does) and a bare batched INSERT (the same rows, batches
   of the copier's size in one transaction each, no compare-and-set, no spool reads: the floor),
   each on one connection made with the same settings (`conninfo`: same DSN, role, server).
3. A POS sending sales back to back (bench/api.py's second measurement: no `?wait`, a typed
   card, each sale sent when the one before is answered, central down; about 500 a second, far
   beyond any counter): the p99 of a sale with the mirror off and on, `--sales` each, in rounds
   of ROUND_SALES on a fresh daemon each, in the order off, on, on, off, off, on, on, off... (a
   drift of the machine weighs on both sides alike). Each daemon is up for SETTLE_S (and the
   copier through its first pass) before its first sale, as at a counter, where the daemon
   starts at boot. The CPU the mirror used meanwhile (its process and PostgreSQL's, from
   /proc/*/schedstat) is reported, and so is the noise: the p99 of the first half's off rounds
   against the second half's (an A/A ratio: what the same settings give twice on this machine).
4. A POS at a counter's pace: the same, `--pace-ms` (30) after each answer, which is still
   hundreds of times a busy counter's rate; `--paced-sales` each way. Target: the p99 on <= 1.1x
   off, as far as the A/A ratio lets a run tell.

    .venv/bin/python bench/mirror.py [--seconds 10] [--connections 16] [--sales 2000] [--bare-records 2000]
                                     [--paced-sales 2000] [--pace-ms 30]

Ends with one RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.api import percentile, pos_sales, run_wrk, wait_health
from spool import Record, Spool
from terminald.mirror import MirrorCopier, init_db, role_name, role_statements
from terminald.mirror.connect import async_connect, conninfo
from terminald.mirror.rows import INSERT_SQL, insert_params
from terminald.sim.ports import free_port
from terminald.sim.postgres import PgPair, pg_unavailable_reason, start_pair

TID = "T0001"
TARGET_P99_RATIO = 1.1
SETTLE_S = 2.0  # from the daemon's first answer to the first measured sale, on every side
ROUND_SALES = 500  # sales per fresh daemon
SAMPLE_S = 0.5
COPIER_BATCH: int = inspect.signature(MirrorCopier).parameters["batch_size"].default  # the default, as run


def prepare(pair: PgPair) -> str:
    """A fresh database with the schema and the terminal's role; the terminal's DSN."""
    dbname = pair.create_database("bench")
    with pair.admin(dbname) as conn:
        init_db(conn)
        for line in role_statements([TID]):
            if not line.startswith("--"):
                conn.execute(line)
    return pair.dsn(dbname, user=role_name(TID))


def record_lags(pair: PgPair, dsn: str, after_seq: int) -> tuple[float, float, float, int]:
    """Each record's lag as PostgreSQL saw it, for the records after ``after_seq``: its row's
    ``mirrored_at`` (the server's now() of the batch's transaction) minus the ``spooled_at`` in
    its record (the daemon's clock: the same machine). p50, p99, max in seconds, and the count."""
    dbname = dict(part.split("=", 1) for part in dsn.split())["dbname"]
    with pair.admin(dbname) as conn:
        row = conn.execute(
            "WITH lag AS (SELECT extract(epoch FROM mirrored_at - (record->>'spooled_at')::timestamptz) AS s"
            " FROM terminald_records WHERE terminal_id = %s AND seq > %s)"
            " SELECT percentile_disc(0.5) WITHIN GROUP (ORDER BY s), percentile_disc(0.99) WITHIN GROUP (ORDER BY s),"
            " max(s), count(*) FROM lag", (TID, after_seq)).fetchone()
    assert row is not None
    return float(row[0] or 0), float(row[1] or 0), float(row[2] or 0), int(row[3])


class Daemon:
    """`terminald serve` with a config of its own, central down (a closed port)."""

    def __init__(self, work: Path, name: str, extra: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = work / f"{name}-state"
        config = work / f"{name}.toml"
        config.write_text(f'[terminal]\nid = "{TID}"\n[api]\nlisten = "127.0.0.1:{self.port}"\n'
                          f'[upstream]\nurl = "http://127.0.0.1:{free_port()}"\n'
                          f'[offline]\nrequire_card_present = false\n{extra}', encoding="utf-8")
        env = {**os.environ, "STATE_DIRECTORY": str(self.state)}
        with open(work / f"{name}.log", "wb") as log:  # kept off the report
            self.proc = subprocess.Popen([sys.executable, "-m", "terminald.cli", "serve", "--config", str(config)],
                                         env=env, stdout=log, stderr=log)
        wait_health(self.url, "/v1/health")
        self.up_at = time.monotonic()
        self.token = (self.state / "api-token").read_text().strip()

    def status(self) -> dict[str, Any]:
        answer: dict[str, Any] = httpx.get(self.url + "/v1/status", headers={"Authorization": f"Bearer {self.token}"},
                                           timeout=10).json()
        return answer

    def mirror(self) -> dict[str, Any]:
        section: dict[str, Any] = self.status().get("mirror") or {}
        if not section.get("enabled"):
            self.stop()
            raise SystemExit("this terminald does not run the mirror ([mirror] dsn set, but no mirror in /v1/status)")
        return section

    def caught_up(self, timeout_s: float = 120) -> float:
        """Seconds until the mirror holds every record of the spool."""
        start = time.perf_counter()
        while True:
            m = self.mirror()
            if m["unmirrored"] == 0 and m["mirrored_seq"] is not None and m["mirrored_seq"] == m["spool_seq"]:
                return time.perf_counter() - start
            stuck = [a for a in m["alarms"] if a["code"] in ("mirror_schema_missing", "mirror_fork", "mirror_rejected")]
            if stuck or time.perf_counter() - start > timeout_s:
                self.stop()
                raise SystemExit(f"the mirror did not catch up: {m}")
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class LagSampler(threading.Thread):
    """/v1/status's mirror section every SAMPLE_S while the load runs."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon=True)
        self.d = daemon
        self.samples: list[dict[str, Any]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_S):
            try:
                self.samples.append(self.d.mirror())
            except httpx.HTTPError:
                continue  # a sample lost under load: the next one counts


LOAD_CONFIG = 'max_total_fen = 100000000000\n[logging]\nlevel = "warning"\n'


def load(d: Daemon, work: Path, name: str, seconds: int, connections: int) -> tuple[float, float, float]:
    """bench/api.py's first measurement (after its 2 s warm-up): tx/s, p99 ms, and the seconds the
    measured run took (wrk's own window plus its start)."""
    run_wrk(d.url, d.token, 2, connections, work, f"{name}-warm")
    started = time.perf_counter()
    rate, p99 = run_wrk(d.url, d.token, seconds, connections, work, name)
    return rate, p99, time.perf_counter() - started


async def copier_rate(spool: Spool, dsn: str) -> float:
    copier = MirrorCopier(spool, dsn)
    start = time.perf_counter()
    try:
        await copier.sync_once()
    finally:
        await copier.close()
    elapsed = time.perf_counter() - start
    head = copier.status().mirrored_seq
    if head != spool.stats().last_seq:
        raise SystemExit(f"the copier stopped at seq {head}: {copier.status()}")
    return spool.stats().last_seq / elapsed


async def bare_rates(records: list[Record], dsn_rows: str, dsn_batched: str, rows: int,
                     batch_size: int) -> tuple[float, float]:
    """(one INSERT per row, each committed) and (batches in one transaction each): records/s."""
    conn = await async_connect(conninfo(dsn_rows, application_name="bench bare insert"))
    try:
        start = time.perf_counter()
        for record in records[:rows]:
            await conn.execute(INSERT_SQL, insert_params(record))
        per_row = rows / (time.perf_counter() - start)
    finally:
        await conn.close()
    conn = await async_connect(conninfo(dsn_batched, application_name="bench bare batched insert"))
    try:
        start = time.perf_counter()
        for i in range(0, len(records), batch_size):
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(INSERT_SQL, [insert_params(r) for r in records[i:i + batch_size]])
        batched = len(records) / (time.perf_counter() - start)
    finally:
        await conn.close()
    return per_row, batched


def cpu_ns(pids: list[int]) -> dict[int, int]:
    """Nanoseconds on a CPU so far, per process (all its threads), from /proc/PID/task/*/schedstat."""
    spent: dict[int, int] = {}
    for pid in pids:
        total = 0
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError, ValueError, IndexError):
                    total += int((task / "schedstat").read_text().split()[0])
        spent[pid] = total
    return spent


def mirror_pids(pair: PgPair, child: int | None) -> list[int]:
    """The mirror's processes: the daemon's copier, and both PostgreSQL servers with every process
    of theirs (backends, WAL sender and receiver, the standby's startup process...)."""
    postmasters = {pid for pid in (pair.primary.pid(), pair.standby.pid()) if pid is not None}
    pids = set(postmasters) | ({child} if child else set())
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) in postmasters:
                    pids.add(int(entry.name))
    return sorted(pids)


def child_pid(d: Daemon, timeout_s: float = 30) -> int:
    """The copier's process (/v1/status.mirror.pid), once it has been through its first pass
    (connected, the head read): a counter's daemon starts at boot, long before its first sale."""
    deadline = time.monotonic() + timeout_s
    while True:
        m = d.mirror()
        if m.get("pid") is not None and m.get("connected") and m.get("last_ok_at"):
            return int(m["pid"])
        if time.monotonic() > deadline:
            d.stop()
            raise SystemExit(f"the mirror's process did not start: {m}")
        time.sleep(0.01)


class Side:
    """One way of running the sales (off, on): the latencies and answers of its rounds, and for
    `on` the mirror's CPU over the rounds' wall time."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.halves: tuple[list[float], list[float]] = ([], [])  # the rounds of each half of the order
        self.codes: dict[int, int] = {}
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def add(self, latencies: list[float], codes: dict[int, int], second_half: bool) -> None:
        self.latencies.extend(latencies)
        self.halves[second_half].extend(latencies)
        for code, n in codes.items():
            self.codes[code] = self.codes.get(code, 0) + n

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    @property
    def aa_ratio(self) -> float:
        """p99 of the second half's rounds over the first half's: the same settings, twice."""
        first, second = self.halves
        return percentile(second, 0.99) / percentile(first, 0.99) if first and second else 1.0

    @property
    def duty(self) -> float:
        """The mirror's CPU as a share of one CPU while its rounds ran."""
        return self.cpu_s / self.wall_s if self.wall_s else 0.0


def pos_rounds(pair: PgPair, work: Path, name: str, sales: int, pause_s: float) -> dict[str, Side]:
    """bench/api.py's second measurement, `sales` each way, ROUND_SALES per fresh daemon, the
    rounds in the order off, on, on, off, off, on, on, off... An `on` round measures the mirror's
    CPU from its first sale until the mirror holds its last."""
    rounds = max(-(-sales // ROUND_SALES), 1)
    order = [("off", "on", "on", "off")[i % 4] for i in range(2 * rounds)]
    sides = {"off": Side(), "on": Side()}
    for i, way in enumerate(order):
        side = sides[way]
        extra = f'[mirror]\ndsn = "{prepare(pair)}"\n' if way == "on" else ""
        d = Daemon(work, f"{name}-{i}-{way}", extra)
        try:
            pids = mirror_pids(pair, child_pid(d)) if way == "on" else []
            # Every daemon as a counter has it: up for a while (its start-up jobs done), then sales.
            time.sleep(max(d.up_at + SETTLE_S - time.monotonic(), 0.0))
            before, started = cpu_ns(pids), time.perf_counter()
            count = min(ROUND_SALES, sales - sum(side.codes.values()))  # the sales this side still needs
            latencies, codes = pos_sales(d.url, d.token, count, f"{name}-{i}", pause_s)
            if way == "on":
                d.caught_up()
                pids = mirror_pids(pair, child_pid(d))  # backends started meanwhile count from 0
                after = cpu_ns(pids)
                side.cpu_s += sum(after[p] - before.get(p, 0) for p in pids) / 1e9
                side.wall_s += time.perf_counter() - started
        finally:
            d.stop()
        side.add(latencies, codes, second_half=i >= len(order) // 2)
    for way, side in sides.items():
        if not side.latencies:
            raise SystemExit(f"no sale was answered 2xx {way}: {side.codes}")
    return sides


def skip(reason: str) -> None:
    print(f"SKIPPED: PostgreSQL cannot run here: {reason}")
    print("RESULT skipped=1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sales", type=int, default=2000, help="sales back to back, each way")
    parser.add_argument("--bare-records", type=int, default=2000,
                        help="records of the one-INSERT-per-commit loop (a rate: fewer is enough)")
    parser.add_argument("--paced-sales", type=int, default=2000, help="sales at a counter's pace, each way")
    parser.add_argument("--pace-ms", type=int, default=30, help="the pause after each answer at a counter's pace")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    reason = pg_unavailable_reason()
    if reason:
        skip(reason)
        return
    try:
        pair = start_pair()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        skip(str(exc).splitlines()[0])
        return
    try:
        with tempfile.TemporaryDirectory(prefix="terminald-bench-") as tmp:
            work = Path(tmp)
            print(f"PostgreSQL: primary :{pair.primary.port} + synchronous standby :{pair.standby.port} "
                  f"({pair.bindir.parent.name})")
            run_bench(pair, work, args)
    finally:
        pair.close()


def run_bench(pair: PgPair, work: Path, args: argparse.Namespace) -> None:
    # 1. The API's load, mirror off then on.
    off = Daemon(work, "load-off", LOAD_CONFIG)
    off_rate, off_p99, _ = load(off, work, "load-off", args.seconds, args.connections)
    off.stop()
    load_dsn = prepare(pair)
    on = Daemon(work, "load-on", f'{LOAD_CONFIG}[mirror]\ndsn = "{load_dsn}"\n')
    run_wrk(on.url, on.token, 2, args.connections, work, "load-on-warm")
    on.caught_up()  # the warm-up's records are in: the load starts with no lag
    before = on.mirror()
    sampler = LagSampler(on)
    sampler.start()
    started = time.perf_counter()
    on_rate, on_p99 = run_wrk(on.url, on.token, args.seconds, args.connections, work, "load-on")
    window = time.perf_counter() - started
    sampler.done.set()
    sampler.join()
    at_end = on.mirror()
    catchup_s = on.caught_up()
    final = on.mirror()
    on.stop()
    during = (at_end["mirrored_seq"] - before["mirrored_seq"]) / window
    appended = final["spool_seq"] - before["spool_seq"]
    samples = sampler.samples or [at_end]
    max_waiting = max(s["unmirrored"] or 0 for s in samples)
    lag_p50, lag_p99, lag_max, lagged = record_lags(pair, load_dsn, before["mirrored_seq"])
    print(f"API load, mirror off: {off_rate:.0f} tx/s, p99 {off_p99:.1f} ms")
    print(f"API load, mirror on:  {on_rate:.0f} tx/s, p99 {on_p99:.1f} ms; the mirror copied {during:.0f} records/s "
          f"during the load ({appended} appended in {window:.1f} s); at most {max_waiting} records waiting "
          f"({len(samples)} samples of /v1/status); each record's lag (mirrored_at - spooled_at, {lagged} records): "
          f"p50 {lag_p50 * 1000:.0f} ms, p99 {lag_p99 * 1000:.0f} ms, max {lag_max * 1000:.0f} ms; caught up "
          f"{catchup_s:.2f} s after the load")

    # 2. The copier alone on that backlog, against bare INSERT loops.
    spool = Spool.open(on.state / "spool.db", TID, background_check=False)
    try:
        records = spool.records(limit=10_000_000)
        copier_rps = asyncio.run(copier_rate(spool, prepare(pair)))
    finally:
        spool.close()
    rows = min(args.bare_records, len(records))
    bare_rps, batched_rps = asyncio.run(bare_rates(records, prepare(pair), prepare(pair), rows,
                                                   COPIER_BATCH))
    print(f"copier on a backlog of {len(records):,} records (one sync_once): {copier_rps:,.0f} records/s")
    print(f"bare INSERT loop, one commit per row ({rows:,} records): {bare_rps:,.0f} records/s; "
          f"bare batched INSERT, no compare-and-set ({len(records):,}): {batched_rps:,.0f} records/s")

    # 3. Sales back to back; 4. at a counter's pace.
    back = pos_rounds(pair, work, "pos", args.sales, 0.0)
    paced = pos_rounds(pair, work, "paced", args.paced_sales, args.pace_ms / 1000)
    b_off, b_on, p_off, p_on = back["off"], back["on"], paced["off"], paced["on"]
    ratio, paced_ratio = b_on.p(0.99) / b_off.p(0.99), p_on.p(0.99) / p_off.p(0.99)
    for title, sides in (("back to back", back), (f"at one sale per {args.pace_ms} ms", paced)):
        for way, side in sides.items():
            print(f"POS {title}, {len(side.latencies)} sales, mirror {way}: p50 {side.p(0.5):.1f} ms, "
                  f"p90 {side.p(0.9):.1f} ms, p99 {side.p(0.99):.1f} ms, answers {dict(sorted(side.codes.items()))}")
        s_off, s_on = sides["off"], sides["on"]
        print(f"  p99 on/off {s_on.p(0.99) / s_off.p(0.99):.2f} (target <= {TARGET_P99_RATIO}); the same settings "
              f"twice (A/A, off): {s_off.aa_ratio:.2f}; the mirror used {s_on.duty * 100:.1f}% of one CPU "
              f"(its process and PostgreSQL's) while its sales ran")
    print(f"RESULT mirror_copier_per_s={copier_rps:.0f} bare_insert_per_s={bare_rps:.0f} "
          f"bare_batched_per_s={batched_rps:.0f} copier_vs_bare={copier_rps / bare_rps:.1f} "
          f"copier_vs_batched={copier_rps / batched_rps:.2f} load_tx_per_s_off={off_rate:.0f} "
          f"load_tx_per_s_on={on_rate:.0f} mirror_per_s_under_load={during:.0f} max_lag_records={max_waiting} "
          f"lag_p50_ms={lag_p50 * 1000:.0f} lag_p99_ms={lag_p99 * 1000:.0f} lag_max_ms={lag_max * 1000:.0f} "
          f"catchup_s={catchup_s:.2f} pos_p99_off_ms={b_off.p(0.99):.1f} pos_p99_on_ms={b_on.p(0.99):.1f} "
          f"pos_sales_each={len(b_on.latencies)} pos_p99_ratio={ratio:.2f} pos_p99_aa_ratio={b_off.aa_ratio:.2f} "
          f"mirror_cpu_pct={b_on.duty * 100:.1f} pace_ms={args.pace_ms} paced_p99_off_ms={p_off.p(0.99):.1f} "
          f"paced_p99_on_ms={p_on.p(0.99):.1f} paced_p99_ratio={paced_ratio:.2f} "
          f"paced_p99_aa_ratio={p_off.aa_ratio:.2f} paced_mirror_cpu_pct={p_on.duty * 100:.1f} "
          f"target_p99_ratio={TARGET_P99_RATIO}")


if __name__ == "__main__":
    main()
