"""Appends that share one commit: twins, limits, callbacks, batches longer than one INSERT."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from spool import (
    AppendRequest,
    AppendResult,
    IdempotencyConflict,
    InvalidRequest,
    OfflineLimitExceeded,
    Spool,
    SpoolClosed,
    SpoolError,
)
from tests.fixtures.spool import TERMINAL_ID, make_request
from tests.waiting import wait_for

Outcome = tuple[AppendResult | None, SpoolError | None]


def offline(key: str, total_fen: int, limit: int | None) -> AppendRequest:
    return dataclasses.replace(make_request(key, total_fen, offline=True, offline_reason="upstream_unreachable"),
                               offline_limit_fen=limit)


@contextmanager
def one_batch(tmp_path: Path) -> Iterator[tuple[Spool, Callable[[int], None]]]:
    """A spool whose writer is held inside a first commit until `release(n)`: the n appends
    queued meanwhile then go into one batch."""
    gate = threading.Event()
    commits: list[float] = []

    def hook(seconds: float) -> None:
        commits.append(seconds)
        if len(commits) == 1:
            gate.wait(10)

    with Spool.open(tmp_path / "s.db", TERMINAL_ID, on_commit=hook, background_check=False) as sp:
        opener = threading.Thread(target=sp.append, args=(make_request("opener", 1),))
        opener.start()
        wait_for(lambda: bool(commits), what="the first commit")

        def release(queued: int) -> None:
            wait_for(lambda: sp._writer._queue.qsize() >= queued,  # type: ignore[union-attr]
                     what=f"{queued} queued appends")
            gate.set()
            opener.join()

        yield sp, release
        assert len(commits) >= 2


class Collected:
    """append_later callbacks, by key, with the thread each ran on."""

    def __init__(self) -> None:
        self.by_key: dict[str, Outcome] = {}
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def callback(self, key: str) -> Callable[[AppendResult | None, SpoolError | None], None]:
        def done(result: AppendResult | None, error: SpoolError | None) -> None:
            with self._lock:
                self.by_key[key] = (result, error)
                self.threads.add(threading.current_thread().name)
        return done

    def wait(self, count: int) -> None:
        wait_for(lambda: len(self.by_key) >= count, what=f"{count} callbacks")


def test_group_commit_batches_waiting_appenders(tmp_path: Path) -> None:
    with one_batch(tmp_path) as (sp, release):
        others = [threading.Thread(target=sp.append, args=(make_request(f"k{i}"),)) for i in range(15)]
        for thread in others:
            thread.start()
        release(15)
        for thread in others:
            thread.join()
        assert sp.commits == 2  # the opener + the 15 that queued during its commit
        assert sp.check().ok and sp.stats().last_seq == 16


def test_twins_in_one_batch_share_one_record_and_other_bodies_conflict(tmp_path: Path) -> None:
    got = Collected()
    with one_batch(tmp_path) as (sp, release):
        sp.append_later(make_request("a", 100), got.callback("a1"))
        sp.append_later(make_request("a", 100), got.callback("a2"))  # the same request again
        sp.append_later(make_request("a", 999), got.callback("a3"))  # the same key, another body
        sp.append_later(make_request("b", 200), got.callback("b"))
        release(4)
        got.wait(4)
        a1, a2, a3, b = (got.by_key[k] for k in ("a1", "a2", "a3", "b"))
        assert a1[0] is not None and a1[0].created and a1[0].record.seq == 2
        assert a2[0] is not None and not a2[0].created and a2[0].record == a1[0].record
        assert a3[0] is None and isinstance(a3[1], IdempotencyConflict)
        assert a3[1].existing == a1[0].record
        assert b[0] is not None and b[0].created and b[0].record.seq == 3  # no seq went to a twin
        assert got.threads == {"spool-writer"}
        assert sp.check().ok and sp.stats().last_seq == 3


def test_a_batch_that_repeats_a_stored_key_is_worked_out_again_and_stays_gapless(tmp_path: Path) -> None:
    got = Collected()
    with one_batch(tmp_path) as (sp, release):
        # "opener" (seq 1) is in the file; this batch repeats it among new records.
        sp.append_later(make_request("x", 10), got.callback("x"))
        sp.append_later(make_request("opener", 1), got.callback("repeat"))
        sp.append_later(make_request("opener", 2), got.callback("conflict"))
        sp.append_later(make_request("y", 20), got.callback("y"))
        release(4)
        got.wait(4)
        repeat, conflict = got.by_key["repeat"], got.by_key["conflict"]
        assert repeat[0] is not None and not repeat[0].created and repeat[0].record.seq == 1
        assert isinstance(conflict[1], IdempotencyConflict) and conflict[1].existing.seq == 1
        assert [got.by_key[k][0].record.seq for k in ("x", "y")] == [2, 3]  # type: ignore[union-attr]
        assert sp.commits == 2
        report = sp.check()
        assert report.ok and sp.stats().last_seq == 3, report


def test_a_batch_longer_than_one_insert_statement_keeps_the_chain(tmp_path: Path) -> None:
    got = Collected()
    with one_batch(tmp_path) as (sp, release):
        for i in range(150):
            sp.append_later(make_request(f"k{i}", i + 1), got.callback(f"k{i}"))
        release(150)
        got.wait(150)
        seqs = [got.by_key[f"k{i}"][0].record.seq for i in range(150)]  # type: ignore[union-attr]
        assert seqs == list(range(2, 152))
        assert sp.commits == 2
        report = sp.check()
        assert report.ok, report


def test_the_offline_limit_refuses_what_would_pass_it_and_uses_no_seq(tmp_spool: Spool) -> None:
    assert tmp_spool.append(offline("a", 600, limit=1000)).created
    with pytest.raises(OfflineLimitExceeded) as info:
        tmp_spool.append(offline("b", 401, limit=1000))
    assert info.value.code == "offline_limit_exceeded" and info.value.limit_fen == 1000
    assert tmp_spool.append(offline("c", 400, limit=1000)).record.seq == 2  # exactly at the limit
    # Online records and records without a limit are never refused, but offline ones count.
    assert tmp_spool.append(dataclasses.replace(make_request("d", 5000), offline_limit_fen=1)).created
    assert tmp_spool.append(offline("e", 5000, limit=None)).created
    with pytest.raises(OfflineLimitExceeded):
        tmp_spool.append(offline("f", 1, limit=6000))
    stats = tmp_spool.stats()
    assert stats.last_seq == 4 and stats.pending_offline_fen == 6000
    assert tmp_spool.check().ok


def test_a_repeat_is_answered_even_when_its_limit_is_now_passed(tmp_spool: Spool) -> None:
    first = tmp_spool.append(offline("a", 900, limit=1000)).record
    again = tmp_spool.append(offline("a", 900, limit=1000))
    assert not again.created and again.record == first


def test_appends_racing_for_the_limit_cannot_pass_it_together(tmp_path: Path) -> None:
    got = Collected()
    with one_batch(tmp_path) as (sp, release):
        for i in range(16):
            sp.append_later(offline(f"k{i}", 100, limit=1000), got.callback(f"k{i}"))
        release(16)
        got.wait(16)
        created = [k for k, (result, _) in got.by_key.items() if result is not None]
        refused = [k for k, (_, error) in got.by_key.items() if isinstance(error, OfflineLimitExceeded)]
        assert created == [f"k{i}" for i in range(10)]  # first come, first served
        assert len(refused) == 6
        assert sp.stats().pending_offline_fen == 1000


@pytest.mark.parametrize("limit", [-1, 1.5, True, "1000"])
def test_a_bad_limit_is_refused_before_anything_is_queued(tmp_spool: Spool, limit: object) -> None:
    with pytest.raises(InvalidRequest, match="offline_limit_fen"):
        tmp_spool.append_later(offline("a", 1, limit=limit), lambda result, error: None)  # type: ignore[arg-type]
    assert tmp_spool.stats().last_seq == 0


def test_append_later_on_a_closed_spool_raises_at_once(tmp_path: Path) -> None:
    sp = Spool.open(tmp_path / "s.db", TERMINAL_ID, background_check=False)
    sp.close()
    with pytest.raises(SpoolClosed):
        sp.append_later(make_request("a"), lambda result, error: None)


def test_a_failing_callback_does_not_stop_the_writer(tmp_spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    def broken(result: AppendResult | None, error: SpoolError | None) -> None:
        raise RuntimeError("the caller's bug")

    tmp_spool.append_later(make_request("a"), broken)
    assert tmp_spool.append(make_request("b")).record.seq == 2
    deadline = time.monotonic() + 5
    while "callback failed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "spool append callback failed" in caplog.text
