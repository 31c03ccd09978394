"""Spool append throughput, group commit, syncs per commit and open time.

    .venv/bin/python bench/spool_append.py [--quick]

Every figure is measured in this process against a baseline run here too:

* one writer, durable appends/s vs a raw ``os.write`` + ``os.fdatasync`` loop
  writing records of the same size (the floor any durable log pays);
* the same vs persist-queue's ``SQLiteAckQueue`` (WAL) with 1 and 16 threads;
* 16 concurrent appenders vs one (the group-commit speed-up);
* fdatasync calls per commit, counted by ``strace -f -c`` on a child run of
  this script; without strace (or when it cannot trace here) the figure is
  printed as ``unmeasured``, never assumed;
* time until ``Spool.open`` returns on a 1,000,000-record spool (built in a
  temp dir with the real schema and hashes, deleted afterwards), and how long
  the background ``quick_check`` then takes.

Ends with one ``RESULT key=value ...`` line. Total run time stays under 2 min.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from spool import GENESIS_HASH, AppendRequest, Spool, canonical_json, digest, record_hash
from spool.ids import now_rfc3339, uuid7

TERMINAL = "T0001"


def request(key: str, total: int = 2500) -> AppendRequest:
    payload: dict[str, Any] = {
        "card": {
            "card_number": "A12345678",
            "name": "张三",
            "issuer_code": "110000",
            "ssn": "110101199001011234",
        },
        "card_present": True,
        "items": [
            {"code": "XA01", "name": "阿莫西林胶囊", "qty": 2, "unit_price_fen": 1250, "amount_fen": total}
        ],
        "total_fen": total,
        "operator": {"id": "op1"},
        "idempotency_key": key,
    }
    return AppendRequest("settlement", "2026-11-23T10:15:00+08:00", payload, key, digest(payload))


def timed(seconds: float, ops: Callable[[int], None]) -> float:
    """Call ops(i) until ``seconds`` pass; return operations per second."""
    start = time.perf_counter()
    n = 0
    while (elapsed := time.perf_counter() - start) < seconds:
        ops(n)
        n += 1
    return n / elapsed


def threaded(threads: int, seconds: float, make_op: Callable[[int], Callable[[int], None]]) -> float:
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(t: int) -> None:
        op = make_op(t)
        i = 0
        while time.perf_counter() < stop:
            op(i)
            i += 1
        counts[t] = i

    start = time.perf_counter()
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - start)


def bench_raw(dirpath: Path, size: int, seconds: float) -> float:
    fd = os.open(dirpath / "raw.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = b"x" * (size - 1) + b"\n"

    def op(_: int) -> None:
        os.write(fd, block)
        os.fdatasync(fd)

    try:
        return timed(seconds, op)
    finally:
        os.close(fd)


def bench_spool(dirpath: Path, threads: int, seconds: float) -> tuple[float, int, int]:
    with Spool.open(dirpath / f"spool-{threads}.db", TERMINAL, background_check=False) as sp:
        rate = threaded(threads, seconds, lambda t: lambda i: _append(sp, f"{t}-{i}"))
        return rate, sp.commits, sp.stats().last_seq


def _append(sp: Spool, key: str) -> None:
    sp.append(request(key))


def bench_persist_queue(dirpath: Path, threads: int, seconds: float) -> float:
    from persistqueue import SQLiteAckQueue

    queue = SQLiteAckQueue(str(dirpath / f"pq-{threads}"), auto_commit=True, multithreading=True)
    item = request("pq").payload

    def make_op(_: int) -> Callable[[int], None]:
        def op(_: int) -> None:
            queue.put(item)

        return op

    return threaded(threads, seconds, make_op)


def count_syncs(threads: int, appends: int) -> tuple[float | None, str]:
    """fdatasync per commit: strace a child doing ``appends`` appends with ``threads`` threads.

    None (printed ``unmeasured``) when strace is missing, cannot trace here (no ptrace in a
    container) or prints a summary this does not understand: a count is never assumed.
    """
    child = [sys.executable, __file__, "--child", str(threads), str(appends)]
    if shutil.which("strace") is None:
        return None, "no strace"
    done = subprocess.run(
        ["strace", "-f", "-c", "-e", "trace=fdatasync,fsync", *child],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 or not done.stdout.startswith("commits "):
        return None, f"strace failed (exit {done.returncode})"
    commits = int(done.stdout.split()[1])
    syncs, seen = 0, False
    for line in done.stderr.splitlines():
        m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fdatasync|fsync)$", line)
        if m:
            syncs += int(m.group(1))
            seen = True
    if not seen or commits == 0:
        return None, f"strace summary not understood (commits={commits})"
    return syncs / commits, f"strace(syncs={syncs},commits={commits})"


def fmt_syncs(value: float | None) -> str:
    return "unmeasured" if value is None else f"{value:.2f}"


def child(threads: int, appends: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        sp = Spool.open(Path(d) / "c.db", TERMINAL, background_check=False)
        per = appends // threads
        workers = [
            threading.Thread(target=lambda t=t: [sp.append(request(f"{t}-{i}")) for i in range(per)])
            for t in range(threads)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        commits = sp.commits
        # Closing checkpoints the WAL (more syncs): count only the appends' commits.
        print("commits", commits, flush=True)
        os._exit(0)


def build_big(path: Path, n: int) -> None:
    """A spool of n records with the real schema and a valid chain, written in bulk."""
    Spool.open(path, TERMINAL, background_check=False).close()
    import sqlite3

    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    prev = GENESIS_HASH
    now = now_rfc3339()
    rows = []
    for seq in range(1, n + 1):
        payload = {
            "total_fen": seq % 10000,
            "idempotency_key": f"k{seq}",
            "items": [{"code": "XA01", "qty": 1}],
        }
        wire = {
            "record_id": str(uuid7()),
            "seq": seq,
            "terminal_id": TERMINAL,
            "kind": "settlement",
            "business_time": "2026-11-23T10:15:00+08:00",
            "spooled_at": now,
            "offline": False,
            "offline_reason": None,
            "payload": payload,
            "prev_hash": prev,
        }
        prev = record_hash(wire)
        status = "settled" if seq < n - 500 else "pending"
        rows.append(
            (seq, wire["record_id"], TERMINAL, "settlement", wire["business_time"], "2026-11-23", now, 0,
             None, canonical_json(payload).decode(), wire["prev_hash"], prev, status, f"k{seq}", "d",
             seq % 10000, now, 0.0)
        )  # fmt: skip
        if len(rows) == 50_000:
            _flush(conn, rows)
    _flush(conn, rows)
    conn.close()


def _flush(conn: Any, rows: list[tuple[Any, ...]]) -> None:
    conn.executemany(
        "INSERT INTO records (seq, record_id, terminal_id, kind, business_time, business_date,"
        " spooled_at, offline, offline_reason, payload, prev_hash, hash, status, idempotency_key,"
        " request_digest, total_fen, updated_at, updated_epoch)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.commit()
    rows.clear()


def bench_open(dirpath: Path, n: int) -> tuple[float, float]:
    path = dirpath / "big.db"
    build_big(path, n)
    start = time.perf_counter()
    sp = Spool.open(path, TERMINAL)
    opened = time.perf_counter() - start
    while sp.integrity == "checking":
        time.sleep(0.005)
    checked = time.perf_counter() - start
    assert sp.integrity == "ok", sp.integrity_error
    assert sp.stats().last_seq == n
    sp.close()
    return opened, checked


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="short runs and a 100k-record open test")
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    secs = 0.5 if args.quick else 3.0
    big = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as tmp:
        d = Path(tmp)
        size = len(canonical_json(request("0-0").payload)) + 400  # payload + the wire envelope
        raw = bench_raw(d, size, secs)
        one, commits_1, n_1 = bench_spool(d, 1, secs)
        many, commits_16, n_16 = bench_spool(d, 16, secs)
        pq_one = bench_persist_queue(d, 1, secs)
        pq_many = bench_persist_queue(d, 16, secs)
        syncs_1, how_1 = count_syncs(1, 300)
        syncs_16, how_16 = count_syncs(16, 1600)
        opened, checked = bench_open(d, big)
    print(f"record size ~{size} B; durable appends/s (fsync per commit):")
    print(f"  raw os.write+fdatasync        {raw:10.0f}/s")
    print(
        f"  spool, 1 writer               {one:10.0f}/s  ({one / raw:.2f}x raw; {n_1 / commits_1:.1f}/commit)"
    )
    per_commit, speedup = n_16 / commits_16, many / one
    print(
        f"  spool, 16 threads             {many:10.0f}/s  ({speedup:.2f}x 1 writer; {per_commit:.1f}/commit)"
    )
    print(f"  persist-queue AckQueue, 1     {pq_one:10.0f}/s  (spool {one / pq_one:.2f}x)")
    print(f"  persist-queue AckQueue, 16    {pq_many:10.0f}/s  (spool {many / pq_many:.2f}x)")
    print(
        f"  syncs per commit: 1 writer {fmt_syncs(syncs_1)} [{how_1}],"
        f" 16 threads {fmt_syncs(syncs_16)} [{how_16}]"
    )
    ready_ms = opened * 1000
    print(f"  open {big} records: ready in {ready_ms:.0f} ms, background quick_check done at {checked:.1f} s")
    print(
        f"RESULT record_bytes={size} raw_fdatasync_per_s={raw:.0f} spool_1w_per_s={one:.0f}"
        f" spool_vs_raw={one / raw:.3f} spool_16t_per_s={many:.0f} group_commit_speedup={many / one:.2f}"
        f" appends_per_commit_16t={n_16 / commits_16:.1f} pq_1w_per_s={pq_one:.0f} pq_16t_per_s={pq_many:.0f}"
        f" spool_vs_pq_1w={one / pq_one:.2f} spool_vs_pq_16t={many / pq_many:.2f}"
        f" syncs_per_commit_1w={fmt_syncs(syncs_1)} syncs_per_commit_16t={fmt_syncs(syncs_16)}"
        f" open_records={big} open_ms={opened * 1000:.0f} quick_check_s={checked:.1f}"
    )


if __name__ == "__main__":
    main()
