"""What a spooled record becomes on the wire: the inputs of 1101, 2101/2102 and 2103.

Pure functions of the record (and of what 1101 answered), so every retry of a record sends the
same sale: the same lines with the same `feedetl_sn`, the same business time. That matters: the
platform (and the simulator's money check) knows a sale by its lines' serial numbers.

    person_input(card)              1101: the card by number and identifier (03) when the card
                                    has an identifier, else the ID number (02)
    PersonInfo.from_output(output)  1101's answer: psn_no, insutype, insuplc_admdvs
    settle_input(...)               2101 / 2102: begntime and every sel_retn_time = the record's
                                    business time in the terminal's zone; amounts exact yuan
    revoke_input(nhsa)              2103: the original's setl_id, mdtrt_id, psn_no
    feedetl_sn(record_id, index)    30 characters, stable per record and line
    problem(record, profile)        why a record cannot be sent at all (None: it can), the size of
                                    its 2102 input against the profile's limit included
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from spool import Record
from terminald.upstream.nhsa import wirejson
from terminald.upstream.nhsa.amounts import AmountAs, to_wire
from terminald.upstream.nhsa.errors import UnknownOutcome
from terminald.upstream.nhsa.profiles import Profile

__all__ = [
    "NotInsured",
    "PersonInfo",
    "business_time",
    "card_of",
    "feedetl_sn",
    "person_input",
    "problem",
    "redact_of",
    "revoke_input",
    "settle_input",
]

FEEDETL_SN_LENGTH = 30
_ADMDVS = re.compile(r"[0-9]{6}")
_WIRE_TIME = "%Y-%m-%d %H:%M:%S"
# The platform's codes (national dictionary): 01 按项目结算 (per item); account used: 1.
PSN_SETLWAY = "01"
ACCT_USED_FLAG = "1"


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def card_of(payload: Mapping[str, Any]) -> Mapping[str, Any]:
    card = payload.get("card")
    return card if isinstance(card, Mapping) else {}


def redact_of(payload: Mapping[str, Any]) -> tuple[str, ...]:
    """The person's own strings, masked out of every message stored or raised."""
    card = card_of(payload)
    return tuple(v for v in (_text(card.get(k)) for k in ("name", "card_number", "ssn")) if v)


def feedetl_sn(record_id: str, index: int) -> str:
    """Line `index`'s serial: 26 hex digits of the record id's hash + 4 digits of line number.

    Record ids are 36 characters, the platform allows 30: a hash keeps it unique and the same on
    every retry (the first line's serial is what identifies the sale)."""
    if not 0 <= index < 10_000:
        raise ValueError("a sale has at most 10,000 lines")
    digest = hashlib.sha256(record_id.encode("utf-8")).hexdigest()[: FEEDETL_SN_LENGTH - 4]
    return f"{digest}{index + 1:04d}"


def business_time(record: Record, tz: tzinfo) -> str:
    """The record's business time in the terminal's zone, "yyyy-MM-dd HH:mm:ss"."""
    text = record.business_time.replace("Z", "+00:00").replace("z", "+00:00")
    return datetime.fromisoformat(text).astimezone(tz).strftime(_WIRE_TIME)


