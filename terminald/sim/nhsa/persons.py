"""The insured persons the platform simulator knows: the emulated cards' holders, plus a few more.

Every ``kind = "ssc"`` card description in ``terminald/sim/cards/`` with a card number and an
SSN is read with `terminald.sim.card_desc.load_card`, so the simulator and the card emulator
agree on card number, card identifier (``card_sn``), ID number, name, sex and birth date. The
insured area (``insuplc_admdvs``) is the region code at the start of the card identifier.
``persons.toml`` (next to this file) adds per-card settings, people without a card, the opening
account balance and the frozen / not-insured lists a fresh database starts with.
"""

from __future__ import annotations

import hashlib
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from terminald.sim.card_desc import CARDS_DIR, DescriptionError, load_card
from terminald.sim.nhsa.wire import fen_from_wire

__all__ = ["PERSONS_TABLE", "Person", "PersonTable", "id_check_digit", "load_persons", "synthetic_persons"]

PERSONS_TABLE = Path(__file__).with_name("persons.toml")


@dataclass(frozen=True)
class Person:
    """One insured person as the platform holds them."""

    key: str  # the card number, or the ID number for a person without a card
    psn_no: str
    certno: str
    name: str
    gend: str
    naty: str
    brdy: str  # yyyy-MM-dd
    insuplc_admdvs: str
    insutype: str
    psn_type: str
    opening_balance_fen: int
    card_number: str = ""
    card_sn: str = ""

    def identifiers(self) -> set[str]:
        return {i for i in (self.key, self.card_number, self.certno, self.psn_no) if i}


@dataclass
class PersonTable:
    persons: dict[str, Person]  # by key
    frozen: tuple[str, ...]
    not_insured: tuple[str, ...]
    _index: dict[str, Person] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._index = {i.upper(): p for p in self.persons.values() for i in p.identifiers()}

    def find(self, identifier: str) -> Person | None:
        """By card number, ID number (any letter case for the X) or psn_no."""
        return self._index.get(identifier.strip().upper())


def psn_no_for(certno: str, area: str) -> str:
    """A stable 26-digit person number: the insured area, then 20 digits derived from the ID number."""
    digest = int.from_bytes(hashlib.sha256(certno.upper().encode()).digest()[:12], "big")
    return f"{area}{digest % 10**20:020d}"


def _person(key: str, fields: dict[str, str], extra: dict[str, Any], default_balance: int,
            card_number: str = "", card_sn: str = "") -> Person:
    certno = fields["ssn"].upper()
    area = str(extra.get("insuplc_admdvs") or (card_sn[:6] if card_sn else fields.get("issuer_code", "")[:6]))
    if len(area) != 6 or not area.isdigit():
        raise DescriptionError(f"{key}: no 6-digit insured area")
    insutype = str(extra.get("insutype", "310"))
    balance = fen_from_wire(extra["balance"], "balance") if "balance" in extra else default_balance
    return Person(
        key=key,
        psn_no=psn_no_for(certno, area),
        certno=certno,
        name=fields["name"],
        gend=fields.get("sex", "9"),
        naty=fields.get("nation", "01"),
        brdy=fields.get("birth_date", ""),
        insuplc_admdvs=area,
        insutype=insutype,
        psn_type=str(extra.get("psn_type", "1501" if insutype == "390" else "1101")),
        opening_balance_fen=balance,
        card_number=card_number,
        card_sn=card_sn,
    )


def load_persons(cards: Iterable[Path] | None = None, table: Path = PERSONS_TABLE, synthetic: int = 0) -> PersonTable:
    """Persons from the card descriptions (default: every bundled card), the persons table and
    `synthetic` made-up card holders (`synthetic_persons`, for benchmarks with many patients)."""
    raw = tomllib.loads(table.read_text(encoding="utf-8"))
    default_balance = fen_from_wire(raw.get("balance", "0.00"), "balance")
    per_card: dict[str, dict[str, Any]] = raw.get("card", {})
    persons: dict[str, Person] = {}
    for path in sorted(CARDS_DIR.glob("*.toml") if cards is None else cards):
        desc = load_card(path)
        fields = desc.fields
        if desc.kind != "ssc" or not fields.get("card_number") or not fields.get("ssn") or not fields.get("name"):
            continue
        number = fields["card_number"]
        persons[number] = _person(number, fields, per_card.get(number, {}), default_balance,
                                  card_number=number, card_sn=fields.get("card_identifier", "").upper())
    for extra in raw.get("extra", []):
        fields = {"ssn": extra["certno"], "name": extra["name"], "sex": extra.get("sex", "9"),
                  "birth_date": extra.get("birth_date", "")}
        certno = str(extra["certno"]).upper()
        persons[certno] = _person(certno, fields, extra, default_balance)
    for person in synthetic_persons(synthetic, default_balance):
        persons[person.key] = person
    return PersonTable(persons, tuple(raw.get("frozen", [])), tuple(raw.get("not_insured", [])))


_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀英华"
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_check_digit(first17: str) -> str:
    """The check digit of a resident ID number (GB 11643, ISO 7064 MOD 11-2)."""
    return "10X98765432"[sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def synthetic_persons(count: int, balance_fen: int = 50000) -> list[Person]:
    """`count` made-up card holders, the same every time: card numbers S00000001…, insured in
    110101 (Beijing Dongcheng), employees (insutype 310) with `balance_fen` in their account."""
    persons = []
    for i in range(1, count + 1):
        born = date(1950, 1, 1) + timedelta(days=(i * 997) % 20000)  # distinct for i < 20000
        first17 = f"110101{born:%Y%m%d}{i % 1000:03d}"
        card = f"S{i:08d}"
        fields = {"ssn": first17 + id_check_digit(first17), "name": _SURNAMES[i % 20] + _GIVEN[(i // 20) % 20],
                  "sex": "1" if i % 2 else "2", "birth_date": born.isoformat()}
        persons.append(_person(card, fields, {}, balance_fen, card_number=card,
                               card_sn=f"110101D156000005{i:016X}"))
    return persons
