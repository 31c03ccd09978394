"""`cn-ssc`: the Chinese social-security card (SSSE application, EF05 and EF06).

Reads with the fewest APDUs a card allows: the first READ RECORD addressing
form that works on a card is kept for the rest of the read; the others are
tried, in the contract's order, only until one works. 3.0 cards are
authenticated through the PSAM before their protected records, or on the
first ``6982`` from any card.
"""

from __future__ import annotations

from typing import ClassVar

from drivers.cards.apdu import NOT_FOUND_SWS, SW_OK, SW_SECURITY, Command, error_for_sw, parse_tlv
from drivers.cards.channel import ApduSession
from drivers.cards.errors import CardUnreadable
from drivers.cards.model import CardData
from drivers.cards.profiles.base import PsamOpener
from drivers.cards.profiles.cn_ssc_fields import LAYOUT_V1, LAYOUT_V2, Field, decode_field
from drivers.cards.psam import authenticate_card

__all__ = ["SSSE_AID", "CnSscProfile"]

SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")

# Answers meaning "this addressing form is not how this card wants it".
_FORM_REFUSED = frozenset({0x6700, 0x6A80, 0x6A86, 0x6B00, 0x6986, 0x6A00, 0x6D00, 0x6E00, 0x6981})
_FORMS = ("sfi", "current", "tag")


class _NeedsAuth(Exception):
    """Internal: the card answered 6982 (security condition not satisfied)."""


class _RecordReader:
    """READ RECORD with addressing-form fallback; remembers the form that worked."""

    def __init__(self, session: ApduSession) -> None:
        self._session = session
        self._form: str | None = None
        self._current_ef: int | None = None

    def read(self, field: Field) -> list[tuple[int, bytes]] | None:
        """The record's TLV items, or None when the card has no such record."""
        forms = (self._form,) if self._form else _FORMS
        not_found_sw: int | None = None
        for form in forms:
            sw, data = self._try(form, field)
            if sw == SW_OK:
                self._form = form
                return parse_tlv(data)
            if sw == SW_SECURITY:
                raise _NeedsAuth
            if sw in NOT_FOUND_SWS:
                not_found_sw = sw
                continue
            if sw in _FORM_REFUSED:
                continue
            error = error_for_sw(sw, f"read {field.key}")
            assert error is not None
            raise error
        if not_found_sw is not None or self._form:
            return None
        raise CardUnreadable(f"read {field.key}: the card accepts no READ RECORD addressing form")

    def _try(self, form: str, field: Field) -> tuple[int, bytes]:
        le = field.length + 2
        if form == "sfi":
            command = Command(0x00, 0xB2, field.record, (field.sfi << 3) | 4, le=le)
        elif form == "tag":
            command = Command(0x00, 0xB2, field.tag, 0x00, le=le)
        else:
            sw = self._select_ef(0xEF00 | field.sfi)
            if sw != SW_OK:
                return sw, b""
            command = Command(0x00, 0xB2, field.record, 0x04, le=le)
        response = self._session.exchange(command)
        return response.sw, response.data

    def _select_ef(self, fid: int) -> int:
        if self._current_ef == fid:
            return SW_OK
        sw = SW_OK
        for p1 in (0x02, 0x00):  # some cards want P1=00
            sw = self._session.exchange(Command(0x00, 0xA4, p1, 0x00, fid.to_bytes(2, "big"))).sw
            if sw == SW_OK:
                self._current_ef = fid
                break
            if sw not in _FORM_REFUSED and sw not in NOT_FOUND_SWS:
                break
        return sw


class CnSscProfile:
    """Reads a social-security card into :class:`CardData`."""

    name: ClassVar[str] = "cn-ssc"

    def read(self, card: ApduSession, psam: PsamOpener | None) -> CardData:
        answer = card.exchange(Command(0x00, 0xA4, 0x04, 0x00, SSSE_AID))
        if answer.sw in NOT_FOUND_SWS:
            raise CardUnreadable("not a social-security card (no SSSE application)", sw=answer.sw)
        error = error_for_sw(answer.sw, "select SSSE")
        if error is not None:
            raise error

        reader = _RecordReader(card)
        raw: dict[str, bytes] = {}
        values: dict[str, str | None] = {}
        authenticated = False

        def authenticate() -> None:
            nonlocal authenticated
            if psam is None:
                raise CardUnreadable("PSAM required", sw=SW_SECURITY)
            if authenticated:
                raise CardUnreadable("security condition not satisfied after authentication", sw=SW_SECURITY)
            identifier = raw.get("card_identifier")
            if identifier is None:
                raise CardUnreadable("card identifier unreadable, cannot authenticate", sw=SW_SECURITY)
            authenticate_card(card, psam(), identifier)
            authenticated = True

        def read_field(field: Field) -> None:
            items = None
            for _ in range(2):
                try:
                    items = reader.read(field)
                    break
                except _NeedsAuth:
                    authenticate()
            found = dict(items or ())
            if field.tag in found:
                raw[field.key] = found[field.tag]
                values[field.key] = decode_field(field, found[field.tag])
            elif field.required:
                raise CardUnreadable(f"the card has no {field.key}")

        head, rest = LAYOUT_V2[:2], LAYOUT_V2[2:]
        for field in head:
            read_field(field)
        version = values.get("spec_version") or "2.00"
        if version.startswith("1"):
            rest = tuple(f for f in LAYOUT_V1 if f.key not in ("card_identifier", "spec_version"))
        if version >= "3" and psam is not None:
            authenticate()
        for field in rest:
            read_field(field)

        name = values["name"] or ""
        extension = values.get("name_extension")
        if not name:
            raise CardUnreadable("the card holds an empty name")
        return CardData(
            card_number=values["card_number"],
            ssn=values["ssn"],
            name=name + (extension or ""),
            sex=values.get("sex"),
            birth_date=values.get("birth_date"),
            nation=values.get("nation"),
            issuer_code=values.get("issuer_code"),
            issued_on=values.get("issued_on"),
            expires_on=values.get("expires_on"),
            card_type=values.get("card_type"),
            spec_version=values.get("spec_version"),
            card_identifier=values.get("card_identifier"),
        )
