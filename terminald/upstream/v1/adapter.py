"""Protocol v1 (contracts/upstream-v1.md) as the uploader's adapter: our own batch protocol.

The pending records go in seq order, `upstream.batch_size` at a time, one POST each, one batch
in flight; central answers every record of a batch, or the prefix before a `sequence_gap` or a
`chain_broken`. Central's outcomes for a batch are handed to `host.apply` while the next batch
is on the wire: a crash in between only means re-sending, which central answers `duplicate`.

Central's cursor is checked against the local chain in `sync` (at start and after a halt) and
after a `sequence_gap`: below what central acknowledged, past our last seq, or another hash at
that seq (a fork) halts uploading, as does `chain_broken`, with the error's code as the alarm.
More than three gaps in a row without a batch accepted is a broken chain.

Records are sent as a prefix of what the host finds eligible: v1 numbers them, and central
takes none past a gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import httpx

from spool import GENESIS_HASH, Record, SpoolStats
from terminald.upload.errors import UpstreamError
from terminald.upload.notices import Notices
from terminald.upload.results import RecordResult
from terminald.upstream.adapters import UpstreamHost
from terminald.upstream.reconcile import compare
from terminald.upstream.v1.answers import CentralTotals, Cursor
from terminald.upstream.v1.client import CentralClient
from terminald.upstream.v1.errors import (
    ChainBroken,
    ChainForked,
    CursorAhead,
    CursorRegression,
    SequenceGap,
)

__all__ = ["V1Adapter"]

log = logging.getLogger("terminald.upload")

MAX_GAPS = 3  # sequence gaps in a row before the chain is taken as broken


class V1Adapter:
    """Drives one central system over protocol v1 for the uploader (`host`)."""

    def __init__(self, host: UpstreamHost, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """ConfigError when `[upstream]` cannot be used (no url, unreadable token or TLS files)."""
        self._host = host
        self._client = CentralClient(host.cfg.upstream, host.cfg.terminal.id, transport=transport)
        self._applying: asyncio.Task[None] | None = None
        self._sent_through = 0  # the last seq of the batch whose outcomes are being applied
        self._gaps = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def probe(self) -> None:
        await self._client.health()
        self._host.reached()

    async def sync(self) -> Notices:
        cursor = await self._client.cursor()
        self._host.reached()
        await self._check_cursor(cursor)
        notices = await self._client.notices(self._host.state.frozen()[0] or None)
        self._host.reached()
        return notices

    async def notices(self, frozen_since: int | None) -> Notices:
        """Read only: the caller decides what the answer means for the link (inside a planned
        window it stays planned)."""
        return await self._client.notices(frozen_since)

    async def upload(self) -> int:
        host = self._host
        after = self._sent_through if self._applying is not None else 0
        backlog = await asyncio.to_thread(host.spool.backlog, after, host.cfg.upstream.batch_size)
        batch = _eligible_prefix(backlog, host.eligible)
        if not batch:
            await self.flush()
            return 0 if after == 0 else 1
        try:
            answer = await self._client.post_records([r.wire() for r in batch])
        except SequenceGap as gap:
            host.reached()
            await self.flush()
            self._ack(gap.results)
            await host.apply(gap.results)
            await self._resync(await self._client.cursor(), batch[0].seq + len(gap.results))
            return max(len(gap.results), 1)
        except ChainBroken as broken:
            await self.flush()
            self._ack(broken.results)
            await host.apply(broken.results)
            raise
        host.reached()
        self._gaps = 0
        await self.flush()
        self._ack(answer.results)
        self._applying = asyncio.create_task(host.apply(answer.results))
        self._sent_through = batch[-1].seq
        return len(answer.results)

    def _ack(self, results: list[RecordResult]) -> None:
        """Central holds everything up to the last result (v1 answers in seq order, a prefix of
        the batch): acknowledged before the outcomes are written, so a crash in between only
        means re-sending (duplicates), and the cursor check knows how far central must be."""
        if results:
            self._host.state.ack(max(r.seq for r in results))

    def resume(self, *, restored_checked: bool = False) -> list[str]:
        """v1 holds nothing back by itself: its halts are the uploader's. `restored_checked` is
        ignored: central's cursor and record ids make re-sending restored records safe."""
        return []

    def still_held(self) -> list[str]:
        return []

    async def flush(self) -> None:
        """Wait for the outcomes being written; on failure start again from the first pending."""
        task, self._applying = self._applying, None
        if task is not None:
            try:
                await task
            finally:
                self._sent_through = 0

    async def reconcile(self, date: str, local: dict[str, Any]) -> dict[str, Any]:
        """`GET .../totals` (pinned) against the spool's; no per-record view (see `_explain`)."""
        try:
            totals = await self._client.totals(date)
        except UpstreamError as exc:
            return compare(local, None, exc.detail)
        if totals.date != date:
            return compare(local, None, f"central answered the totals of {totals.date}, not of {date}")
        return compare(local, _figures(totals), None, _explain)

    # -- the cursor -------------------------------------------------------------------------------

    async def _check_cursor(self, cursor: Cursor) -> None:
        """Central's cursor against the local chain: below what central acknowledged
        (regression), past our last seq (ahead), or another hash at that seq (fork) halts."""
        acked = self._host.state.acked_seq
        if cursor.last_seq < acked:
            raise CursorRegression(cursor.last_seq, acked)
        stats = await asyncio.to_thread(self._host.spool.stats)
        if cursor.last_seq > stats.last_seq:
            raise CursorAhead(cursor.last_seq, stats.last_seq)
        local = await asyncio.to_thread(self._local_hash, cursor.last_seq, stats)
        if local is None:
            log.warning("central's cursor (seq %d) cannot be compared: that record was pruned here", cursor.last_seq)
        elif local != cursor.last_hash:
            raise ChainForked(cursor.last_seq, cursor.last_hash, local)

    def _local_hash(self, seq: int, stats: SpoolStats) -> str | None:
        """Our hash of record `seq`: the record's; if pruned, the next record's prev_hash; if every
        record was pruned, the spool's tail (the prune checkpoint); None past that."""
        if seq == 0:
            return GENESIS_HASH
        spool = self._host.spool
        record = spool.get_seq(seq)
        if record is not None:
            return record.hash
        following = spool.get_seq(seq + 1)
        if following is not None:
            return following.prev_hash
        return stats.last_hash if seq == stats.last_seq else None

    async def _resync(self, cursor: Cursor, next_seq: int) -> None:
        """After a sequence_gap: central's cursor decides whether to go on or to stop."""
        await self._check_cursor(cursor)
        if cursor.last_seq < next_seq - 1:
            # Central lacks records this terminal already has outcomes for: its books lost them.
            raise CursorRegression(cursor.last_seq, next_seq - 1)
        self._gaps += 1
        if self._gaps > MAX_GAPS:
            raise ChainBroken(cursor.last_seq + 1, [])
        log.warning("sequence gap: central is at seq %d; re-sending from seq %d", cursor.last_seq, next_seq)


def _eligible_prefix(batch: list[Record], eligible: Callable[[Record], bool]) -> list[Record]:
    for i, record in enumerate(batch):
        if not eligible(record):
            return batch[:i]
    return batch


def _figures(totals: CentralTotals) -> dict[str, Any]:
    return {
        "count": totals.count,
        "total_fen": totals.total_fen,
        "fund_paid_fen": totals.fund_paid_fen,
        "account_paid_fen": totals.account_paid_fen,
        "by_status": dict(totals.by_status),
    }


def _explain(count: int, listed: int) -> str:
    """What the named records are, honestly: central's totals say nothing about single records."""
    if count == 0:
        return (
            "central's totals carry no per-record detail (protocol v1), and no local record of this date is "
            "pending or lacks its settlement: central's books hold records or amounts this spool does not "
            "(check the cursor; records pruned here past retention are no longer counted)"
        )
    more = f" (the first {listed} of {count})" if listed < count else ""
    return (
        "central's totals carry no per-record detail (protocol v1): the records named are the local records "
        f"of this date whose money central may count otherwise{more}, not a record-by-record comparison"
    )
