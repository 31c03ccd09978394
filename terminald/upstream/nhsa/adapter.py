"""`NhsaAdapter`: the uploader's `Adapter` for the national platform (upstream.protocol = "nhsa").

    sync()       sign in (9001); reverse (2601) every money call an earlier run left sent or
                 unknown; forget the persons blocked by a refused reversal (they are tried again)
    upload()     pending records the host finds eligible, grouped by person (person.py): each
                 person's records in seq order, one at a time, up to [nhsa] concurrency persons
                 at once (lanes.py); each record's calls (settle.py); each outcome handed to
                 host.apply at once (the POS may be waiting for it)
    probe()      a sign-in: changes nothing, and proves the gateway takes our calls
    notices()    None: the platform has no notices
    reconcile()  3201 for one business day (reconcile.py)

A 2601 the platform refuses with a message that is not "nothing to reverse" leaves a call that
may stand: alarm `reversal_refused` (masked message), and that person's records wait until the
next sync (after staff resume a halt, or a restart); the other persons go on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from spool import Record
from terminald.errors import ConfigError
from terminald.upstream.nhsa.calllog import CallLog
from terminald.upstream.nhsa.client import NhsaClient
from terminald.upstream.nhsa.edge import ReversalRefused
from terminald.upstream.nhsa.envelope import Institution, Operator
from terminald.upstream.nhsa.errors import EnvelopeError
from terminald.upstream.nhsa.lanes import lanes, run_lanes
from terminald.upstream.nhsa.person import person_key
from terminald.upstream.nhsa.profiles import load_profile
from terminald.upstream.nhsa.sale import redact_of
from terminald.upstream.nhsa.session import Session
from terminald.upstream.nhsa.settle import Settler

if TYPE_CHECKING:
    import httpx

    from terminald.upload.notices import Notices
    from terminald.upstream.adapters import UpstreamHost

__all__ = ["REVERSAL_REFUSED", "NhsaAdapter"]

log = logging.getLogger("terminald.upstream.nhsa")

REVERSAL_REFUSED = "reversal_refused"
# Pending records read per round (in pages): enough to keep every lane busy, bounded so a huge
# backlog is not read whole each round.
WINDOW = 5000
PAGE = 500
ROUND_PER_LANE = 25


class NhsaAdapter:
    def __init__(self, host: UpstreamHost, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        cfg = host.cfg
        if not cfg.upstream.url:
            raise ConfigError('upstream.url: the gateway\'s URL is required when upstream.protocol = "nhsa"')
        missing = cfg.nhsa.missing()
        if missing:
            raise ConfigError(", ".join(f"nhsa.{k}" for k in missing) + ': required when upstream.protocol = "nhsa"')
        self.host = host
        self.profile = load_profile(cfg.nhsa.profile)
        opter = (cfg.nhsa.opter or cfg.terminal.id)[:30]
        operator = Operator(opter, (cfg.nhsa.opter_name or opter)[:50], cfg.nhsa.opter_type)
        self.calllog = CallLog(host.spool, fixmedins_code=cfg.nhsa.fixmedins_code, tz=host.tz)
        try:
            self.client = NhsaClient(
                url=cfg.upstream.url, profile=self.profile, institution=Institution.from_config(cfg.nhsa),
                operator=operator, calllog=self.calllog, timeout_s=cfg.upstream.timeout_s,
                verify=cfg.upstream.ca_file or True, transport=transport,
            )
        except EnvelopeError as exc:
            self.calllog.close()
            raise ConfigError(f"upstream.url: {exc.detail}") from exc
        self.session = Session(self.client, host, opter_no=opter, mac=cfg.nhsa.mac, ip=cfg.nhsa.ip)
        self.settler = Settler(self.session, host.spool, self.calllog, host.tz, operator)
        # person key -> the msgid whose reversal the platform refused: those records wait.
        self.blocked: dict[str, str] = {}

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        finally:
            self.calllog.close()

    async def probe(self) -> None:
        await self.session.sign_in()

    async def notices(self, frozen_since: int | None) -> Notices | None:
        return None

    async def flush(self) -> None:
        """Nothing to finish: every outcome is applied before its person's next record starts."""

    async def sync(self) -> Notices | None:
        self.blocked.clear()
        await self.session.sign_in()
        for call in await asyncio.to_thread(self.calllog.unfinished, self.profile.reversible_infnos):
            record = await asyncio.to_thread(self.host.spool.get, call.record_id) if call.record_id else None
            try:
                await self.session.reverse(call, redact_of(record.payload) if record else ())
            except ReversalRefused as exc:
                self._block(record, exc)
        if not self.blocked:
            self.host.clear_alarm(REVERSAL_REFUSED)
        return None

    async def upload(self) -> int:
        read_through = self.host.spool.pending_summary().last_seq
        pending = await asyncio.to_thread(self._pending)
        groups = [lane for lane in lanes(pending, self._key) if self._key(lane[0]) not in self.blocked]
        if not groups:
            return 0
        # The order of persons is free (only each person's own order matters): a person with a
        # sale the POS is still waiting for goes first, so a patient at the counter is not made
        # to wait behind days of re-entry, and becomes an outage sale only when the platform is
        # really away. Then the oldest first.
        groups.sort(key=lambda lane: (not any(r.outage is None for r in lane), lane[0].seq))
        concurrency = self.host.cfg.nhsa.concurrency
        # Control goes back to the uploader between rounds; a round long enough that the lanes'
        # tail (workers idle while the last persons finish) stays small, and cut short when a
        # new record arrives, so that it is looked at within one call's time.
        budget = max(self.host.cfg.upstream.batch_size, ROUND_PER_LANE * concurrency)

        def arrived() -> bool:
            return self.host.spool.pending_summary().last_seq > read_through

        return await run_lanes(groups, self._work, concurrency=concurrency, budget=budget, stop_early=arrived)

    async def reconcile(self, date: str, local: dict[str, Any]) -> dict[str, Any]:
        # Imported here: reconciliation is a tool's and a report's call, not the upload loop's.
        from terminald.upstream.nhsa.reconcile import reconcile_day

        await self.session.ensure_signed_in()
        return await reconcile_day(self.client, self.profile, date, local)

    # -- the work ---------------------------------------------------------------------------------

    @staticmethod
    def _key(record: Record) -> str:
        return person_key(record.payload)

    def _pending(self) -> list[Record]:
        # A record the host holds back (waiting for its patient) is left out here with every
        # later record of its person (their order matters), so that thousands of them never
        # fill the window.
        found: list[Record] = []
        held: set[str] = set()
        after = 0
        while len(found) < WINDOW:
            page = self.host.spool.backlog(after, PAGE)
            if not page:
                break
            for record in page:
                key = self._key(record)
                if key in held or not self.host.eligible(record):
                    held.add(key)
                else:
                    found.append(record)
            after = page[-1].seq
        return found

    async def _work(self, record: Record) -> bool:
        if not self.host.eligible(record):
            return False  # waits for its patient; the person's later sales wait with it
        try:
            result = await self.settler.decide(record)
        except ReversalRefused as exc:
            self._block(record, exc)
            return False
        if result is None:
            return False
        await self.host.apply([result])
        return True

    def _block(self, record: Record | None, exc: ReversalRefused) -> None:
        key = self._key(record) if record is not None else f"record:{exc.call.record_id}"
        self.blocked[key] = exc.call.msgid
        where = f"seq {record.seq}" if record is not None else f"record {exc.call.record_id}"
        message = (f"the platform refused to reverse {exc.call.infno} {exc.call.msgid} ({where}): "
                   f"{exc.err_msg}. It may still stand; this person's records wait until the platform's "
                   "books are checked and uploading is resumed")
        log.error("%s", message)
        self.host.alarm(REVERSAL_REFUSED, message)
