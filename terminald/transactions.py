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
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from spool import AppendRequest, IdempotencyConflict, OfflineLimitExceeded, Record, Spool
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
from terminald.privacy import mask_name, mask_ssn

# 1-64 visible ASCII characters, inner spaces allowed: HTTP trims a header's outer whitespace
# and carries latin-1 only, so this is every key a POS can send and get back unchanged.
KEY_PATTERN = r"^[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?$"
KEY_MAX = 64
_KEY = re.compile(KEY_PATTERN)


class UploaderView(Protocol):
    """What recording needs of the uploader (keeps this module testable alone)."""

    def offline_reason(self) -> str | None: ...
    def is_frozen(self, card_number: str) -> bool: ...
    def wake(self) -> None: ...
    async def wait_final(self, record_id: str, timeout_s: float) -> Record | None: ...


@dataclass(frozen=True)
class Outcome:
    status_code: int  # 200 replay, 201 final within wait, 202 pending
    record: Record


def mode_of(record: Record) -> str:
    if record.offline_reason == "planned_downtime":
        return "planned_downtime"
    return "offline" if record.offline else "online"


def answer(record: Record, history: list[Any] | None = None, *, timed_out: bool = False) -> dict[str, Any]:
    """The API's Transaction: personal data masked, money in fen."""
    payload = record.payload
    card = payload.get("card") or {}
    offline_reason = record.offline_reason
    if offline_reason is None and timed_out and record.status == "pending":
        offline_reason = "timeout"
    body: dict[str, Any] = {
        "id": record.record_id,
        "seq": record.seq,
        "kind": record.kind,
        "status": record.status,
        "mode": mode_of(record),
        "created_at": record.spooled_at,
        "business_time": record.business_time,
        "total_fen": int(payload.get("total_fen", 0)),
        "offline": record.offline or offline_reason is not None,
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
        "resolution": record.resolution,
        "history": [{"at": h.at, "status": h.status, "detail": h.detail} for h in (history or [])],
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


def _key_conflict() -> ConflictError:
    return ConflictError("this Idempotency-Key was used with another body", code="idempotency_conflict")


def _policy_applies(offline_reason: str | None) -> bool:
    # Central is reachable with only a backlog ahead of this sale: central will still decide it.
    return offline_reason is not None and offline_reason != "backlog"


def _qty_json(qty: Decimal) -> int | float:
    # Integral quantities stay integers; others go as the shortest decimal float ("0.5").
    return int(qty) if qty == qty.to_integral_value() else float(qty)


class Recorder:
    def __init__(self, cfg: Config, spool: Spool, uploader: UploaderView, card_reads: CardReads,
                 publish: Callable[[str, dict[str, Any]], None], appender: LoopAppender) -> None:
        self.cfg = cfg
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
        try:
            request_digest = digest(body)
        except (InvalidRequest, ValueError) as exc:  # e.g. a lone surrogate (\ud800) in a string
            raise ValidationFailed("the body is not valid JSON (a string is not valid Unicode)") from exc

        try:
            request = await self._request(body, key, request_digest)
            result = await self.appender.append(request)
        except IdempotencyConflict as exc:  # the key is taken, by another body
            raise _key_conflict() from exc
        except OfflineLimitExceeded as exc:  # never for a repeat: the spool answers those first
            raise PolicyDenied("offline_limit_exceeded",
                               f"pending offline amount would exceed {exc.limit_fen} fen",
                               limit_fen=exc.limit_fen) from exc
        except TerminaldError:
            # Refused now (a card since frozen, a card read since expired)? A repeat of a
            # request that was recorded still gets its stored answer.
            existing = await asyncio.to_thread(self.spool.find_by_key, key)
            if existing is not None:
                return self._replay(existing, request_digest)
            raise
        if not result.created:  # a repeat: the spool found the key with this very body
            return Outcome(200, result.record)
        self.uploader.wake()
        self.publish("spool.backlog", {"seq": result.record.seq, "id": result.record.record_id,
                                       "offline_reason": result.record.offline_reason})
        wait = self.cfg.upstream.wait_s if wait_s is None else wait_s
        if not self.cfg.upstream.url:
            wait = 0  # nobody will answer: waiting would only slow the counter down
        final = await self.uploader.wait_final(result.record.record_id, wait) if wait > 0 else None
        if final is not None:
            return Outcome(201, final)
        return Outcome(202, result.record)

    async def _request(self, body: dict[str, Any], key: str, request_digest: str) -> AppendRequest:
        """Validate, apply the offline policy, and shape what the spool stores."""
        try:
            tx = TransactionIn.model_validate(body)
        except ValidationError as exc:
            errors = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                      for e in exc.errors(include_url=False, include_input=False)]
            detail = "; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
            raise ValidationFailed(detail, errors=errors) from exc
        offline_reason = self.uploader.offline_reason()
        payload = await self._payload(tx, key, offline_reason)
        limited = tx.kind == "settlement" and _policy_applies(offline_reason)
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
        )

    def _replay(self, record: Record, request_digest: str) -> Outcome:
        if record.request_digest != request_digest:
            raise _key_conflict()
        return Outcome(200, record)

    async def _payload(self, tx: TransactionIn, key: str, offline_reason: str | None) -> dict[str, Any]:
        base: dict[str, Any] = {
            "operator": tx.operator.model_dump(),
            "idempotency_key": key,
            "meta": tx.meta,
        }
        if tx.kind == "revoke":
            assert tx.original_id is not None
            original = await asyncio.to_thread(self.spool.get, tx.original_id)
            if original is None or original.kind != "settlement":
                raise NotFoundError(f"no settlement {tx.original_id} on this terminal",
                                    field="original_id")
            if original.status in ("rejected", "resolved"):
                raise ConflictError("a settlement central rejected cannot be revoked", code="not_revocable")
            return {**base,
                    "card": original.payload.get("card"),
                    "card_present": False,
                    "items": [],
                    "total_fen": -int(original.payload.get("total_fen", 0)),
                    "original_record_id": original.record_id}

        card, present, expires_on = self._card(tx)
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

    def _card(self, tx: TransactionIn) -> tuple[dict[str, str], bool, str | None]:
        if tx.card_read_id is not None:
            read = self.card_reads.get(tx.card_read_id)
            if read is None:
                raise CardReadNotFound("card_read_id is unknown or older than 10 minutes: read the card again")
            data = read.card
            return ({"card_number": data.card_number or "", "ssn": data.ssn or "",
                     "name": data.name or "", "issuer_code": data.issuer_code or ""},
                    True, data.expires_on)
        assert tx.card is not None
        return ({"card_number": tx.card.card_number, "ssn": tx.card.ssn.upper(),
                 "name": tx.card.name, "issuer_code": tx.card.issuer_code}, False, None)
