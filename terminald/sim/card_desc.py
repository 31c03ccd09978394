"""Card descriptions for the emulator: what a card holds and how it behaves.

A description is a small TOML file (``terminald/sim/cards/*.toml``, see
``docs/cards.md``): the fields of the cn-ssc profile, the spec version, T=0 or
T=1 behaviour, which files need authentication, locked or not. The test key
scheme shared by the emulated card and PSAM lives here too: HMAC-SHA256 over
a key diversified from the issuer's test master key.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import hmac
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.cards.apdu import encode_bcd, encode_padded, encode_tlv

__all__ = ["CARDS_DIR", "CardDescription", "DescriptionError", "card_key", "cryptogram", "load_card"]

CARDS_DIR = Path(__file__).with_name("cards")
_KEY_LABEL = b"cn-ssc test card key"

# (tag, length, encoding) per field; records follow the card-cn-ssc contract.
_FIELDS: dict[str, tuple[int, int, str]] = {
    "card_identifier": (0x01, 16, "hex"),
    "card_type": (0x02, 1, "an"),
    "spec_version": (0x03, 4, "an"),
    "issuer_code": (0x04, 12, "an"),
    "issued_on": (0x05, 4, "date"),
    "expires_on": (0x06, 4, "date"),
    "card_number": (0x07, 9, "an"),
    "ssn": (0x08, 18, "an"),
    "name": (0x09, 30, "gbk"),
    "name_extension": (0x4E, 20, "gbk"),
    "sex": (0x0A, 1, "an"),
    "nation": (0x0B, 1, "bcd"),
    "birthplace": (0x0C, 3, "bcd"),
    "birth_date": (0x0D, 4, "date"),
}
_EF05 = tuple(_FIELDS)[:7]  # card_identifier .. card_number, records 1-7
_EF06_V2 = ("ssn", "name", "name_extension", "sex", "nation", "birthplace", "birth_date")
_EF06_V1 = ("ssn", "name", "sex", "nation", "birthplace", "birth_date")
_KINDS = ("ssc", "psam", "other")
_FORMS = ("sfi", "current", "tag")


class DescriptionError(ValueError):
    """A card description file is missing, not TOML, or has a bad value."""


def card_key(master_key: bytes, card_identifier: bytes) -> bytes:
    """The card's own 16-byte key, diversified from the issuer's test master key."""
    return hmac.new(master_key, _KEY_LABEL + card_identifier, hashlib.sha256).digest()[:16]


def cryptogram(key: bytes, purpose: bytes, nonce: bytes) -> bytes:
    """``purpose`` is b"INT" (card proves itself) or b"EXT" (terminal proves itself)."""
    return hmac.new(key, purpose + nonce, hashlib.sha256).digest()[:16]


@dataclass(frozen=True)
class CardDescription:
    """What one emulated card is and how it behaves."""

    name: str
    kind: str = "ssc"
    atr: bytes = bytes.fromhex("3B6D00000087CF20018649618C009773F5")
    t0: bool = False
    strict_le: bool = True
    pad_fields: bool = True
    read_forms: tuple[str, ...] = _FORMS
    select_ef_p1: tuple[int, ...] = (2, 0)
    locked: bool = False
    remove_after_apdus: int = 0
    answer_delay_ms: int = 0
    auth_required: frozenset[str] = frozenset()
    master_key: bytes = b""
    ext_auth_tries: int = 3
    fields: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> CardDescription:
        known = set(cls.__dataclass_fields__) - {"name"}
        unknown = set(raw) - known
        if unknown:
            raise DescriptionError(f"{name}: unknown keys {sorted(unknown)}; known: {sorted(known)}")

        def get(key: str, kind: type, default: Any) -> Any:
            value = raw.get(key, default)
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise DescriptionError(f"{name}: {key} must be a {kind.__name__}, not {value!r}")
            return value

        try:
            desc = cls(
                name=name,
                kind=get("kind", str, "ssc"),
                atr=bytes.fromhex(get("atr", str, cls.atr.hex())),
                t0=get("t0", bool, False),
                strict_le=get("strict_le", bool, True),
                pad_fields=get("pad_fields", bool, True),
                read_forms=tuple(get("read_forms", list, list(_FORMS))),
                select_ef_p1=tuple(int(p) for p in get("select_ef_p1", list, [2, 0])),
                locked=get("locked", bool, False),
                remove_after_apdus=get("remove_after_apdus", int, 0),
                answer_delay_ms=get("answer_delay_ms", int, 0),
                auth_required=frozenset(get("auth_required", list, [])),
                master_key=bytes.fromhex(get("master_key", str, "")),
                ext_auth_tries=get("ext_auth_tries", int, 3),
                fields={str(k): str(v) for k, v in get("fields", dict, {}).items()},
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise DescriptionError(f"{name}: {exc}") from exc
        if desc.kind not in _KINDS or not set(desc.read_forms) <= set(_FORMS):
            raise DescriptionError(f"{name}: kind must be one of {_KINDS}, read_forms within {_FORMS}")
        desc.records()  # encode once now so a bad field fails at load time
        return desc

    def records(self) -> dict[int, list[bytes]]:
        """EF id -> TLV records (index 0 is record 1); a field left out leaves a hole."""
        if self.kind != "ssc":
            return {}
        v1 = self.fields.get("spec_version", "2.00").startswith("1")
        unknown = set(self.fields) - set(_FIELDS)
        if unknown:
            raise DescriptionError(f"{self.name}: unknown fields {sorted(unknown)}")
        files: dict[int, list[bytes]] = {}
        for fid, keys in ((0xEF05, _EF05), (0xEF06, _EF06_V1 if v1 else _EF06_V2)):
            files[fid] = [self._encode(k) if k in self.fields else b"" for k in keys]
        return files

    def _encode(self, key: str) -> bytes:
        tag, length, kind = _FIELDS[key]
        text = self.fields[key]
        try:
            if kind == "hex":
                value = bytes.fromhex(text)
            elif kind == "date":
                value = encode_bcd(_dt.date.fromisoformat(text).strftime("%Y%m%d"), length)
            elif kind == "bcd":
                value = encode_bcd(text, length)
            else:
                value = encode_padded(text, length, "gbk" if kind == "gbk" else "ascii")
        except (ValueError, UnicodeEncodeError) as exc:
            raise DescriptionError(f"{self.name}: field {key}: {exc}") from exc
        if not self.pad_fields:
            value = value.rstrip(b"\x00\xff") or value[:1]
        return encode_tlv(tag, value)


def load_card(path: str | Path) -> CardDescription:
    """Load a description file, or a bundled one by name (``"ssc2"`` -> ``cards/ssc2.toml``)."""
    p = Path(path)
    if not p.suffix and not p.exists():
        p = CARDS_DIR / f"{p.name}.toml"
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DescriptionError(f"cannot read card description {p.name}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise DescriptionError(f"{p.name}: not valid TOML: {exc}") from exc
    return CardDescription.from_dict(p.stem, raw)
