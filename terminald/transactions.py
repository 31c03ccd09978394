"""Recording a transaction: write-ahead, then wait a little for central.

There is one path, online or not: the record is committed to the spool
(durable) before anything else, the uploader is woken, and the caller waits up
to `wait` seconds for central's outcome. Answered in time: settled (or
rejected). Not: pending, settled later. Nothing overtakes the backlog, so the
order central sees is the order the counter took them.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from spool import (
    AppendRequest,
    IdempotencyConflict,
    NotFound,
    NotRevocable,
    OfflineLimitExceeded,
    Record,
    Spool,
    SpoolFull,
)
from spool.chain import digest
from spool.errors import InvalidRequest
from terminald.api.models import TransactionIn
from terminald.appender import LoopAppender
from terminald.cardreads import CardReads
from terminald.config import Config
from terminald.errors import (
    CardReadNotFound,
    ConflictError,
    NotFoundError,
    PolicyDenied,
    TerminaldError,
    ValidationFailed,
)
from terminald.policy import Candidate, check_offline
from terminald.privacy import mask_name, mask_phone, mask_ssn
from terminald.reentry import ReentryBook
from terminald.timefmt import local_iso, local_times

# 1-64 visible ASCII characters, inner spaces allowed: HTTP trims a header's outer whitespace
# and carries latin-1 only, so this is every key a POS can send and get back unchanged.
KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
KEY_MAX = 64
_KEY = re.compile(KEY_PATTERN)


class UploaderView(Protocol):
    """What recording needs of the uploader (keeps this module testable alone)."""

    def offline_reason(self) -> str | None: ...
    def can_settle_now(self) -> bool: ...
    def is_frozen(self, card_number: str) -> bool: ...
    def wake(self) -> None: ...
    async def wait_final(self, record_id: str, timeout_s: float) -> Record | None: ...


@dataclass(frozen=True)
class Outcome:
    status_code: int  # 200 replay, 201 final within wait, 202 pending
    record: Record


def mode_of(record: Record) -> str:
    """The mode the sale was taken in, as the POS was told: agrees with `offline` always."""
    offline, reason = record.told
    if reason == "planned_downtime":
        return "planned_downtime"
    return "offline" if offline else "online"


def paid_at_counter_fen(record: Record) -> int | None:
    """What the patient paid at the counter: the whole amount for an outage sale, else the cash
    part of central's settlement; None while undecided or when central rejected it in time."""
    if record.kind != "settlement":
        return None
    if record.paid_in_full:
        return record.total_fen
    if record.status == "settled" and record.outcome:
        cash = record.outcome.get("cash_paid_fen")
        return cash if isinstance(cash, int) and not isinstance(cash, bool) else None
    return None


def answer(record: Record, history: list[Any] | None = None, tz: tzinfo | str | None = None, *,
           awaiting_patient: bool = False) -> dict[str, Any]:
    """The API's Transaction: personal data masked, money in fen, the money facts as stored;
    with `tz` (the terminal's zone), every stored time shown in that zone (terminald/timefmt.py).
    `awaiting_patient`: the record waits for its patient (`ReentryBook.awaiting`), which only
    the daemon's memory knows."""
    payload = record.payload
    card = payload.get("card") or {}
    offline, offline_reason = record.told
    body: dict[str, Any] = {
        "id": record.record_id,
        "seq": record.seq,
        "idempotency_key": record.idempotency_key,
        "meta": payload.get("meta") or {},
        "kind": record.kind,
        "status": record.status,
        "awaiting_patient": awaiting_patient and record.status == "pending",
        "mode": mode_of(record),
        "created_at": local_iso(record.spooled_at, tz),
        "business_time": record.business_time,
        "total_fen": int(payload.get("total_fen", 0)),
        "offline": offline,
        "offline_reason": offline_reason,
        "card": {
            "card_number": card.get("card_number", ""),
            "ssn_masked": mask_ssn(card.get("ssn")),
            "name_masked": mask_name(card.get("name")),
        } if card else None,
        "card_present": bool(payload.get("card_present")),
        "items": payload.get("items", []),
        "operator": payload.get("operator", {}),
        "original_id": payload.get("original_record_id"),
        "revoked_by": record.revoked_by,
        "paid_at_counter_fen": paid_at_counter_fen(record),
        "refund_owed_fen": record.refund_owed_fen,
        "refund": local_times(record.refund, tz),
        "contact_phone_masked": mask_phone(record.contact_phone) or None,
        "resolution": local_times(record.resolution, tz),
        "history": [{"at": local_iso(h.at, tz), "status": h.status, "detail": h.detail} for h in (history or [])],
    }
    if record.status in ("settled",) and record.outcome:
        body["settlement"] = record.outcome
    if record.status in ("rejected", "resolved") and record.outcome and "code" in record.outcome:
        body["rejection"] = record.outcome
    return body


