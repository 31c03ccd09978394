"""The daily retention job prunes the call log: finished calls past the retention, never an open
call nor the kept answer of a record still pending, chunked, and only where the log exists."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

from spool import AppendRequest, Spool, digest
from terminald.retention import Retention
from terminald.upstream.nhsa.calllog import CallLog
from tests.nhsa.helpers import CODE, PSN_NO, T0, Clock


def _pending_record(spool: Spool) -> str:
    payload = {"card": {"card_number": "C1"}, "items": [], "total_fen": 100, "idempotency_key": "k1"}
    req = AppendRequest(kind="settlement", business_time="2026-03-15T09:30:00+08:00", payload=payload,
                        idempotency_key="k1", request_digest=digest(payload))
    return spool.append(req).record.record_id


def _states(path: Path) -> list[tuple[str, str | None]]:
    conn = sqlite3.connect(path)
    try:
        return sorted(conn.execute("SELECT state, record_id FROM nhsa_calls").fetchall(), key=str)
    finally:
        conn.close()


def test_finished_calls_past_the_retention_go_open_ones_stay(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool.db", "T0001", background_check=False)
    try:
        clock = Clock(T0)
        pending = _pending_record(spool)
        with CallLog(spool, fixmedins_code=CODE, clock=clock) as log:
            for _ in range(5):
                log.complete(log.begin("9001"), "ok")  # the sign-ins: the bulk of the rows
            log.complete(log.begin("1101", record_id="gone"), "failed", err_msg="x")
            log.begin("2102", record_id="r-sent", psn_no=PSN_NO, insuplc_admdvs="440300")
            log.complete(log.begin("2102", record_id="r-unknown", psn_no=PSN_NO, insuplc_admdvs="440300"),
                         "unknown", err_msg="timeout: x")
            kept = log.begin("2102", record_id=pending, psn_no=PSN_NO, insuplc_admdvs="440300")
            log.complete(kept, "ok", output="{}")
            lost = log.begin("2102", record_id="r-lost", psn_no=PSN_NO, insuplc_admdvs="440300")
            by = log.begin("2601", record_id="r-lost", psn_no=PSN_NO, insuplc_admdvs="440300", omsgid=lost)
            log.complete(by, "ok")
            log.mark_reversed(lost, by=by)
            clock.advance(40 * 86400)  # a call of yesterday: within the retention
            log.complete(log.begin("9001"), "ok")
        retention = Retention(spool, spool.path, 30, chunk=2, first_delay_s=0)
        run = asyncio.run(retention.run_once(T0 + timedelta(days=41)))
        assert run.nhsa_calls == 8  # 5 sign-ins, the 1101, the reversed 2102 and its 2601
        assert _states(spool.path) == sorted([("ok", None), ("sent", "r-sent"), ("unknown", "r-unknown"),
                                              ("ok", pending)], key=str)
    finally:
        spool.close()


def test_a_spool_without_the_call_log_is_left_as_it_is(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool.db", "T0001", background_check=False)
    try:
        run = asyncio.run(Retention(spool, spool.path, 30, first_delay_s=0).run_once(T0))
        assert run.nhsa_calls == 0
        conn = sqlite3.connect(spool.path)
        try:
            assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'nhsa_calls'").fetchone() is None
        finally:
            conn.close()
    finally:
        spool.close()
