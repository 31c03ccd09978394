"""LoopAppender: spool appends awaited on the event loop, one wake-up per group commit."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from spool import IdempotencyConflict, Spool, SpoolClosed, SpoolIOError
from terminald.appender import LoopAppender
from tests.fixtures.spool import TERMINAL_ID, make_request


def test_many_appends_come_back_with_their_own_records(tmp_spool: Spool) -> None:
    async def main() -> list[Any]:
        appender = LoopAppender(tmp_spool, asyncio.get_running_loop())
        return await asyncio.gather(*(appender.append(make_request(f"k{i}", i + 1)) for i in range(64)))

    results = asyncio.run(main())
    assert [r.record.total_fen for r in results] == list(range(1, 65))
    assert sorted(r.record.seq for r in results) == list(range(1, 65))
    assert all(r.created for r in results)
    assert tmp_spool.commits < 64  # they shared commits


def test_outcomes_that_arrive_together_cost_one_wake_up(tmp_spool: Spool) -> None:
    async def main() -> tuple[list[Any], int]:
        loop = asyncio.get_running_loop()
        wakeups = 0
        real = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any, **kwargs: Any) -> Any:
            nonlocal wakeups
            wakeups += 1
            return real(callback, *args, **kwargs)

        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        appender = LoopAppender(tmp_spool, loop)
        futures = [loop.create_future() for _ in range(5)]
        records = [tmp_spool.append(make_request(f"k{i}")) for i in range(5)]
        # What the writer thread does after a commit: one callback per append, back to back.
        for future, record in zip(futures, records, strict=True):
            appender._done(future, record, None)
        return await asyncio.gather(*futures), wakeups

    results, wakeups = asyncio.run(main())
    assert [r.record.seq for r in results] == [1, 2, 3, 4, 5]
    assert wakeups == 1


def test_errors_reach_the_awaiting_caller(tmp_spool: Spool) -> None:
    async def main() -> None:
        appender = LoopAppender(tmp_spool, asyncio.get_running_loop())
        first = await appender.append(make_request("k", 100))
        again = await appender.append(make_request("k", 100))
        assert not again.created and again.record == first.record
        with pytest.raises(IdempotencyConflict):
            await appender.append(make_request("k", 999))
        tmp_spool.close()
        with pytest.raises(SpoolClosed):
            await appender.append(make_request("later"))

    asyncio.run(main())


def test_a_cancelled_caller_still_gets_its_record_written(tmp_spool: Spool) -> None:
    async def main() -> None:
        appender = LoopAppender(tmp_spool, asyncio.get_running_loop())
        task = asyncio.create_task(appender.append(make_request("gone")))
        await asyncio.sleep(0)  # queued with the writer
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The next append is answered after the first one's commit, on the same loop.
        assert (await appender.append(make_request("next"))).record.seq == 2

    asyncio.run(main())
    assert tmp_spool.find_by_key("gone") is not None


def test_a_commit_that_does_not_come_back_is_an_answer_not_a_hang(tmp_path: Path) -> None:
    gate = threading.Event()

    def hung_disk(seconds: float) -> None:
        gate.wait(10)  # the writer is stuck in its first commit

    with Spool.open(tmp_path / "s.db", TERMINAL_ID, on_commit=hung_disk, background_check=False) as sp:
        async def main() -> None:
            appender = LoopAppender(sp, asyncio.get_running_loop(), timeout_s=0.2)
            with pytest.raises(SpoolIOError, match="same idempotency key") as info:
                await appender.append(make_request("k"))
            assert info.value.code == "spool_unavailable"
            gate.set()
            again = await appender.append(make_request("k"))  # the retry the error asks for
            assert not again.created and again.record.seq == 1

        asyncio.run(main())