def _no_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity; JSON has neither, and money must never be one.
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400
        raise ValueError(f"{text} is out of range")
    return value


def _validated(body: dict[str, Any]) -> TransactionIn:
    try:
        return TransactionIn.model_validate(body)
    except ValidationError as exc:
        errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                  for e in exc.errors(include_url=False, include_input=False)]
        detail = "; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
        raise ValidationFailed(detail, errors=errors) from exc


def _key_conflict(existing: Record) -> ConflictError:
    return ConflictError(f"this Idempotency-Key was used with another body, for transaction {existing.record_id}",
                         code="idempotency_conflict", existing_id=existing.record_id)


def _policy_applies(offline_reason: str | None) -> bool:
    # Central is reachable with only a backlog ahead of this sale: central will still decide it.
    return offline_reason is not None and offline_reason != "backlog"


def _qty_json(qty: Decimal) -> int | float:
    # Integral quantities stay integers; others go as the shortest decimal float ("0.5").
    return int(qty) if qty == qty.to_integral_value() else float(qty)


def request_digest(tx: TransactionIn) -> str:
    """What a repeat is compared by: the validated request's meaning, not its bytes.

    The canonical JSON of the fields that differ from their defaults, so leaving a default out
    (`kind`, `"meta": {}`) or sending it is the same request, and a field added later with a
    default leaves the digest of an old request unchanged. Key order and outer whitespace do not
    count (the model strips strings); `qty` counts as its canonical decimal (1, 1.0, "1.000" are
    one quantity); the SSN's check letter in either case; `business_time` only when sent (left
    out, it is the time of the first request, and a retry must not differ by it), as the instant
    with the offset sent.
    """
    body = tx.model_dump(mode="json", exclude_defaults=True, exclude={"items", "business_time"})
    if tx.items:
        body["items"] = [{**item.model_dump(mode="json", exclude_defaults=True),
                          "qty": format(item.qty.normalize(), "f")} for item in tx.items]
    if tx.card is not None:
        body["card"]["ssn"] = tx.card.ssn.upper()
    if tx.business_time is not None:
        body["business_time"] = tx.business_time.isoformat()
    return digest(body)


class _Digests:
    """The digests a stored record's `request_digest` may equal for this request to be a repeat.

    `meaning` (`request_digest`) is what this version stores. A record stored by an earlier
    version holds the digest of the raw body (`spool.chain.digest` of the JSON as sent): the very
    same bytes still match it, a rebuilt body does not (it is refused 409 as before). That one is
    computed only when the first does not match.
    """

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.meaning: str | None = None  # None until the body validates

    def match(self, stored: str) -> bool:
        if stored == self.meaning:
            return True
        try:
            return stored == digest(self.body)
        except (InvalidRequest, ValueError):  # not JSON that can be encoded: never stored either
            return False


