"""The platform's answers as the spool's outcomes (`RecordResult`s for `UpstreamHost.apply`).

A settlement is `{central_ref, fund_paid_fen, account_paid_fen, cash_paid_fen, nhsa}`: the
account and fund parts are the sums of the profile's `account_fields` and `fund_fields`; the
parts have the record's sign and add up to its `total_fen` exactly; `nhsa` keeps what a revoke
needs later (setl_id, mdtrt_id, psn_no, insuplc_admdvs) and what reconciliation counts by
(insutype). A 2102 answer whose split does not add up to the sale is not trusted:
`settlement_checker` raises UnknownOutcome before the call is logged `ok`, so it is reversed
and sent again like a lost answer. A revoke's parts are its original's, negated.

A reason is `{code, message}`: code of [a-z0-9_], the message already masked (redact.py) and
cleaned of control characters.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

from spool import Record
from terminald.upload.results import RecordResult
from terminald.upstream.nhsa.amounts import to_fen
from terminald.upstream.nhsa.errors import AmountError, UnknownOutcome
from terminald.upstream.nhsa.profiles import Profile
from terminald.upstream.nhsa.redact import MAX_MESSAGE

__all__ = [
    "PARTS",
    "accepted",
    "rejected",
    "revoke_settlement",
    "settlement_checker",
    "settlement_of",
]

PARTS = ("fund_paid_fen", "account_paid_fen", "cash_paid_fen")
MAX_REF = 64
_CODE = re.compile(r"[a-z0-9_]{1,64}")


def _ref(value: Any) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(text) > MAX_REF or any(unicodedata.category(c).startswith("C") for c in text):
        return ""
    return text


def _part(setlinfo: Mapping[str, Any], fields: tuple[str, ...]) -> int:
    """The sum of `fields` (the profile's account or fund fields): the first must be answered;
    a region's additional ones (acct_mulaid_pay) count 0 when the answer leaves them out."""
    first, *more = fields
    total = to_fen(setlinfo.get(first))
    for name in more:
        value = setlinfo.get(name)
        if value is not None and value != "":
            total += to_fen(value)
    return total


def settlement_of(
    setlinfo: Any, *, total_fen: int, profile: Profile, person: Mapping[str, str], msgid: str
) -> dict[str, Any]:
    """The settlement of a 2102 answer's `setlinfo`; UnknownOutcome("untrusted") when it lacks
    the ids or its split is not the sale's total in non-negative parts."""
    if not isinstance(setlinfo, Mapping):
        raise UnknownOutcome("untrusted", "2102 answered without setlinfo")
    setl_id, mdtrt_id = _ref(setlinfo.get("setl_id")), _ref(setlinfo.get("mdtrt_id"))
    if not setl_id or not mdtrt_id:
        raise UnknownOutcome("untrusted", "2102 answered without setl_id or mdtrt_id")
    try:
        medfee = to_fen(setlinfo.get("medfee_sumamt"))
        acct = _part(setlinfo, profile.account_fields)
        cash = to_fen(setlinfo.get("psn_cash_pay"))
        fund = profile.fund_fen(_part(setlinfo, profile.fund_fields), acct)
    except AmountError as exc:
        raise UnknownOutcome("untrusted", f"2102 answered an amount that is not exact: {exc.detail}") from exc
    if medfee != total_fen or fund < 0 or fund + acct + cash != total_fen:
        raise UnknownOutcome(
            "untrusted", f"2102's split (fund {fund} + account {acct} + cash {cash} of {medfee}) is not the "
            f"sale's {total_fen} fen")
    psn_no = _ref(setlinfo.get("psn_no")) or person["psn_no"]
    insutype = _ref(setlinfo.get("insutype")) or person.get("insutype", "")
    return {
        "central_ref": setl_id,
        "fund_paid_fen": fund,
        "account_paid_fen": acct,
        "cash_paid_fen": cash,
        "nhsa": {
            "setl_id": setl_id, "mdtrt_id": mdtrt_id, "psn_no": psn_no,
            "insuplc_admdvs": person["insuplc_admdvs"], "insutype": insutype, "msgid": msgid,
            "clr_optins": _ref(setlinfo.get("clr_optins")) or person["insuplc_admdvs"],
            "setl_time": _ref(setlinfo.get("setl_time")),
        },
    }


def settlement_checker(
    total_fen: int, profile: Profile, person: Mapping[str, str]
) -> Callable[[Mapping[str, Any]], None]:
    """The client's `accept` for a 2102: an untrusted split is logged unknown, not ok."""

    def check(output: Mapping[str, Any]) -> None:
        settlement_of(output.get("setlinfo"), total_fen=total_fen, profile=profile, person=person, msgid="")

    return check


def revoke_settlement(original: Record, output: Mapping[str, Any], msgid: str) -> dict[str, Any]:
    """A revoke's settlement: its original's parts negated, the revoke's own setl_id as its
    reference (the original's, when the gateway does not give one: 2103's output is thin)."""
    before = original.outcome or {}
    found = before.get("nhsa")
    nhsa: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    setlinfo = output.get("setlinfo")
    own = _ref(setlinfo.get("setl_id")) if isinstance(setlinfo, Mapping) else ""
    parts = {key: -int(before.get(key, 0)) for key in PARTS}
    return {
        "central_ref": own or str(before.get("central_ref", "")),
        **parts,
        "nhsa": {
            "setl_id": own, "original_setl_id": nhsa.get("setl_id", ""), "mdtrt_id": nhsa.get("mdtrt_id", ""),
            "psn_no": nhsa.get("psn_no", ""), "insuplc_admdvs": nhsa.get("insuplc_admdvs", ""),
            "insutype": nhsa.get("insutype", ""), "clr_optins": nhsa.get("clr_optins", ""), "msgid": msgid,
        },
    }


def accepted(record: Record, settlement: dict[str, Any]) -> RecordResult:
    return RecordResult(record.seq, record.record_id, "accepted", settlement, None)


def _clean(message: str) -> str:
    kept = (" " if ch in "\t\n\r" else ch for ch in message
            if ch in "\t\n\r" or not unicodedata.category(ch).startswith("C"))
    return "".join(kept).strip()[:MAX_MESSAGE]


def rejected(record: Record, code: str, message: str) -> RecordResult:
    """A rejection with `message` (masked by the caller: every platform message is)."""
    if not _CODE.fullmatch(code):
        raise ValueError(f"reason code {code!r} is not [a-z0-9_]{{1,64}}")
    return RecordResult(record.seq, record.record_id, "rejected", None, {"code": code, "message": _clean(message)})
