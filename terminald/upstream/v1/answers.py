"""Central's protocol v1 answers, parsed strictly into typed values.

Anything that does not match protocol v1 raises BadAnswer (a transient error:
the same records are re-sent later, which the protocol makes safe). Nothing
here trusts a field it has not checked, and only documented fields get
through: a settlement is `{central_ref, fund_paid_fen, account_paid_fen,
cash_paid_fen}` whose parts have the sign of the record's `total_fen` and add
up to it exactly (a revoke's total is negative, so are its parts); a reason is
`{code, message}` with `code` of `[a-z0-9_]{1,64}` and the message cleaned of
control characters and cut to 500 characters. Anything else central adds is
dropped here, so it never reaches the spool, the API, events or receipts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from terminald.upload.errors import BadAnswer
from terminald.upload.notices import DowntimeNotice, FrozenCards, Notices
from terminald.upload.results import RecordResult

__all__ = [
    "BatchAnswer",
    "CentralTotals",
    "Cursor",
    "RecordResult",
    "SentRecord",
    "clean_text",
    "parse_batch",
    "parse_cursor",
    "parse_notices",
    "parse_results",
    "parse_totals",
]

_HEX = frozenset("0123456789abcdef")
_CODE = re.compile(r"[a-z0-9_]{1,64}")
MAX_SEQ = 2**63 - 1
MAX_CENTRAL_REF = 64
MAX_MESSAGE = 500
MAX_WINDOWS = 100
MAX_WINDOW_REASON = 200
MAX_CARD_NUMBER = 32
SETTLEMENT_PARTS = ("fund_paid_fen", "account_paid_fen", "cash_paid_fen")


@dataclass(frozen=True)
class Cursor:
    last_seq: int
    last_hash: str


@dataclass(frozen=True)
class SentRecord:
    """A record of the batch as sent: what each result is checked against."""

    seq: int
    record_id: str
    total_fen: int

    @classmethod
    def of(cls, wire: Mapping[str, Any]) -> SentRecord:
        payload = wire.get("payload")
        total = payload.get("total_fen") if isinstance(payload, Mapping) else None
        if not isinstance(total, int) or isinstance(total, bool):
            total = 0  # a record without an integer total is counted as 0, as central counts it
        return cls(int(wire["seq"]), str(wire["record_id"]), total)


@dataclass(frozen=True)
class BatchAnswer:
    results: list[RecordResult]
    last_seq: int


@dataclass(frozen=True)
class CentralTotals:
    """`GET .../totals` (pinned): count and net sums over accepted records; by_status counts all."""

    date: str
    count: int
    total_fen: int
    fund_paid_fen: int
    account_paid_fen: int
    by_status: dict[str, int]


def _obj(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadAnswer(f"{where}: expected a JSON object")
    return value


def _int(obj: Mapping[str, Any], key: str, where: str, minimum: int = 0) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadAnswer(f"{where}.{key}: expected an integer >= {minimum}")
    return value


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise BadAnswer(f"{where}.{key}: expected a string")
    return value


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadAnswer(f"{where}: expected a list of strings")
    return tuple(value)


def parse_cursor(body: Any) -> Cursor:
    obj = _obj(body, "cursor")
    last_hash = _str(obj, "last_hash", "cursor")
    if len(last_hash) != 64 or not set(last_hash) <= _HEX:
        raise BadAnswer("cursor.last_hash: expected 64 lowercase hex digits")
    last_seq = _int(obj, "last_seq", "cursor")
    if last_seq > MAX_SEQ:
        raise BadAnswer("cursor.last_seq: beyond 64 bits")
    return Cursor(last_seq, last_hash)


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def clean_text(text: str, limit: int) -> str:
    """`text` fit to show and log: line breaks and tabs become spaces, other control and format
    characters (Unicode category C*) are dropped, at most `limit` characters are kept."""
    kept = (" " if ch in "\t\n\r" else ch for ch in text if ch in "\t\n\r" or not _has_control(ch))
    return "".join(kept).strip()[:limit]


def _settlement(value: Any, where: str, total_fen: int) -> dict[str, Any]:
    """Only the documented fields; the parts have the total's sign and add up to it exactly."""
    s = _obj(value, where)
    ref = s.get("central_ref")
    if not isinstance(ref, str) or not 0 < len(ref) <= MAX_CENTRAL_REF or _has_control(ref):
        raise BadAnswer(f"{where}.central_ref: expected 1-{MAX_CENTRAL_REF} characters, no control characters")
    sign = -1 if total_fen < 0 else 1
    parts: dict[str, int] = {}
    for key in SETTLEMENT_PARTS:
        part = s.get(key)
        if not isinstance(part, int) or isinstance(part, bool) or part * sign < 0:
            kind = "<= 0 (a revoke's total is negative)" if sign < 0 else ">= 0"
            raise BadAnswer(f"{where}.{key}: expected an integer {kind}")
        parts[key] = part
    if sum(parts.values()) != total_fen:
        raise BadAnswer(
            f"{where}: fund {parts['fund_paid_fen']} + account {parts['account_paid_fen']} + cash "
            f"{parts['cash_paid_fen']} is not the record's total_fen {total_fen}"
        )
    return {"central_ref": ref, **parts}


