"""When the copier's passes run, without PostgreSQL: the pass is replaced by a recorder, the loop
(copier.run) is the real one. A commit after a quiet spell wakes the copier while its sale is
still being answered, so that pass waits ``settle_s``; records that keep coming are taken after
the gap, with no extra pause."""

from __future__ import annotations

import asyncio
import time

from spool import Spool
from terminald.mirror import MirrorCopier
from tests.mirror.helpers import run, until

SETTLE_S = 0.2


def recording_copier(spool: Spool, passes: list[float], *, settle_s: float, min_gap_s: float = 0.0) -> MirrorCopier:
    copier = MirrorCopier(spool, "host=127.0.0.1 port=1 dbname=none", poll_s=600, settle_s=settle_s,
                          min_gap_s=min_gap_s)

    async def recorded_pass() -> None:  # stands in for the PostgreSQL work of one pass
        passes.append(time.monotonic())

    copier.sync_once = recorded_pass  # type: ignore[method-assign]
    return copier


def test_a_wake_after_a_quiet_spell_lets_the_sale_be_answered_first(spool: Spool) -> None:
    passes: list[float] = []
    copier = recording_copier(spool, passes, settle_s=SETTLE_S)

    async def scenario() -> list[float]:
        task = asyncio.create_task(copier.run())
        try:
            await until(lambda: len(passes) == 1, 10, "the first pass")
            woken = []
            for _ in range(3):  # each after a quiet spell (the copier waits for a hint, poll_s away)
                await asyncio.sleep(0.05)
                woken.append(time.monotonic())
                copier.wake()
                await until(lambda: len(passes) > len(woken), 10, "the pass the hint asked for")
            return [p - w for p, w in zip(passes[1:], woken, strict=True)]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    waited = run(scenario())
    assert len(waited) == 3 and all(w >= SETTLE_S - 0.01 for w in waited), waited


def test_records_that_keep_coming_are_taken_after_the_gap_with_no_settle(spool: Spool) -> None:
    """A hint that arrives during the gap (sales keep coming) is taken when the gap ends: the
    settle pause is only for the first commit after a quiet spell."""
    passes: list[float] = []
    gap = 0.3
    copier = recording_copier(spool, passes, settle_s=10.0, min_gap_s=gap)

    async def scenario() -> None:
        task = asyncio.create_task(copier.run())
        try:
            await until(lambda: len(passes) == 1, 10, "the first pass")
            copier.wake()  # during the gap that follows the first pass
            # With the settle pause this would take 10 s more: the wait's 5 s would end first.
            await until(lambda: len(passes) == 2, 5, "the pass after the gap")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    run(scenario())
    assert passes[1] - passes[0] >= gap - 0.01
