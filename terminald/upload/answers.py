"""Central's answers, parsed strictly into typed values.

Anything that does not match protocol v1 raises BadAnswer (a transient error:
the same records are re-sent later, which the protocol makes safe). Nothing
here trusts a field it has not checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from terminald.upload.errors import BadAnswer

__all__ = [
    "BatchAnswer",
    "CentralTotals",
    "Cursor",
    "DowntimeNotice",
    "FrozenCards",
    "Notices",
    "RecordResult",
    "parse_batch",
    "parse_cursor",
    "parse_notices",
    "parse_results",
    "parse_totals",
]

_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class Cursor:
    last_seq: int
    last_hash: str


@dataclass(frozen=True)
class RecordResult:
    seq: int
    record_id: str
    status: Literal["accepted", "rejected", "duplicate"]
    settlement: dict[str, Any] | None
    reason: dict[str, Any] | None

    @property
    def final(self) -> Literal["settled", "rejected"]:
        """The local status this result means (a duplicate carries its stored outcome)."""
        return "settled" if self.settlement is not None else "rejected"


@dataclass(frozen=True)
class BatchAnswer:
    results: list[RecordResult]
    last_seq: int


@dataclass(frozen=True)
class DowntimeNotice:
    start: str
    end: str
    reason: str


@dataclass(frozen=True)
class FrozenCards:
    """Either the full list (`full`, card_numbers) or a change since a version (added/removed)."""

    version: int
    full: bool
    card_numbers: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Notices:
    downtime: list[DowntimeNotice]
    frozen: FrozenCards


@dataclass(frozen=True)
class CentralTotals:
    date: str
    count: int
    total_fen: int
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
    return Cursor(_int(obj, "last_seq", "cursor"), last_hash)


def _result(value: Any, where: str) -> RecordResult:
    obj = _obj(value, where)
    status = obj.get("status")
    if status not in ("accepted", "rejected", "duplicate"):
        raise BadAnswer(f"{where}.status: unknown status {status!r}")
    settlement = obj.get("settlement")
    reason = obj.get("reason")
    if settlement is not None:
        s = _obj(settlement, f"{where}.settlement")
        _str(s, "central_ref", f"{where}.settlement")
        for key in ("fund_paid_fen", "account_paid_fen", "cash_paid_fen"):
            _int(s, key, f"{where}.settlement")
    if reason is not None:
        _str(_obj(reason, f"{where}.reason"), "code", f"{where}.reason")
    wanted = {"accepted": (True, False), "rejected": (False, True)}.get(str(status))
    has = (settlement is not None, reason is not None)
    if (wanted is not None and has != wanted) or (wanted is None and sum(has) != 1):
        raise BadAnswer(f"{where}: a {status} result needs exactly its settlement or reason")
    return RecordResult(
        seq=_int(obj, "seq", where, 1),
        record_id=_str(obj, "record_id", where),
        status=status,
        settlement=dict(settlement) if settlement is not None else None,
        reason=dict(reason) if reason is not None else None,
    )


def parse_results(value: Any, where: str = "results") -> list[RecordResult]:
    if not isinstance(value, list):
        raise BadAnswer(f"{where}: expected a list")
    return [_result(item, f"{where}[{i}]") for i, item in enumerate(value)]


def check_results_match(results: list[RecordResult], sent: list[tuple[int, str]]) -> None:
    """Results must answer the sent records, in order, as a prefix (all of them for a 200)."""
    if len(results) > len(sent):
        raise BadAnswer(f"{len(results)} results for {len(sent)} records")
    for result, (seq, record_id) in zip(results, sent, strict=False):
        if result.seq != seq or result.record_id != record_id:
            raise BadAnswer(f"result for seq {result.seq} ({result.record_id}) answers no record sent there")


def parse_batch(body: Any, sent: list[tuple[int, str]]) -> BatchAnswer:
    obj = _obj(body, "answer")
    results = parse_results(obj.get("results"))
    check_results_match(results, sent)
    if len(results) != len(sent):
        raise BadAnswer(f"{len(results)} results for {len(sent)} records in a 200 answer")
    last_seq = _int(obj, "last_seq", "answer")
    if sent and last_seq < sent[-1][0]:
        raise BadAnswer(f"answer.last_seq {last_seq} is below the last seq sent ({sent[-1][0]})")
    return BatchAnswer(results, last_seq)


def parse_notices(body: Any) -> Notices:
    obj = _obj(body, "notices")
    raw_windows = obj.get("downtime", [])
    if not isinstance(raw_windows, list):
        raise BadAnswer("notices.downtime: expected a list")
    windows = []
    for i, raw in enumerate(raw_windows):
        w = _obj(raw, f"notices.downtime[{i}]")
        windows.append(
            DowntimeNotice(_str(w, "start", "downtime"), _str(w, "end", "downtime"), str(w.get("reason", "")))
        )
    frozen = _obj(obj.get("frozen_cards"), "notices.frozen_cards")
    version = _int(frozen, "version", "notices.frozen_cards")
    if "card_numbers" in frozen:
        cards = FrozenCards(version, True, card_numbers=_strings(frozen["card_numbers"], "card_numbers"))
    elif "added" in frozen or "removed" in frozen:
        cards = FrozenCards(
            version,
            False,
            added=_strings(frozen.get("added", []), "added"),
            removed=_strings(frozen.get("removed", []), "removed"),
        )
    else:
        raise BadAnswer("notices.frozen_cards: needs card_numbers, or added/removed")
    return Notices(windows, cards)


def parse_totals(body: Any) -> CentralTotals:
    obj = _obj(body, "totals")
    by_status = _obj(obj.get("by_status", {}), "totals.by_status")
    counts = {}
    for key in by_status:
        counts[str(key)] = _int(by_status, key, "totals.by_status")
    return CentralTotals(
        _str(obj, "date", "totals"),
        _int(obj, "count", "totals"),
        _int(obj, "total_fen", "totals", minimum=-(2**63)),
        counts,
    )