def _qty(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        # A float (qty 0.5 is stored as JSON 0.5) is read through its shortest repr.
        qty = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    except InvalidOperation:
        return None
    return qty if qty.is_finite() and qty > 0 else None


def _items(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    items = payload.get("items")
    return [i for i in items if isinstance(i, Mapping)] if isinstance(items, list) else []


def _fen(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def problem(record: Record, profile: Profile | None = None) -> str | None:
    """Why this record cannot be sent to the platform as it is (None: it can). With `profile`,
    a sale whose 2102 input would not fit the profile's `input` limit too."""
    if record.kind not in ("settlement", "revoke"):
        return f"a {record.kind!r} record has no transaction at the platform"
    card = card_of(record.payload)
    if not _text(card.get("ssn")) and not _text(card.get("card_number")):
        return "the record names no card and no ID number: the platform cannot find the person"
    if record.kind == "revoke":
        return None if _text(record.payload.get("original_record_id")) else "the revoke names no original"
    items = _items(record.payload)
    raw_items = record.payload.get("items")
    if not items or not isinstance(raw_items, list) or len(items) != len(raw_items) or len(items) > 500:
        return "a sale is sent with 1 to 500 lines"
    total = 0
    for item in items:
        qty, price, amount = _qty(item.get("qty")), _fen(item.get("unit_price_fen")), _fen(item.get("amount_fen"))
        if qty is None or price is None or amount is None or not _text(item.get("code")):
            return "a line without code, quantity, unit price or amount"
        if int((qty * price).quantize(Decimal(1), rounding=ROUND_HALF_UP)) != amount:
            return "a line's amount is not quantity × unit price"
        total += amount
    if total != record.total_fen or total <= 0:
        return "the lines do not add up to the sale's total, or the total is not positive"
    return None if profile is None else _too_big(record, profile)


# The longest values 1101 may answer (the specification's lengths): a sale whose input fits with
# these fits with whatever 1101 answers.
_LONGEST_PERSON = ("P" * 30, "9" * 6, "9" * 6)


def _too_big(record: Record, profile: Profile) -> str | None:
    """The 2102 input's size against the profile's `input` limit (the envelope's own check,
    which would refuse it later with nothing sent, on every retry)."""
    limit = profile.limits.get("input")
    if limit is None:
        return None
    asked = person_input(record.payload, "2000-01-01 00:00:00")
    psn_no, insutype, area = _LONGEST_PERSON
    person = PersonInfo(psn_no, insutype, area, str(asked["mdtrt_cert_type"]), str(asked["mdtrt_cert_no"]))
    data = settle_input(record, person, "2000-01-01 00:00:00", profile.amount_as)
    size = profile.length(wirejson.dumps({"data": data}))
    if size > limit:
        return (f"the sale's {len(data['drugdetail'])} lines make a 2102 request of {size} "
                f"({profile.length_unit}), more than the {limit} the platform takes: split the sale")
    return None


def person_input(payload: Mapping[str, Any], begntime: str) -> dict[str, Any]:
    """1101's input for the record's card: by card when it carries its identifier (`card_sn`),
    else by ID number (the card read and the POS give the ID number, not the identifier)."""
    card = card_of(payload)
    number, ssn = _text(card.get("card_number")).upper(), _text(card.get("ssn")).upper()
    card_sn = _text(card.get("card_sn") or card.get("card_identifier")).upper()
    data: dict[str, Any]
    if number and (card_sn or not ssn):
        data = {"mdtrt_cert_type": "03", "mdtrt_cert_no": number, "card_sn": card_sn}
    else:
        data = {"mdtrt_cert_type": "02", "mdtrt_cert_no": ssn, "card_sn": ""}
    data.update({"begntime": begntime, "psn_cert_type": "01" if ssn else "", "certno": ssn, "psn_name": ""})
    return data


class NotInsured(ValueError):
    """1101 answered 0 for a person with no insurance at all: a definite no."""


@dataclass(frozen=True)
class PersonInfo:
    """What 1101 answered, and how the person was named in it."""

    psn_no: str
    insutype: str
    insuplc_admdvs: str
    mdtrt_cert_type: str
    mdtrt_cert_no: str

    @classmethod
    def from_output(cls, output: Mapping[str, Any], asked: Mapping[str, Any]) -> PersonInfo:
        """Read 1101's output; UnknownOutcome when it lacks what 2102 needs (1101 changes
        nothing: asking again later is safe)."""
        base = output.get("baseinfo")
        psn_no = _text(base.get("psn_no")) if isinstance(base, Mapping) else ""
        rows = output.get("insuinfo")
        if isinstance(rows, Mapping):
            rows = [rows]  # one region answers a single object
        rows = [r for r in rows if isinstance(r, Mapping)] if isinstance(rows, list) else []
        # The insured row (psn_insu_stas 1) if there is one; else the first, and the platform
        # answers 2102 with the reason (not insured, frozen).
        row = next((r for r in rows if str(r.get("psn_insu_stas", "")) == "1"), rows[0] if rows else None)
        if psn_no and row is None:
            raise NotInsured("1101 knows the person but no insurance of theirs (insuinfo is empty)")
        insutype = _text(row.get("insutype")) if row else ""
        area = _text(row.get("insuplc_admdvs")) if row else ""
        if not psn_no or not insutype or not _ADMDVS.fullmatch(area):
            raise UnknownOutcome("bad_person", "1101 answered without psn_no, insutype or insuplc_admdvs")
        return cls(psn_no, insutype, area, str(asked["mdtrt_cert_type"]), str(asked["mdtrt_cert_no"]))


def _wire_number(value: Decimal, amount_as: AmountAs) -> str | Decimal:
    return format(value, "f") if amount_as == "string" else value


def settle_input(record: Record, person: PersonInfo, when: str, amount_as: AmountAs) -> dict[str, Any]:
    """2101 / 2102 input. `when`: the business time as `business_time` gives it."""
    details = []
    for index, item in enumerate(_items(record.payload)):
        qty = _qty(item.get("qty"))
        assert qty is not None  # problem() checked every line
        code = _text(item.get("code"))
        details.append({
            "feedetl_sn": feedetl_sn(record.record_id, index),
            "med_list_codg": code[:50],
            "fixmedins_hilist_id": code[:30],
            "fixmedins_hilist_name": _text(item.get("name"))[:200],
            "cnt": _wire_number(qty, amount_as),
            "pric": to_wire(int(item["unit_price_fen"]), amount_as),
            "det_item_fee_sumamt": to_wire(int(item["amount_fen"]), amount_as),
            "sel_retn_time": when,
            "sel_retn_flag": "0",
        })
    return {
        "psn_no": person.psn_no,
        "mdtrt_cert_type": person.mdtrt_cert_type,
        "mdtrt_cert_no": person.mdtrt_cert_no,
        "begntime": when,
        "medfee_sumamt": to_wire(record.total_fen, amount_as),
        "psn_setlway": PSN_SETLWAY,
        "insutype": person.insutype,
        "acct_used_flag": ACCT_USED_FLAG,
        "insuplc_admdvs": person.insuplc_admdvs,
        "drugdetail": details,
    }


def revoke_input(nhsa: Mapping[str, Any]) -> dict[str, Any]:
    """2103 input from the original's stored settlement["nhsa"]."""
    return {"setl_id": nhsa["setl_id"], "mdtrt_id": nhsa["mdtrt_id"], "psn_no": nhsa["psn_no"]}
