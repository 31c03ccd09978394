"""One spooled record's calls, until its outcome is known (contracts/upstream-nhsa.md).

    settlement   1101 -> (2101 when the profile says presettle_first) -> 2102
    revoke       2103 with the original's setl_id, mdtrt_id, psn_no (its settlement["nhsa"]);
                 an original still pending: wait; an original the platform rejected: the
                 revoke is rejected here ("original_rejected")

Before any money call, the record's calls in the call log are looked at (a crash, a cancel or
an earlier round may have left them): a 2102/2103 that answered 0 and whose outcome never
reached the spool is applied from its stored answer, never sent again; a call left sent or
unknown is reversed (2601) first, once the profile's `reversal_delay_s` has passed
(ReversalNotDue until then: the person waits, the others go on).

An unknown outcome of a money call (the profile's `reversible_infnos`) is reversed with 2601
(after that delay, when the gateway may still be working on it), then the call is sent again
with a new msgid. Unknown outcomes of the transport: after MONEY_ATTEMPTS in a row the record
waits for the next round (OutcomeUnsettled, a Transient: the link moves). Unknown outcomes of
the record itself (an answer whose split never adds up, a -1 the profile reads as unknown such
as a duplicate serial), MONEY_ATTEMPTS times: RecordStuck, the person is parked. A -1 rejects
the record with the platform's message (masked), unless the profile calls it transient
(PlatformBusy), a sign-in matter (sign in, call again) or of unknown outcome (above).

A record that cannot be sent as it is (sale.py `problem`, or a request that cannot be built:
EnvelopeError, CallLogError before anything was sent) is rejected here, `nhsa_record_invalid`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import tzinfo
from typing import Any

from spool import Record, Spool
from terminald.upload.results import RecordResult
from terminald.upstream.nhsa import wirejson
from terminald.upstream.nhsa.calllog import Call, CallLog
from terminald.upstream.nhsa.client import Accept, Person
from terminald.upstream.nhsa.edge import (
    RECORD_LEVEL,
    OutcomeUnsettled,
    RecordStuck,
    ReversalNotDue,
    StoredAnswerUnusable,
    transient_of,
)
from terminald.upstream.nhsa.envelope import Answer, Ok, Operator, Refused
from terminald.upstream.nhsa.errors import CallLogError, EnvelopeError, UnknownOutcome
from terminald.upstream.nhsa.outcome import (
    accepted,
    rejected,
    revoke_settlement,
    settlement_checker,
    settlement_of,
)
from terminald.upstream.nhsa.profiles import Profile
from terminald.upstream.nhsa.redact import mask_text
from terminald.upstream.nhsa.sale import (
    NotInsured,
    PersonInfo,
    business_time,
    person_input,
    problem,
    redact_of,
    revoke_input,
    settle_input,
)
from terminald.upstream.nhsa.session import Session

__all__ = ["INVALID", "MONEY_ATTEMPTS", "REFUSED", "Settler"]

log = logging.getLogger("terminald.upstream.nhsa")

MONEY_ATTEMPTS = 3
REFUSED = "nhsa_refused"  # the reason code of a record the platform answered -1
INVALID = "nhsa_record_invalid"  # the reason code of a record that cannot be sent as it is
_MONEY = {"settlement": "2102", "revoke": "2103"}
_NHSA_KEYS = ("setl_id", "mdtrt_id", "psn_no", "insuplc_admdvs")


class Settler:
    def __init__(
        self, session: Session, spool: Spool, calllog: CallLog, tz: tzinfo, default_operator: Operator
    ) -> None:
        self.session = session
        self.spool = spool
        self.calllog = calllog
        self.tz = tz
        self.default_operator = default_operator
        # record id -> unknown outcomes of the record itself so far (RECORD_LEVEL): memory only,
        # so a restart or staff's resume gives the record its attempts again.
        self.strikes: dict[str, int] = {}

    @property
    def profile(self) -> Profile:
        return self.session.client.profile

    async def decide(self, record: Record) -> RecordResult | None:
        """The record's outcome, or None when it must wait (a revoke whose original is pending).

        Raises the uploader's errors, and (edge.py) ReversalRefused when a call of this record
        may stand and the platform refuses to reverse it, ReversalNotDue when a call of it must
        be reversed later, RecordStuck when the record cannot be finished here."""
        redact = redact_of(record.payload)
        try:
            result = await self._decide(record, redact)
        except (EnvelopeError, CallLogError) as exc:
            # Raised before the request left (a 2601's are RecordStuck, session.py), after the
            # record's earlier calls were settled (`_resume`): nothing of it stands.
            log.warning("seq %d: its request cannot be built: %s", record.seq, exc.detail)
            result = rejected(record, INVALID, "the request for this record cannot be built for the platform: "
                              + mask_text(exc.detail, redact))
        self.strikes.pop(record.record_id, None)
        return result

    async def _decide(self, record: Record, redact: tuple[str, ...]) -> RecordResult | None:
        why = problem(record, self.profile)
        if why is not None:
            await self._nothing_stands(record, redact)
            return rejected(record, INVALID, why)
        original: Record | None = None
        if record.kind == "revoke":
            original = await asyncio.to_thread(self.spool.get, str(record.payload["original_record_id"]))
            if original is None:
                return rejected(record, "original_missing", "the revoke's original is not in this spool")
            if original.status == "pending":
                return None
            if original.status != "settled":
                return rejected(record, "original_rejected", "the platform rejected the original sale: "
                                "there is nothing to revoke")
        stored = await self._resume(record, original, redact)
        if stored is not None:
            return stored
        if original is not None:
            return await self._revoke(record, original, redact)
        return await self._settle(record, redact)

    def _operator(self, record: Record) -> Operator:
        op = record.payload.get("operator")
        if isinstance(op, Mapping) and isinstance(op.get("id"), str) and op["id"].strip():
            opter = op["id"].strip()[:30]
            name = op.get("name") if isinstance(op.get("name"), str) and op["name"].strip() else opter
            # The name only informs: cut to the profile's limit (GBK bytes in some regions)
            # rather than stop the sale.
            return Operator(opter, self.profile.fit(str(name).strip()[:50], "opter_name"),
                            self.default_operator.opter_type)
        return self.default_operator

    # -- what an earlier run left -----------------------------------------------------------------

    async def _resume(self, record: Record, original: Record | None, redact: tuple[str, ...]) -> RecordResult | None:
        calls = await asyncio.to_thread(self.calllog.for_record, record.record_id)
        money = _MONEY[record.kind]
        standing = [c for c in calls if c.infno == money and c.stands]
        if standing:
            log.info("seq %d: %s %s answered 0 before; applying its stored answer", record.seq, money,
                     standing[-1].msgid)
            return self._from_stored(record, original, standing[-1])
        await self._reverse_open(calls, redact)
        return None

    async def _nothing_stands(self, record: Record, redact: tuple[str, ...]) -> None:
        """Before a local rejection: the record's calls an earlier run left open are reversed,
        and one that stands stops it (the sale is held at the platform)."""
        calls = await asyncio.to_thread(self.calllog.for_record, record.record_id)
        if any(c.stands and c.infno in self.profile.reversible_infnos for c in calls):
            raise RecordStuck(f"seq {record.seq} cannot be sent as it is, but a call of it stands at the platform")
        await self._reverse_open(calls, redact)

    async def _reverse_open(self, calls: list[Call], redact: tuple[str, ...]) -> None:
        for call in calls:
            if call.open and call.infno in self.profile.reversible_infnos:
                await self.session.reverse(call, redact)

    def _from_stored(self, record: Record, original: Record | None, call: Call) -> RecordResult:
        try:
            output = wirejson.loads(call.output) if call.output else None
            if not isinstance(output, Mapping):
                raise UnknownOutcome("no_output", "no stored answer")
            if original is not None:
                return accepted(record, revoke_settlement(original, output, call.msgid))
            person = {"psn_no": call.psn_no, "insuplc_admdvs": call.insuplc_admdvs}
            return accepted(record, settlement_of(output.get("setlinfo"), total_fen=record.total_fen,
                                                  profile=self.profile, person=person, msgid=call.msgid))
        except (UnknownOutcome, ValueError) as exc:
            raise StoredAnswerUnusable(
                f"seq {record.seq}: {call.infno} {call.msgid} took effect at the platform, but its stored "
                f"answer cannot be applied ({type(exc).__name__}); compare with the platform's books"
            ) from exc

    # -- the calls --------------------------------------------------------------------------------

    async def _money(self, infno: str, data: Mapping[str, Any], psn: Person, record: Record,
                     accept: Accept | None = None) -> tuple[Answer, str]:
        """A call that may take effect, with its msgid; reversed and repeated while unknown."""
        for _ in range(MONEY_ATTEMPTS):
            try:
                answer, msgid = await self.session.ask_logged(infno, data, psn=psn, record_id=record.record_id,
                                                              operator=self._operator(record), accept=accept)
            except UnknownOutcome as exc:
                if infno not in self.profile.reversible_infnos:
                    raise transient_of(exc, infno) from exc
                if exc.reason in RECORD_LEVEL:
                    strikes = self.strikes[record.record_id] = self.strikes.get(record.record_id, 0) + 1
                    if strikes >= MONEY_ATTEMPTS:
                        # Reversed first when its time comes (the adapter's leftovers), never sent again.
                        raise RecordStuck(
                            f"seq {record.seq}: {infno} had no usable answer {strikes} times "
                            f"({exc.reason}: {mask_text(exc.detail, psn.redact)})") from exc
                log.warning("seq %d: %s without a definite answer (%s); reversing it", record.seq, infno, exc.reason)
                calls = await asyncio.to_thread(self.calllog.for_record, record.record_id)
                try:
                    await self._reverse_open(calls, psn.redact)
                except ReversalNotDue as wait:
                    # The gateway may still be at work on it: the person waits. A failure of the
                    # transport is the link's news too; one of the record's own answer is not.
                    if exc.reason not in RECORD_LEVEL:
                        wait.transient = transient_of(exc, infno)
                    raise
                continue
            return answer, msgid
        raise OutcomeUnsettled(f"seq {record.seq}: {infno} had no definite outcome {MONEY_ATTEMPTS} times")

    async def _person(self, record: Record, when: str, redact: tuple[str, ...]) -> PersonInfo | RecordResult:
        asked = person_input(record.payload, when)
        try:
            answer = await self.session.ask("1101", asked, psn=Person(redact=redact), record_id=record.record_id,
                                            operator=self._operator(record))
        except UnknownOutcome as exc:
            raise transient_of(exc, "1101") from exc
        if isinstance(answer, Refused):
            return rejected(record, REFUSED, answer.err_msg)
        try:
            return PersonInfo.from_output(answer.output, asked)
        except NotInsured as exc:
            return rejected(record, "nhsa_not_insured", str(exc))
        except UnknownOutcome as exc:
            # A definite answer about this person that 2102 cannot use: theirs, not the link's.
            raise RecordStuck(f"seq {record.seq}: 1101 answered what cannot be used: {exc.detail}") from exc

    async def _settle(self, record: Record, redact: tuple[str, ...]) -> RecordResult:
        when = business_time(record, self.tz)
        person = await self._person(record, when, redact)
        if isinstance(person, RecordResult):
            return person
        psn = Person(person.psn_no, person.insuplc_admdvs, (*redact, person.psn_no))
        data = settle_input(record, person, when, self.profile.amount_as)
        if self.profile.presettle_first:
            quote, _ = await self._money("2101", data, psn, record)
            if isinstance(quote, Refused):
                return rejected(record, REFUSED, quote.err_msg)
        facts = {"psn_no": person.psn_no, "insuplc_admdvs": person.insuplc_admdvs, "insutype": person.insutype}
        answer, msgid = await self._money("2102", data, psn, record,
                                          settlement_checker(record.total_fen, self.profile, facts))
        if isinstance(answer, Refused):
            return rejected(record, REFUSED, answer.err_msg)
        assert isinstance(answer, Ok)
        return accepted(record, settlement_of(answer.output.get("setlinfo"), total_fen=record.total_fen,
                                              profile=self.profile, person=facts, msgid=msgid))

    async def _revoke(self, record: Record, original: Record, redact: tuple[str, ...]) -> RecordResult:
        before = original.outcome or {}
        nhsa = before.get("nhsa")
        if not isinstance(nhsa, Mapping) or not all(isinstance(nhsa.get(k), str) and nhsa[k] for k in _NHSA_KEYS):
            return rejected(record, "nhsa_original_unknown", "the original was settled without the platform's "
                            "settlement ids: it cannot be revoked at the platform")
        psn = Person(str(nhsa["psn_no"]), str(nhsa["insuplc_admdvs"]), (*redact, str(nhsa["psn_no"])))
        answer, msgid = await self._money("2103", revoke_input(nhsa), psn, record)
        if isinstance(answer, Refused):
            return rejected(record, REFUSED, answer.err_msg)
        return accepted(record, revoke_settlement(original, answer.output, msgid))