class Recorder:
    def __init__(self, cfg: Config, spool: Spool, uploader: UploaderView, card_reads: CardReads,
                 publish: Callable[[str, dict[str, Any]], None], appender: LoopAppender,
                 reentry: ReentryBook | None = None) -> None:
        self.cfg = cfg
        self.reentry = reentry if reentry is not None else ReentryBook(cfg)
        self.publish = publish
        self.spool = spool
        self.appender = appender
        self.uploader = uploader
        self.card_reads = card_reads
        self.tz = ZoneInfo(cfg.terminal.timezone)

    async def record(self, raw_body: bytes, key: str | None, wait_s: float | None) -> Outcome:
        if not key or len(key) > KEY_MAX or not _KEY.match(key):
            raise ValidationFailed("the Idempotency-Key header is required: 1-64 visible ASCII characters",
                                   errors=[{"loc": ["header", "Idempotency-Key"], "msg": "not a valid key",
                                            "type": "idempotency_key"}])
        try:
            body = json.loads(raw_body or b"null", parse_constant=_no_constant, parse_float=_finite_float)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise ValidationFailed("the body is not valid JSON") from exc
        if not isinstance(body, dict):
            raise ValidationFailed("the body must be a JSON object")
        digests = _Digests(body)
        try:
            tx = _validated(body)
            try:
                digests.meaning = meaning = request_digest(tx)
            except (InvalidRequest, ValueError) as exc:  # e.g. a lone surrogate (\ud800) in a string
                raise ValidationFailed("the body is not valid JSON (a string is not valid Unicode)") from exc
            request = await self._request(tx, key, meaning, wait_s)
            result = await self.appender.append(request)
        except IdempotencyConflict as exc:  # the key is taken, by another body (or by this one,
            if digests.match(exc.existing.request_digest):  # stored by an earlier version)
                return await self._repeat(exc.existing, digests, wait_s)
            raise _key_conflict(exc.existing) from exc
        except OfflineLimitExceeded as exc:  # never for a repeat: the spool answers those first
            self._release_card_read(body, key)
            raise PolicyDenied("offline_limit_exceeded",
                               f"pending offline amount would exceed {exc.limit_fen} fen",
                               limit_fen=exc.limit_fen) from exc
        except (TerminaldError, NotRevocable, NotFound) as exc:
            # Refused now (a card since frozen, a card read since expired, a revoke whose
            # original was revoked meanwhile)? A repeat of a request that was recorded still gets
            # its stored answer.
            existing = await asyncio.to_thread(self.spool.find_by_key, key)
            if existing is not None:
                return await self._repeat(existing, digests, wait_s)
            self._release_card_read(body, key)  # nothing recorded: the read may back a corrected sale
            if isinstance(exc, NotFound):
                raise NotFoundError(str(exc), field="original_id") from exc
            raise
        except SpoolFull:  # nothing was written
            self._release_card_read(body, key)
            raise
        if not result.created:  # a repeat: the spool found the key with this very request
            return await self._repeat(result.record, digests, wait_s)
        self._patient_here(result.record, tx.card_read_id)
        self.uploader.wake()
        self.publish("spool.backlog", {"seq": result.record.seq, "id": result.record.record_id,
                                       "offline_reason": result.record.offline_reason})
        return await self._answer(result.record, wait_s, first=True)

    def _patient_here(self, record: Record, card_read_id: str | None) -> None:
        """A new record was committed. A sale made with a card read (`card_present`: the read is
        of this very card) that central is to decide now proves its patient at the counter:
        their outage sales waiting for them go first, so that the person's seq order holds, and
        the new sale is released with them, for as long as the read lasts (ReentryBook). So if
        the POS's wait runs out before central answers (`mark_outage` in `_answer`), the sale
        does not wait for a patient who was here. A sale with typed-in card data proves nobody
        here and releases nothing; a sale answered "pending" in its commit (nothing could settle
        it) waits for its patient like any outage sale."""
        until = self.card_reads.expires_at(card_read_id) if card_read_id is not None else None
        if (record.kind == "settlement" and record.outage is not True and record.payload.get("card_present") is True
                and until is not None):
            self.reentry.release(self.reentry.person_of(record.payload), until=until, through=record,
                                 read_id=card_read_id)
        self.reentry.observe(record)

    async def resettle(self, record_id: str, card_read_id: str, wait_s: float | None) -> Outcome:
        """`POST /v1/transactions/{id}/resettle`: the patient of an outage sale that waits for them
        is back (`card_read_id`, a read of their card): release it (and their earlier ones), wake
        the uploader and wait up to `wait` like a sale. 200 decided, 202 still pending.

        A repeat (the record released or decided already) answers its state and sends nothing
        again; a record that does not wait is 409 `not_awaiting_patient`."""
        record = await asyncio.to_thread(self.spool.get, record_id)
        if record is None:
            raise NotFoundError(f"no transaction {record_id} on this terminal")
        if record.status != "pending":
            return Outcome(200, record)  # decided (a repeat after the outcome): its state
        if not self.reentry.released(record.record_id):
            if not self.reentry.awaiting(record):
                raise ConflictError(f"transaction {record_id} does not wait for its patient: it is "
                                    + ("uploaded by itself" if self.reentry.enabled
                                       else 're-entered by itself (nhsa.reentry is not "patient_present")'),
                                    code="not_awaiting_patient", transaction_status=record.status)
            if self.reentry.lapsed_read(record.record_id) == card_read_id:
                # A repeat of a resettle whose release lapsed with its card read: its state (202,
                # awaiting its patient again), as any repeat is answered.
                return Outcome(202, record)
            read = self.card_reads.get(card_read_id)
            if read is None:
                raise CardReadNotFound("card_read_id is unknown or older than 10 minutes: read the card again")
            person = self.reentry.person_of(record.payload)
            if self.reentry.card_person(read.card) != person:
                raise ConflictError("this card read is of another person than the transaction's: read the "
                                    "patient's own card", code="card_read_other_person")
            # One read backs one visit of one person: all of their re-entries (and retries), no sale.
            self.card_reads.claim(card_read_id, "reentry:" + person)
            until = self.card_reads.expires_at(card_read_id)
            if until is None:  # it ended just now
                raise CardReadNotFound("card_read_id is unknown or older than 10 minutes: read the card again")
            # Only while the read lasts: a release not sent by then (the link down or backing off)
            # waits for its patient again rather than going out after they left.
            self.reentry.release(person, until=until, through=record, read_id=card_read_id)
        self.uploader.wake()
        wait = self.cfg.upstream.wait_s if wait_s is None else wait_s
        final = await self.uploader.wait_final(record.record_id, wait) if wait > 0 else None
        if final is not None:
            return Outcome(200, final)
        latest = await asyncio.to_thread(self.spool.get, record.record_id)
        return Outcome(202 if latest is None or latest.status == "pending" else 200, latest or record)

    def _release_card_read(self, body: dict[str, Any], key: str) -> None:
        """A refused sale recorded nothing under its key: its card read is free again."""
        read_id = body.get("card_read_id")
        if isinstance(read_id, str):
            self.card_reads.release(read_id, key)

    async def _answer(self, record: Record, wait_s: float | None, *, first: bool) -> Outcome:
        """Wait up to `wait` for central, then fix what the POS is told (see docs/api.md).

        The answer is a money fact: "pending" means the patient pays in full, so it is written
        (`Spool.mark_outage`) before it is given, and only if central has not decided first.
        """
        settled_code = 201 if first else 200
        if record.outage is not None or record.status != "pending":
            return Outcome(202 if first and record.status == "pending" else settled_code, record)
        wait = self.cfg.upstream.wait_s if wait_s is None else wait_s
        if not self.uploader.can_settle_now():
            wait = 0  # nobody can answer within it: waiting would only hold the queue up
        final = await self.uploader.wait_final(record.record_id, wait) if wait > 0 else None
        if final is not None:
            return Outcome(settled_code, final)
        # Why the patient pays in full: how it was spooled, else what the link says now.
        if record.offline_reason is None and not self.uploader.can_settle_now():  # the link went down meanwhile
            reason = self.uploader.offline_reason() or "timeout"
        else:
            reason = record.offline_reason or "timeout"
        fixed = await asyncio.to_thread(self.spool.mark_outage, record.record_id, reason)
        self.reentry.observe(fixed)  # an outage sale now: with patient_present it waits for its patient
        if fixed.status != "pending":  # central's outcome was applied just before
            return Outcome(settled_code, fixed)
        return Outcome(202 if first else 200, fixed)

    async def _repeat(self, record: Record, digests: _Digests, wait_s: float | None) -> Outcome:
        """A repeated key with the same request: the stored answer. A sale nobody was answered
        "pending" for yet (the first request's client gave up) waits like the first request."""
        if not digests.match(record.request_digest):
            raise _key_conflict(record)
        return await self._answer(record, wait_s, first=False)

    async def _request(self, tx: TransactionIn, key: str, request_digest: str,
                       wait_s: float | None) -> AppendRequest:
        """Apply the offline policy, and shape what the spool stores."""
        offline_reason = self.uploader.offline_reason()
        payload = await self._payload(tx, key, offline_reason)
        limited = tx.kind == "settlement" and _policy_applies(offline_reason)
        wait = self.cfg.upstream.wait_s if wait_s is None else wait_s
        # Answered "pending" the moment it is committed (nothing can settle it, or the POS asked
        # not to wait): the patient pays in full, and the commit says so.
        at_once = not self.uploader.can_settle_now() or wait <= 0
        return AppendRequest(
            kind=tx.kind,
            business_time=(tx.business_time or datetime.now(self.tz)).isoformat(),
            payload=payload,
            idempotency_key=key,
            request_digest=request_digest,
            offline=offline_reason is not None,
            offline_reason=offline_reason,
            # The policy's total limit, decided by the spool inside the commit (see policy.py).
            offline_limit_fen=self.cfg.offline.max_total_fen if limited else None,
            outage_reason=(offline_reason or "timeout") if at_once else None,
            original_record_id=payload.get("original_record_id"),
            contact_phone=tx.contact_phone,
        )

    async def _payload(self, tx: TransactionIn, key: str, offline_reason: str | None) -> dict[str, Any]:
        base: dict[str, Any] = {
            "operator": tx.operator.model_dump(),
            "idempotency_key": key,
            "meta": tx.meta,
        }
        if tx.kind == "revoke":
            assert tx.original_id is not None
            original = await asyncio.to_thread(self.spool.get, tx.original_id)
            if original is None:
                raise NotFoundError(f"no settlement {tx.original_id} on this terminal",
                                    field="original_id")
            # The spool decides every revoke rule inside its commit (two revokes racing each
            # other cannot both pass); these early answers only spare a write.
            if original.kind != "settlement":
                raise ConflictError("a revoke cannot be revoked", code="not_revocable")
            if original.status in ("rejected", "resolved"):
                raise ConflictError("a settlement central rejected cannot be revoked", code="not_revocable")
            return {**base,
                    "card": original.payload.get("card"),
                    "card_present": False,
                    "items": [],
                    "total_fen": -int(original.payload.get("total_fen", 0)),
                    "original_record_id": original.record_id}

        card, present, expires_on = self._card(tx, key)
        total = int(tx.total_fen or 0)
        if _policy_applies(offline_reason):
            check_offline(
                Candidate(card["card_number"], total, present, expires_on),
                self.cfg.offline,
                is_frozen=self.uploader.is_frozen,
                today=datetime.now(self.tz).date(),
            )
        return {**base,
                "card": card,
                "card_present": present,
                "items": [{"code": i.code, "name": i.name, "qty": _qty_json(i.qty),
                           "unit_price_fen": i.unit_price_fen, "amount_fen": i.amount_fen} for i in tx.items],
                "total_fen": total}

    def _card(self, tx: TransactionIn, key: str) -> tuple[dict[str, str], bool, str | None]:
        if tx.card_read_id is not None:
            # A card read proves the card was here for one sale: this key's (again on a retry).
            data = self.card_reads.claim(tx.card_read_id, key).card
            return ({"card_number": data.card_number or "", "ssn": data.ssn or "",
                     "name": data.name or "", "issuer_code": data.issuer_code or ""},
                    True, data.expires_on)
        assert tx.card is not None
        return ({"card_number": tx.card.card_number, "ssn": tx.card.ssn.upper(),
                 "name": tx.card.name, "issuer_code": tx.card.issuer_code}, False, None)