def _reason(value: Any, where: str) -> dict[str, Any]:
    """Only the documented fields: a code of [a-z0-9_] (at most 64) and a cleaned message."""
    r = _obj(value, where)
    code = r.get("code")
    if not isinstance(code, str) or _CODE.fullmatch(code) is None:
        raise BadAnswer(f"{where}.code: expected 1-64 characters of a-z, 0-9 and _")
    message = r.get("message", "")
    if not isinstance(message, str):
        raise BadAnswer(f"{where}.message: expected a string")
    return {"code": code, "message": clean_text(message, MAX_MESSAGE)}


def _result(value: Any, where: str, sent: SentRecord) -> RecordResult:
    obj = _obj(value, where)
    seq = _int(obj, "seq", where, 1)
    record_id = _str(obj, "record_id", where)
    if seq != sent.seq or record_id != sent.record_id:
        raise BadAnswer(f"{where}: the result for seq {seq} ({record_id[:40]!r}) answers no record sent there")
    status = obj.get("status")
    if status not in ("accepted", "rejected", "duplicate"):
        raise BadAnswer(f"{where}.status: unknown status {str(status)[:20]!r}")
    settlement = obj.get("settlement")
    reason = obj.get("reason")
    wanted = {"accepted": (True, False), "rejected": (False, True)}.get(str(status))
    has = (settlement is not None, reason is not None)
    if (wanted is not None and has != wanted) or (wanted is None and sum(has) != 1):
        raise BadAnswer(f"{where}: a {status} result needs exactly its settlement or reason")
    return RecordResult(
        seq=seq,
        record_id=record_id,
        status=status,
        settlement=_settlement(settlement, f"{where}.settlement", sent.total_fen) if settlement is not None else None,
        reason=_reason(reason, f"{where}.reason") if reason is not None else None,
    )


def parse_results(value: Any, sent: Sequence[SentRecord], where: str = "results") -> list[RecordResult]:
    """Results answer the sent records in order, as a prefix (all of them in a 200), each checked
    against its record (seq, record_id, total); only the documented fields are kept."""
    if not isinstance(value, list):
        raise BadAnswer(f"{where}: expected a list")
    if len(value) > len(sent):
        raise BadAnswer(f"{len(value)} results for {len(sent)} records")
    return [_result(item, f"{where}[{i}]", record) for i, (item, record) in enumerate(zip(value, sent, strict=False))]


def parse_batch(body: Any, sent: Sequence[SentRecord]) -> BatchAnswer:
    obj = _obj(body, "answer")
    results = parse_results(obj.get("results"), sent)
    if len(results) != len(sent):
        raise BadAnswer(f"{len(results)} results for {len(sent)} records in a 200 answer")
    last_seq = _int(obj, "last_seq", "answer")
    if sent and last_seq < sent[-1].seq:
        raise BadAnswer(f"answer.last_seq {last_seq} is below the last seq sent ({sent[-1].seq})")
    return BatchAnswer(results, last_seq)


