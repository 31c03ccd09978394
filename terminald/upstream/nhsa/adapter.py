"""`NhsaAdapter`: the uploader's `Adapter` for the national platform (upstream.protocol = "nhsa").

    sync()       sign in (9001); reverse (2601) every money call an earlier run left sent or
                 unknown, once its `reversal_delay_s` has passed (a newer one waits: its own
                 record's round reverses it); forget the persons held for staff
    upload()     pending records the host finds eligible, grouped by person (person.py): each
                 person's records in seq order, one at a time, up to [nhsa] concurrency persons
                 at once (lanes.py); each record's calls (settle.py); each outcome handed to
                 host.apply at once (the POS may be waiting for it). Each round first reverses
                 the open calls of records it does not work (held back for their patient,
                 parked, decided): a reversal needs no patient
    probe()      nothing while the gateway answered within PROBE_QUIET_S and nothing failed
                 since; else a sign-in: changes nothing, and proves the gateway takes our calls
    resume()     staff's resume: the persons held for staff are tried again (sync first); the
                 records of a spool restored from the mirror only with restored_checked
    notices()    None: the platform has no notices
    reconcile()  3201 for one business day (reconcile.py)

What belongs to one record never moves the link; that person waits, the others go on:

    a 2601 refused (not "nothing to reverse")   the call may stand: alarm `reversal_refused`;
                                                the person waits for staff (resume) or a restart
    a record the adapter cannot finish          alarm `nhsa_record_stuck` (edge.RecordStuck): the
                                                same
    an open call whose 2601 is not due yet      the person waits until it is (edge.ReversalNotDue);
                                                when nobody else is left, the round waits for it

Nothing but the uploader's errors leaves the adapter (`_edge`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from spool import Record
from terminald.errors import ConfigError
from terminald.upload.errors import Halt
from terminald.upstream.nhsa.calllog import Call, CallLog
from terminald.upstream.nhsa.client import NhsaClient
from terminald.upstream.nhsa.edge import PlatformBusy, RecordStuck, ReversalNotDue, ReversalRefused, transient_of
from terminald.upstream.nhsa.envelope import SIGN_IN, Institution, Operator, build_request
from terminald.upstream.nhsa.errors import EnvelopeError, MsgidExhausted, NhsaError, UnknownOutcome
from terminald.upstream.nhsa.lanes import lanes, run_lanes
from terminald.upstream.nhsa.msgid import format_msgid, msgid_prefix
from terminald.upstream.nhsa.person import person_key
from terminald.upstream.nhsa.profiles import load_profile
from terminald.upstream.nhsa.redact import mask_text
from terminald.upstream.nhsa.sale import redact_of
from terminald.upstream.nhsa.session import Session
from terminald.upstream.nhsa.settle import Settler

if TYPE_CHECKING:
    import httpx

    from spool.restored import RestoredFrom
    from terminald.upload.notices import Notices
    from terminald.upstream.adapters import UpstreamHost

__all__ = ["PROBE_QUIET_S", "RECORD_STUCK", "REVERSAL_REFUSED", "NhsaAdapter"]

log = logging.getLogger("terminald.upstream.nhsa")

REVERSAL_REFUSED = "reversal_refused"
RECORD_STUCK = "nhsa_record_stuck"
RESTORED_UNVERIFIED = "nhsa_restored_unverified"
# The idle probe makes no call while a call was answered this recently (and none failed since):
# a sign-in every idle_probe_s would be thousands of call-log rows a day for nothing.
PROBE_QUIET_S = 600.0
# How often a round that waits for a reversal's delay looks for a new record or a stop.
DUE_POLL_S = 0.2
T = TypeVar("T")
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
        operator = Operator(opter, self.profile.fit((cfg.nhsa.opter_name or opter)[:50], "opter_name"),
                            cfg.nhsa.opter_type)
        institution = Institution.from_config(cfg.nhsa)
        try:
            # The institution's fields go on every call: one the profile's limits refuse would
            # otherwise refuse every call (or reject every record) at run time.
            stand_in = format_msgid(msgid_prefix(cfg.nhsa.fixmedins_code, datetime.now(UTC), UTC), 1)
            build_request(profile=self.profile, institution=institution, operator=operator, infno=SIGN_IN,
                          msgid=stand_in, input={"opter_no": opter, "mac": cfg.nhsa.mac, "ip": cfg.nhsa.ip})
        except EnvelopeError as exc:
            raise ConfigError(f"nhsa: profile {self.profile.name!r}: {exc.detail}") from exc
        self.calllog = CallLog(host.spool, fixmedins_code=cfg.nhsa.fixmedins_code, tz=host.tz,
                               msgid_slot=cfg.nhsa.msgid_slot)
        try:
            self.client = NhsaClient(
                url=cfg.upstream.url, profile=self.profile, institution=institution,
                operator=operator, calllog=self.calllog, timeout_s=cfg.upstream.timeout_s,
                verify=cfg.upstream.ca_file or True, transport=transport,
            )
        except EnvelopeError as exc:
            self.calllog.close()
            raise ConfigError(f"upstream.url: {exc.detail}") from exc
        self.session = Session(self.client, host, opter_no=opter, mac=cfg.nhsa.mac, ip=cfg.nhsa.ip)
        self.settler = Settler(self.session, host.spool, self.calllog, host.tz, operator)
        # person key -> the msgid whose reversal the platform refused (or that cannot be sent):
        # those records wait for staff, and that call is not reversed again meanwhile.
        self.blocked: dict[str, str] = {}
        # person key -> why a record of theirs is parked (RecordStuck): they wait for staff.
        self.parked: dict[str, str] = {}
        # person key -> time.time() when the 2601 of their open call is due (ReversalNotDue).
        self.deferred: dict[str, float] = {}
        self._resync = False  # staff resumed: sync before the next round
        # Records held because the spool was rebuilt from the mirror (spool/restored.py): the
        # call log that would say whether they reached the platform died with the old disk.
        # What the last `_pending` read in its thread: the marker, how many records it held, and
        # how many acknowledgements (`resume(restored_checked=True)`) there had been then: one
        # since makes it stale. Said from here, so that the event loop never reads the spool.
        self._restored_seen: tuple[int, RestoredFrom | None, int] = (0, None, 0)
        self._restore_acks = 0

    async def aclose(self) -> None:
        try:
            await self.client.aclose()
        finally:
            self.calllog.close()

    async def probe(self) -> None:
        client = self.client
        signed = client.sign_no or not self.profile.requires_sign_in
        lately = client.last_definite > client.last_unknown and time.monotonic() - client.last_definite < PROBE_QUIET_S
        if not (signed and lately):
            await self._edge(self.session.sign_in)
            return
        # Signed in and answered lately: no business call (a 9001 every probe would be thousands
        # of sign-ins a day), but the link must still see the gateway go away while the counter
        # is idle, as v1's health probe does.
        try:
            await self.client.reachable()
        except UnknownOutcome as exc:
            raise transient_of(exc, "the gateway") from exc

    async def notices(self, frozen_since: int | None) -> Notices | None:
        return None

    async def flush(self) -> None:
        """Nothing to finish: every outcome is applied before its person's next record starts."""

    def resume(self, *, restored_checked: bool = False) -> list[str]:
        """Staff resumed: the persons held for staff (refused reversal, parked record) are tried
        again, after a sync. The records of a spool restored from the mirror only when staff say
        they checked them with the platform (`restored_checked`): a resume for anything else
        (one patient after a refused reversal, a halt, a downtime window) leaves them held
        (`still_held`). The alarms cleared, by code (empty: nothing was held)."""
        cleared = [code for code, held in ((REVERSAL_REFUSED, self.blocked), (RECORD_STUCK, self.parked)) if held]
        if restored_checked and self.host.spool.restored_from() is not None:
            # Staff checked the restored records with the platform: they are sent from now on.
            self.host.spool.acknowledge_restore()
            # After the marker went: a round that read it before is stale and says nothing.
            self._restore_acks += 1
            log.warning("resume: staff checked the records restored from the mirror with the platform: they are "
                        "uploaded from now on")
            cleared.append(RESTORED_UNVERIFIED)
        if cleared:
            log.warning("resume: %d person(s) held for a refused reversal, %d parked, tried again",
                        len(self.blocked), len(self.parked))
        self._forget()
        for code in cleared:
            self.host.clear_alarm(code)
        self._resync = self._resync or bool(cleared)
        return cleared

    def still_held(self) -> list[str]:
        """`nhsa_restored_unverified` while the spool's restore marker is there: only a resume
        with `restored_checked` releases those records."""
        return [RESTORED_UNVERIFIED] if self.host.spool.restored_from() is not None else []

    def _forget(self) -> None:
        self.blocked.clear()
        self.parked.clear()
        self.settler.strikes.clear()

    async def sync(self) -> Notices | None:
        return await self._edge(self._sync)

    async def _sync(self) -> Notices | None:
        self._resync = False
        self._forget()
        await self.session.sign_in()
        await self._leftovers(set())
        if not self.blocked:
            self.host.clear_alarm(REVERSAL_REFUSED)
        if not self.parked:
            self.host.clear_alarm(RECORD_STUCK)
        return None

    async def upload(self) -> int:
        return await self._edge(self._upload)

    async def _upload(self) -> int:
        if self._resync:
            await self._sync()
        read_through = self.host.spool.pending_summary().last_seq

        def arrived() -> bool:
            return self.host.spool.pending_summary().last_seq > read_through

        while True:
            pending = await asyncio.to_thread(self._pending)
            self._say_restored_held()
            groups = [lane for lane in lanes(pending, self._key) if not self._held(self._key(lane[0]))]
            # Before the lanes start, never beside them: a call of a record being worked is open
            # while it is on the wire.
            await self._leftovers({r.record_id for lane in groups for r in lane})
            if not groups:
                return 0
            now = time.time()
            ready = [lane for lane in groups if self.deferred.get(self._key(lane[0]), 0.0) <= now]
            if not ready:
                # Everyone left waits for a reversal's delay: wait for the first here (the
                # uploader would otherwise sleep a whole idle probe), unless a new record or a
                # stop comes first.
                first = min(self.deferred[self._key(lane[0])] for lane in groups)
                if not await self._wait_until(first, arrived):
                    return 0
                continue
            decided = await self._round(ready, arrived)
            if decided or not any(self._key(lane[0]) in self.deferred for lane in ready):
                return decided
            # Nothing decided because what was tried must wait for its reversal: not "nothing
            # left" (the uploader would go idle), wait for it instead.

    async def _round(self, ready: list[list[Record]], arrived: Callable[[], bool]) -> int:
        for lane in ready:
            self.deferred.pop(self._key(lane[0]), None)
        # The order of persons is free (only each person's own order matters): a person with a
        # sale the POS is still waiting for goes first, so a patient at the counter is not made
        # to wait behind days of re-entry, and becomes an outage sale only when the platform is
        # really away. Then the oldest first.
        ready.sort(key=lambda lane: (not any(r.outage is None for r in lane), lane[0].seq))
        concurrency = self.host.cfg.nhsa.concurrency
        # Control goes back to the uploader between rounds; a round long enough that the lanes'
        # tail (workers idle while the last persons finish) stays small, and cut short when a
        # new record arrives, so that it is looked at within one call's time, or when the
        # daemon stops, so that no call is started that the stop would leave in flight.
        budget = max(self.host.cfg.upstream.batch_size, ROUND_PER_LANE * concurrency)

        def stop_early() -> bool:
            return self.host.stopping or arrived()

        return await run_lanes(ready, self._work, concurrency=concurrency, budget=budget, stop_early=stop_early)

    async def _wait_until(self, when: float, arrived: Callable[[], bool]) -> bool:
        """Sleep until `when` (time.time()); False when a new record or a stop came first."""
        while (left := when - time.time()) > 0:
            if arrived() or self.host.stopping:
                return False
            await asyncio.sleep(min(DUE_POLL_S, left))
        return True

    async def _edge(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Nothing but the uploader's errors leaves the adapter: what is still an NhsaError here
        is not of one record (those are settled in `_work`)."""
        try:
            return await fn()
        except MsgidExhausted as exc:
            raise PlatformBusy(f"no msgid left: {exc.detail}") from exc
        except NhsaError as exc:
            raise AdapterFault(f"the nhsa adapter failed ({type(exc).__name__}): {exc.detail}") from exc

    async def reconcile(self, date: str, local: dict[str, Any]) -> dict[str, Any]:
        # Imported here: reconciliation is a tool's and a report's call, not the upload loop's.
        from terminald.upstream.nhsa.reconcile import reconcile_day

        async def day() -> dict[str, Any]:
            # A sign-in that fails (the platform down) is the report's `error`, not a raise.
            return await reconcile_day(self.client, self.profile, date, local, sign_in=self.session.ensure_signed_in)

        return await self._edge(day)

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
        acks = self._restore_acks  # before the marker is read: an acknowledgement after it shows
        restored = self.host.spool.restored_from()
        restored_up_to = restored.last_seq if restored is not None else 0
        restored_held = 0
        after = 0
        while len(found) < WINDOW:
            page = self.host.spool.backlog(after, PAGE)
            if not page:
                break
            for record in page:
                key = self._key(record)
                if record.seq <= restored_up_to:
                    restored_held += 1
                    held.add(key)
                elif key in held or not self.host.eligible(record):
                    held.add(key)
                else:
                    found.append(record)
            after = page[-1].seq
        self._restored_seen = (acks, restored, restored_held)
        return found

    def _say_restored_held(self) -> None:
        """The alarm for the records the last `_pending` held for the restore (what it read: no
        spool read here, on the event loop); nothing when staff acknowledged it meanwhile."""
        acks, restored, count = self._restored_seen
        if restored is None or not count or acks != self._restore_acks:
            return
        message = (f"the spool was rebuilt from the {restored.source} ({restored.at}): {count} pending "
                   f"record(s) up to seq {restored.last_seq} may have been settled at the platform before the old "
                   "disk was lost (their call log was lost with it), so they are held. Check them with the platform "
                   "(terminald reconcile for their days, the platform's settlements of each person), reverse there "
                   "any that stands, then release them: terminald upstream resume --restored-checked --reason '…' "
                   "(POST /v1/upstream/resume with \"restored_checked\": true); each is then settled once. A resume "
                   "without it leaves them held")
        if self.host.alarm(RESTORED_UNVERIFIED, message):  # new: said once, not every round
            log.error("%s", message)

    def _held(self, key: str) -> bool:
        return key in self.blocked or key in self.parked

    async def _leftovers(self, working: set[str]) -> None:
        """Reverse the open money calls of records not worked now (`working`: their record ids):
        a crash's, a parked record's, one whose record waits for its patient or is decided. Not
        yet due: left for a later round; of a person whose reversal was refused: left for staff."""
        for call in await asyncio.to_thread(self.calllog.unfinished, self.profile.reversible_infnos):
            if call.record_id in working:
                continue
            record = await asyncio.to_thread(self.host.spool.get, call.record_id) if call.record_id else None
            if self._person_of(record, call) in self.blocked:
                continue
            try:
                await self.session.reverse(call, redact_of(record.payload) if record else ())
            except ReversalNotDue:
                continue
            except ReversalRefused as exc:
                self._block(record, exc)
            except RecordStuck as exc:
                self._park(record, exc.detail, call)

    def _person_of(self, record: Record | None, call: Call) -> str:
        return self._key(record) if record is not None else f"record:{call.record_id}"

    async def _work(self, record: Record) -> bool:
        if not self.host.eligible(record):
            return False  # waits for its patient; the person's later sales wait with it
        try:
            result = await self.settler.decide(record)
        except ReversalRefused as exc:
            self._block(record, exc)
            return False
        except ReversalNotDue as exc:
            self.deferred[self._key(record)] = exc.due
            log.info("seq %d: the 2601 of %s %s waits %.1f s (reversal_delay_s): the gateway may still be at "
                     "work on it", record.seq, exc.call.infno, exc.call.msgid, max(0.0, exc.due - time.time()))
            if exc.transient is not None:
                raise exc.transient from exc  # no answer just now: the uploader backs off, the link moves
            return False
        except RecordStuck as exc:
            self._park(record, exc.detail)
            return False
        if result is None:
            return False
        await self.host.apply([result])
        return True

    def _block(self, record: Record | None, exc: ReversalRefused) -> None:
        self.blocked[self._person_of(record, exc.call)] = exc.call.msgid
        where = f"seq {record.seq}" if record is not None else f"record {exc.call.record_id}"
        message = (f"the platform refused to reverse {exc.call.infno} {exc.call.msgid} ({where}): "
                   f"{exc.err_msg}. It may still stand; this person's records wait until the platform's "
                   "books are checked and uploading is resumed (terminald upstream resume)")
        log.error("%s", message)
        self.host.alarm(REVERSAL_REFUSED, message)

    def _park(self, record: Record | None, detail: str, call: Call | None = None) -> None:
        """One record cannot be finished here: its person waits for staff; the others go on.
        `call`: an open call whose 2601 could not be sent (not tried again meanwhile)."""
        key = self._key(record) if record is not None else f"record:{call.record_id if call else ''}"
        self.parked[key] = detail
        if call is not None:
            self.blocked[key] = call.msgid
        masked = mask_text(detail, redact_of(record.payload) if record is not None else ())
        where = f"seq {record.seq}" if record is not None else "a record"
        head = masked if masked.startswith(where) else f"{where}: {masked}"
        message = (f"terminald cannot settle this record by itself: {head}. This person's records wait; "
                   "check with the platform, then resume uploading (terminald upstream resume)")
        log.error("%s", message)
        self.host.alarm(RECORD_STUCK, message)


class AdapterFault(Halt):
    """An error of the adapter itself, not of a record nor of the link: staff look, then resume."""

    code = "nhsa_adapter_fault"
