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
3. What a POS feels (bench/api.py's second measurement: no `?wait`, a typed card, one sale after
   the other, central down): the p99 of a sale with the mirror off and on, each over two fresh
   daemons of `--sales`/2 sales, run off, on, on, off. Target: on <= 1.1x off.

    .venv/bin/python bench/mirror.py [--seconds 10] [--connections 16] [--sales 1000] [--bare-records 2000]

Ends with one RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
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


def pos(work: Path, name: str, extra: str, sales: int) -> tuple[list[float], dict[int, int], Daemon]:
    """bench/api.py's second measurement; the daemon is left running."""
    d = Daemon(work, name, extra)
    latencies, codes = pos_sales(d.url, d.token, sales, name)
    return latencies, codes, d


def skip(reason: str) -> None:
    print(f"SKIPPED: PostgreSQL cannot run here: {reason}")
    print("RESULT skipped=1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--sales", type=int, default=1000, help="sales of the POS measurement, each way")
    parser.add_argument("--bare-records", type=int, default=2000,
                        help="records of the one-INSERT-per-commit loop (a rate: fewer is enough)")
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

    # 3. What a POS feels, mirror off and on: two rounds each, in the order off-on-on-off, so a
    # drift of the machine (another process, the page cache, PostgreSQL's checkpoints) weighs on
    # both sides alike. Each round is a fresh daemon; the latencies of a side are pooled.
    off_pos: list[float] = []
    on_pos: list[float] = []
    off_codes: dict[int, int] = {}
    on_codes: dict[int, int] = {}
    half = max(args.sales // 2, 1)
    for i, mirrored in enumerate((False, True, True, False)):
        extra = f'[mirror]\ndsn = "{prepare(pair)}"\n' if mirrored else ""
        latencies, codes, d = pos(work, f"pos-{i}", extra, half)
        if mirrored:
            d.caught_up()
        d.stop()
        (on_pos if mirrored else off_pos).extend(latencies)
        side = on_codes if mirrored else off_codes
        for code, n in codes.items():
            side[code] = side.get(code, 0) + n
    if not off_pos or not on_pos:
        raise SystemExit(f"no sale was answered 2xx: off {off_codes}, on {on_codes}")
    p99_off, p99_on = percentile(off_pos, 0.99), percentile(on_pos, 0.99)
    p50_off, p50_on = percentile(off_pos, 0.50), percentile(on_pos, 0.50)
    ratio = p99_on / p99_off
    print(f"POS defaults, {2 * half} sales one at a time (2 daemons), mirror off: p50 {p50_off:.1f} ms, "
          f"p99 {p99_off:.1f} ms, "
          f"answers {dict(sorted(off_codes.items()))}")
    print(f"POS defaults, {2 * half} sales one at a time (2 daemons), mirror on:  p50 {p50_on:.1f} ms, "
          f"p99 {p99_on:.1f} ms, "
          f"answers {dict(sorted(on_codes.items()))}; p99 on/off {ratio:.2f} (target <= {TARGET_P99_RATIO})")
    print(f"RESULT mirror_copier_per_s={copier_rps:.0f} bare_insert_per_s={bare_rps:.0f} "
          f"bare_batched_per_s={batched_rps:.0f} copier_vs_bare={copier_rps / bare_rps:.1f} "
          f"copier_vs_batched={copier_rps / batched_rps:.2f} load_tx_per_s_off={off_rate:.0f} "
          f"load_tx_per_s_on={on_rate:.0f} mirror_per_s_under_load={during:.0f} max_lag_records={max_waiting} "
          f"lag_p50_ms={lag_p50 * 1000:.0f} lag_p99_ms={lag_p99 * 1000:.0f} lag_max_ms={lag_max * 1000:.0f} "
          f"catchup_s={catchup_s:.2f} pos_p99_off_ms={p99_off:.1f} "
          f"pos_p99_on_ms={p99_on:.1f} pos_sales_each={2 * half} pos_p99_ratio={ratio:.2f} "
          f"target_p99_ratio={TARGET_P99_RATIO}")


if __name__ == "__main__":
    main()