def _time_text(w: Mapping[str, Any], key: str, where: str) -> str:
    value = _str(w, key, where)
    if not 0 < len(value) <= 64 or _has_control(value):
        raise BadAnswer(f"{where}.{key}: expected a time of at most 64 characters")
    return value


def _card_numbers(value: Any, where: str) -> tuple[str, ...]:
    numbers = _strings(value, where)
    if any(not 0 < len(n) <= MAX_CARD_NUMBER or _has_control(n) for n in numbers):
        raise BadAnswer(f"{where}: a card number is empty, longer than {MAX_CARD_NUMBER} or has control characters")
    return numbers


def parse_notices(body: Any) -> Notices:
    """Windows are only checked for shape here (notices.py judges their times); frozen card
    numbers are bounded; other fields are ignored."""
    obj = _obj(body, "notices")
    raw_windows = obj.get("downtime", [])
    if not isinstance(raw_windows, list) or len(raw_windows) > MAX_WINDOWS:
        raise BadAnswer(f"notices.downtime: expected a list of at most {MAX_WINDOWS} windows")
    windows = []
    for i, raw in enumerate(raw_windows):
        where = f"notices.downtime[{i}]"
        w = _obj(raw, where)
        reason = w.get("reason", "")
        if not isinstance(reason, str):
            raise BadAnswer(f"{where}.reason: expected a string")
        windows.append(
            DowntimeNotice(
                _time_text(w, "start", where), _time_text(w, "end", where), clean_text(reason, MAX_WINDOW_REASON)
            )
        )
    frozen = _obj(obj.get("frozen_cards"), "notices.frozen_cards")
    version = _int(frozen, "version", "notices.frozen_cards")
    if version > MAX_SEQ:
        raise BadAnswer("notices.frozen_cards.version: beyond 64 bits")
    if "card_numbers" in frozen:
        cards = FrozenCards(version, True, card_numbers=_card_numbers(frozen["card_numbers"], "card_numbers"))
    elif "added" in frozen or "removed" in frozen:
        cards = FrozenCards(
            version,
            False,
            added=_card_numbers(frozen.get("added", []), "added"),
            removed=_card_numbers(frozen.get("removed", []), "removed"),
        )
    else:
        raise BadAnswer("notices.frozen_cards: needs card_numbers, or added/removed")
    return Notices(windows, cards)


def parse_totals(body: Any) -> CentralTotals:
    """The pinned shape, strictly: integers are JSON integers (never bools or strings), the sums
    are net (a revoke subtracts, so they may be negative) within 64 bits, counts are >= 0,
    `by_status` holds at most 16 statuses of at most 32 characters. Other fields are ignored."""
    low, high = -(2**63), 2**63 - 1
    digits = frozenset("0123456789")
    obj = _obj(body, "totals")
    date = _str(obj, "date", "totals")
    if len(date) != 10 or date[4] != "-" or date[7] != "-" or not set(date[:4] + date[5:7] + date[8:]) <= digits:
        raise BadAnswer("totals.date: expected YYYY-MM-DD")
    by_status = _obj(obj.get("by_status"), "totals.by_status")
    if len(by_status) > 16 or any(not isinstance(k, str) or not 0 < len(k) <= 32 for k in by_status):
        raise BadAnswer("totals.by_status: expected at most 16 status names of 1-32 characters")
    counts = {str(key): _int(by_status, key, "totals.by_status") for key in by_status}
    figures = {
        key: _int(obj, key, "totals", minimum=low) for key in ("total_fen", "fund_paid_fen", "account_paid_fen")
    }
    count = _int(obj, "count", "totals")
    if count > high or any(v > high for v in (*figures.values(), *counts.values())):
        raise BadAnswer("totals: a figure is beyond 64 bits")
    return CentralTotals(
        date=date,
        count=count,
        total_fen=figures["total_fen"],
        fund_paid_fen=figures["fund_paid_fen"],
        account_paid_fen=figures["account_paid_fen"],
        by_status=counts,
    )
