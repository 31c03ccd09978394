"""Each person's records in seq order, one at a time; up to `concurrency` persons at once.

The platform keeps a deductible and an account balance per person, so one person's settlements
must happen in the order of the sales; different persons are independent.

`lanes(records, key)` groups pending records (in seq order) by person; records without a person
key share one lane of their own, in seq order. `run_lanes` works the lanes with `concurrency`
workers: a worker takes the next lane and works its records in order until the lane is done or
a record must wait (`work` returns False: the later records of that person wait with it). When
a record's work raises, no record is started after it; the records being worked finish, then
the error is raised (a Halt before anything else, then any error that is not Transient, then
the first Transient). `budget` bounds the records started in one run, and `stop_early` (asked
before each start) ends it sooner, so the uploader gets control back between rounds: a sale
the POS is still waiting for is committed meanwhile and goes first in the next round.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

from spool import Record
from terminald.upload.errors import Halt, Transient

__all__ = ["Work", "lanes", "run_lanes"]

# True: the record was decided, go on with the person's next one; False: it waits, and so do
# the person's later records (their order matters).
Work = Callable[[Record], Awaitable[bool]]


def lanes(records: Iterable[Record], key: Callable[[Record], str]) -> list[list[Record]]:
    """The records grouped by `key` (the person), each group in seq order, the groups in order
    of their first record."""
    grouped: dict[str, list[Record]] = {}
    for record in sorted(records, key=lambda r: r.seq):
        grouped.setdefault(key(record), []).append(record)
    return list(grouped.values())


def _first_error(errors: Sequence[BaseException]) -> BaseException:
    for wanted in (Halt, Exception):
        for exc in errors:
            if isinstance(exc, wanted) and not (wanted is Exception and isinstance(exc, Transient)):
                return exc
    return errors[0]


async def run_lanes(
    groups: Sequence[Sequence[Record]],
    work: Work,
    *,
    concurrency: int,
    budget: int,
    stop_early: Callable[[], bool] = lambda: False,
) -> int:
    """Work the lanes; return how many records were decided."""
    queue = deque(groups)
    errors: list[BaseException] = []
    counts = {"started": 0, "decided": 0}

    def may_start() -> bool:
        return not errors and counts["started"] < budget and not (counts["started"] and stop_early())

    async def worker() -> None:
        while queue and may_start():
            lane = queue.popleft()
            for record in lane:
                if not may_start():
                    return
                counts["started"] += 1
                try:
                    decided = await work(record)
                except Exception as exc:
                    errors.append(exc)
                    return
                if not decided:
                    break
                counts["decided"] += 1

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(groups))))))
    if errors:
        raise _first_error(errors)
    return counts["decided"]
