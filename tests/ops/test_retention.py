"""The daemon's retention task: old records, their print jobs and old events leave spool.db.

Real spool files, a real print queue and event bus, and a real `terminald serve` whose
records were made old behind its back (as a person with sqlite3 would); `terminald spool
check` must pass afterwards. Nothing sleeps: tests call `run_once()` or wait for a condition.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from drivers.printers import Printer, PrinterConfig
from spool import Outcome, Spool, SpoolError
from spool.records import Record
from terminald.events import EventBus
from terminald.receipts.jobs import PrintQueue
from terminald.retention import Retention
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.spool import TERMINAL_ID, make_request
from tests.ops._helpers import post_transaction, settlement
from tests.spool.factory import tamper as _tamper
from tests.waiting import wait_for

FAR = datetime.now(UTC) + timedelta(days=3650)
ALL_CASH = {"central_ref": "C-1", "fund_paid_fen": 0, "account_paid_fen": 0, "cash_paid_fen": 2500}




def _query(path: Path, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def _settle(sp: Spool, *records: Record) -> None:
    sp.apply_outcomes([Outcome(r.seq, "settled", ALL_CASH) for r in records])


def test_run_once_prunes_records_then_their_print_jobs_then_old_events(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        r1, r2, r3, r4 = (sp.append(make_request(f"k{n}")).record for n in range(4))
        _settle(sp, r1, r2, r4)  # r3 stays pending: r3 and r4 are kept

        printer = Printer(PrinterConfig(name="receipt", uri="memory://", columns=42))
        queue = PrintQueue(path, {"receipt": printer}, poll_s=0.1)
        queue.start()
        printed = {r.seq: queue.submit(r.record_id, b"receipt\n", "receipt") for r in (r1, r2, r3, r4)}
        wait_for(lambda: all((queue.get(j) or {}).get("state") == "done" for j in printed.values()),
                 what="four receipts printed")
        failed = queue.submit(r3.record_id, b"receipt\n", "receipt", reprint=True)
        wait_for(lambda: (queue.get(failed) or {}).get("state") == "done", what="the fifth receipt")
        queue.stop()
        _tamper(path, f"UPDATE print_jobs SET state = 'failed' WHERE job_id = '{failed}'")
        # Queued while the printer waits: a worker may still take it, so it is never pruned.
        waiting = queue.submit(r1.record_id, b"receipt\n", "receipt", reprint=True)

        bus = EventBus(path)
        bus.open()
        for n in range(1200):
            bus.publish("spool.backlog", {"n": n})
        bus.flush()
        bus.close()
        last_event = bus.last_id

        run = asyncio.run(Retention(sp, path, 30).run_once(now=FAR))

        assert (run.records, run.checkpoint_seq) == (2, 2)
        assert [r.seq for r in sp.records()] == [3, 4]
        # Jobs of the pruned r1, r2 and the failed one go; the done ones of r3, r4 stay as rows
        # (they make the next receipt a reprint) without their bytes; the queued one is untouched.
        assert (run.print_jobs, run.print_jobs_emptied) == (3, 2)
        jobs = dict(_query(path, "SELECT job_id, length(data) FROM print_jobs"))
        assert jobs == {printed[3]: 0, printed[4]: 0, waiting: len(b"receipt\n")}
        assert queue.printed_count(r3.record_id) == 1
        # Events: all are "old" as of FAR, but the newest 1,000 stay for Last-Event-ID replay.
        assert run.events == 200
        ids = [row[0] for row in _query(path, "SELECT id FROM events ORDER BY id")]
        assert ids == list(range(last_event - 999, last_event + 1))
        assert sp.check().ok

        again = asyncio.run(Retention(sp, path, 30).run_once(now=FAR))
        assert (again.records, again.print_jobs, again.print_jobs_emptied, again.events) == (0, 0, 0, 0)


def test_the_schedule_retries_after_a_failure_and_stops_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        _settle(sp, *(sp.append(make_request(f"k{n}")).record for n in range(5)))
        real_prune = sp.prune
        calls: list[int] = []

        def flaky_prune(*args: Any, **kwargs: Any) -> int:
            calls.append(1)
            if len(calls) == 1:
                raise SpoolError("disk briefly unavailable")
            return real_prune(*args, **kwargs)

        sp.prune = flaky_prune  # type: ignore[method-assign]
        retention = Retention(sp, path, 30, interval_s=0.05, first_delay_s=0, chunk=2, clock=lambda: FAR)

        async def main() -> None:
            retention.start()
            await asyncio.to_thread(wait_for, lambda: retention.runs >= 2, 20.0, "two good runs")
            await retention.stop()

        asyncio.run(main())
        assert retention.failures == 1 and retention.last_error is None
        assert sp.records() == [] and sp.check().ok
        assert retention.last is not None and retention.last.checkpoint_seq == 5
        # 5 records in chunks of 2: three prune calls in the first good run (2, 2, 1).
        assert len(calls) >= 1 + 3


def _terminald(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "terminald.cli", *args], capture_output=True, text=True,
                          env=env, timeout=120, check=False)


def test_the_daemon_prunes_old_records_jobs_and_events_and_the_chain_still_checks(daemon_proc: Any) -> None:
    d: DaemonProcess = daemon_proc("[spool]\nretention_days = 30\n[offline]\nrequire_card_present = false\n")
    with d.client() as api:
        ids = []
        for _ in range(6):
            created = post_transaction(api, settlement(), wait=0)
            assert created.status_code == 202, created.text
            ids.append(created.json()["id"])
        jobs = {}
        for n in (0, 1, 5):
            printed = api.post(f"/v1/transactions/{ids[n]}/receipt", json={})
            assert printed.status_code == 202, printed.text
            jobs[n] = printed.json()["job_id"]
        wait_for(lambda: all(api.get(f"/v1/print-jobs/{j}").json()["state"] == "done" for j in jobs.values()),
                 what="the receipts printed")
    d.stop()

    db = d.state_dir / "spool.db"
    terminal_id = _query(db, "SELECT value FROM meta WHERE key = 'terminal_id'")[0][0]
    with Spool.open(db, terminal_id, background_check=False) as sp:  # as the uploader would
        records = [sp.get(i) for i in ids]
        assert all(r is not None for r in records)
        _settle(sp, *(r for n, r in enumerate(records) if n != 4 and r is not None))  # the 5th stays pending
    old = (datetime.now(UTC) - timedelta(days=40)).timestamp()
    old_at = "2020-01-01T08:00:00.000+08:00"
    first_new = _query(db, "SELECT MAX(id) FROM events")[0][0] + 1
    _tamper(
        db,
        f"UPDATE records SET updated_epoch = {old}",
        f"UPDATE print_jobs SET updated_at = '{old_at}'",
        f"UPDATE events SET at = '{old_at}'",
        *(f"INSERT INTO events (id, name, data, at) VALUES ({first_new + n}, 'spool.backlog',"
          f" '{json.dumps({'at': old_at, 'pending': n})}', '{old_at}')" for n in range(1500)),
    )
    old_ids = [row[0] for row in _query(db, "SELECT id FROM events ORDER BY id")]

    d.start()  # the first run comes a few seconds after start, not before readiness
    # The run logs once it has done all three steps.
    wait_for(lambda: "retention (30 days): pruned" in d.stderr_text(), 60.0, "the retention run")
    assert "retention (30 days): pruned 4 records (chain checkpoint now seq 4)" in d.stderr_text()
    with d.client() as api:
        assert api.get(f"/v1/transactions/{ids[0]}").status_code == 404
        assert api.get(f"/v1/print-jobs/{jobs[0]}").status_code == 404
        assert api.get(f"/v1/transactions/{ids[4]}").json()["status"] == "pending"
        assert api.get(f"/v1/print-jobs/{jobs[5]}").json()["state"] == "done"
    d.stop()

    assert [row[0] for row in _query(db, "SELECT seq FROM records ORDER BY seq")] == [5, 6]
    assert _query(db, "SELECT job_id, length(data) FROM print_jobs") == [(jobs[5], 0)]
    kept_old = [row[0] for row in _query(db, "SELECT id FROM events WHERE at = ? ORDER BY id", (old_at,))]
    assert len(kept_old) <= 1000 and kept_old == old_ids[len(old_ids) - len(kept_old):]
    assert len(_query(db, "SELECT id FROM events")) >= 1000
    check = _terminald("spool", "check", env=d.env)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "2 records" in check.stdout


def test_a_big_prune_checkpoints_as_it_goes_so_the_wal_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    with Spool.open(path, TERMINAL_ID, background_check=False) as sp:
        n = 10_000

        def append(start: int) -> None:
            for i in range(start, n, 32):
                sp.append(make_request(f"k{i}"))

        threads = [threading.Thread(target=append, args=(k,)) for k in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for start in range(1, n + 1, 2000):
            sp.apply_outcomes([Outcome(seq, "settled", ALL_CASH) for seq in range(start, start + 2000)])
        _tamper(path, "PRAGMA wal_checkpoint(TRUNCATE)")
        wal = Path(f"{path}-wal")
        file_bytes = path.stat().st_size

        run = asyncio.run(Retention(sp, path, 30, chunk=500).run_once(now=FAR))

        assert run.records == n and run.checkpoint_seq == n
        # Without a checkpoint per chunk the WAL holds every page the deletes touched (about
        # the size of the file); with it, the WAL restarts from the top after each chunk.
        assert wal.stat().st_size < file_bytes / 5, (wal.stat().st_size, file_bytes)
        assert sp.check().ok
