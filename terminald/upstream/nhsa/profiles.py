"""Regional differences of the national platform, as data (`[nhsa] profile`).

A profile is a TOML file: the packaged ones live in `profile_data/` (`national`, the default;
`mock`, for test environments; `example-regional`, every setting that differs somewhere), and
`profile` may also be the path of a file of the same form (a site's own region). A file may
start from another with `base = "national"` and give only what differs; the tables
(`limits`, `refusals`, `envelope_extra`) are then merged key by key.

Settings (docs/nhsa.md explains each, and where the values come from):

    description              one line, shown by tools
    infver                   envelope `infver` ("V1.0")
    signtype                 envelope `signtype`: "", "SM2", "SM3" or "MOCK"
    amount_as                "number" (JSON 12.34) or "string" ("12.34") for amounts sent
    presettle_first          send 2101 (pre-settlement) before each 2102
    fund_includes_acct       2102's `fund_pay_sumamt` includes `acct_pay`
    reversible_infnos        calls whose unknown outcome is reversed by 2601 before a retry
    requires_sign_in         every call but 9001 carries a `sign_no` from 9001
    signin_input_key         9001's input object: {"signIn": {...}} or {"data": {...}}
    refmsgid                 "any": `inf_refmsgid` is the receiver's own id, not checked;
                             "echo": it must equal the request's msgid, else UnknownOutcome
    insuplc_without_person   envelope `insuplc_admdvs` of calls without a person: "empty" or
                             "mdtrtarea" (the institution's area)
    reconcile_match          3201 `stmt_rslt` values that mean "the totals match"
    reconcile_insutypes      insurance types reconciled every day (one 3201 each, even with no
                             local sale); the first one is used for a settlement whose stored
                             answer names none
    reconcile_clr_type       3201 `clr_type` (清算类别): "41" 定点药店购药 nationally
    reconcile_setl_optins    3201 `setl_optins` (结算经办机构): "mdtrtarea" (the institution's
                             area, one 3201 per insurance type) or "insuplc" (one per insured
                             area, from each settlement's answer)
    reconcile_revokes        how a revoke counts in 3201: "in_force" (the revoked sale drops out
                             of its day, the revoke is not counted) or "net" (the revoke is a
                             settlement of its own day with negative amounts)
    reversal_delay_s         seconds between an unknown outcome the gateway may still be
                             working on (timeout, reset, 5xx, garbage) and the first 2601 for it
    account_fields           2102 `setlinfo` fields whose sum is the personal account's part
                             (["acct_pay"]; a region may add "acct_mulaid_pay", 共济)
    fund_fields              `setlinfo` fields whose sum is `fund_pay_sumamt` as
                             `fund_includes_acct` reads it (["fund_pay_sumamt"])
    length_unit              how `limits` count: "chars", "utf8" bytes or "gbk" bytes
    envelope_extra           fixed extra envelope fields, e.g. {recer_admdvs = "440100"}
    [limits]                 the longest value of each envelope field, and of `input` as JSON
    [refusals]               substrings of a -1 `err_msg`: `unknown` (the outcome is not known
                             after all: reverse before retrying), `sign_in` (sign in again with
                             9001, then retry), `transient` (retry later); any other -1 rejects
                             the record
                             `nothing_to_reverse`: the -1 answers of a 2601 that are definite
                             (the original did not take effect, or is reversed already); any
                             other -1 to a 2601 leaves the original's outcome unknown

An unknown name, an unknown key or a bad value raises ConfigError naming it.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
)

from terminald.errors import ConfigError
from terminald.upstream.nhsa.amounts import AmountAs

__all__ = [
    "DEFAULT_PROFILE",
    "LIMITED_FIELDS",
    "PROFILE_DIR",
    "Profile",
    "RefusalKind",
    "Refusals",
    "available_profiles",
    "load_profile",
]

DEFAULT_PROFILE = "national"
PROFILE_DIR = Path(__file__).resolve().parent / "profile_data"
RefusalKind = Literal["rejected", "transient", "sign_in", "unknown", "duplicate"]
# Envelope fields a profile may bound (and `input`, the JSON text of the transaction's input).
LIMITED_FIELDS = frozenset({
    "infno", "msgid", "mdtrtarea_admvs", "insuplc_admdvs", "recer_sys_code", "dev_no",
    "dev_safe_info", "cainfo", "signtype", "infver", "opter_type", "opter", "opter_name",
    "inf_time", "fixmedins_code", "fixmedins_name", "sign_no", "input",
})
_INFNO = r"^[0-9]{4}$"
_MAX_BASES = 4


class Refusals(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    transient: tuple[StrictStr, ...] = ()
    sign_in: tuple[StrictStr, ...] = ()
    unknown: tuple[StrictStr, ...] = ()
    duplicate: tuple[StrictStr, ...] = ()
    # Only for 2601: a -1 that settles the reversed call (nothing stands). Kept apart from the
    # kinds above because it is read after them, on a 2601's `rejected` answers alone.
    nothing_to_reverse: tuple[StrictStr, ...] = ()

    @field_validator("transient", "sign_in", "unknown", "duplicate", "nothing_to_reverse")
    @classmethod
    def _not_empty(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        if any(not v.strip() for v in values):
            raise ValueError("an empty pattern would match every message")
        return values


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: StrictStr
    description: StrictStr = ""
    infver: StrictStr = Field(min_length=1)
    signtype: Literal["", "SM2", "SM3", "MOCK"]
    amount_as: AmountAs
    presettle_first: StrictBool
    fund_includes_acct: StrictBool
    reversible_infnos: frozenset[StrictStr]
    requires_sign_in: StrictBool
    signin_input_key: Literal["signIn", "data"]
    refmsgid: Literal["any", "echo"]
    insuplc_without_person: Literal["empty", "mdtrtarea"]
    reconcile_match: tuple[StrictStr, ...] = Field(min_length=1)
    # 3201: the platform reconciles per insurance type and clearing type (reconcile.py).
    reconcile_insutypes: tuple[StrictStr, ...] = Field(default=("310", "390"), min_length=1)
    reconcile_clr_type: StrictStr = Field(default="41", pattern=r"^[0-9A-Za-z]{1,6}$")
    reconcile_setl_optins: Literal["mdtrtarea", "insuplc"] = "mdtrtarea"
    reconcile_revokes: Literal["in_force", "net"] = "in_force"
    # A 2601 that overtakes the call it reverses answers "nothing to reverse" while that call is
    # still at work behind the gateway, which then commits it: wait this long after an unknown
    # outcome (from the call log's times, so a restart waits too) before the first 2601.
    reversal_delay_s: StrictFloat | StrictInt = Field(default=30, ge=0, le=3600)
    # The settlement split: which setlinfo fields sum to the account's and the funds' parts.
    # The first of each list must be in every answer; the others count 0 when absent.
    account_fields: tuple[StrictStr, ...] = Field(default=("acct_pay",), min_length=1)
    fund_fields: tuple[StrictStr, ...] = Field(default=("fund_pay_sumamt",), min_length=1)
    length_unit: Literal["chars", "utf8", "gbk"]
    envelope_extra: dict[StrictStr, StrictStr] = {}
    limits: dict[StrictStr, StrictInt]
    refusals: Refusals

    @field_validator("reversible_infnos")
    @classmethod
    def _infnos(cls, values: frozenset[str]) -> frozenset[str]:
        bad = sorted(v for v in values if not re.fullmatch(_INFNO, v))
        if bad:
            raise ValueError(f"not transaction numbers (4 digits): {bad}")
        return values

    @field_validator("reconcile_insutypes")
    @classmethod
    def _insutypes(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        bad = sorted(v for v in values if not re.fullmatch(r"[0-9]{3,6}", v))
        if bad:
            raise ValueError(f"not insurance types (3 to 6 digits, e.g. 310): {bad}")
        if len(set(values)) != len(values):
            raise ValueError("an insurance type is listed twice")
        return values

    @field_validator("account_fields", "fund_fields")
    @classmethod
    def _split_fields(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        bad = sorted(v for v in values if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", v))
        if bad:
            raise ValueError(f"not setlinfo field names: {bad}")
        if len(set(values)) != len(values):
            raise ValueError("a field is listed twice")
        if "psn_cash_pay" in values or "medfee_sumamt" in values:
            raise ValueError("psn_cash_pay and medfee_sumamt are the cash part and the total, not a part to list")
        return values

    @field_validator("limits")
    @classmethod
    def _limits(cls, values: dict[str, int]) -> dict[str, int]:
        unknown = sorted(set(values) - LIMITED_FIELDS)
        if unknown:
            raise ValueError(f"no such envelope field: {unknown}; known: {sorted(LIMITED_FIELDS)}")
        if any(v < 1 for v in values.values()):
            raise ValueError("every limit must be at least 1")
        return values

    @field_validator("envelope_extra")
    @classmethod
    def _extra(cls, values: dict[str, str]) -> dict[str, str]:
        clash = sorted(set(values) & (LIMITED_FIELDS | {"input"}))
        if clash:
            raise ValueError(f"envelope_extra cannot replace the envelope's own fields: {clash}")
        return values

    # -- what the settings mean ------------------------------------------------------------------

    def classify(self, err_msg: str) -> RefusalKind:
        """What a -1 answer with `err_msg` means here. The outcome-unknown kinds are checked
        first: when a message is in two lists, the safer reading wins."""
        text = (err_msg or "").casefold()
        for kind in ("duplicate", "unknown", "sign_in", "transient"):
            patterns: tuple[str, ...] = getattr(self.refusals, kind)
            if any(p.casefold() in text for p in patterns):
                return kind
        return "rejected"

    def reverses_nothing(self, err_msg: str) -> bool:
        """A 2601's -1 with `err_msg` is definite: the call it reverses does not stand."""
        text = (err_msg or "").casefold()
        return any(p.casefold() in text for p in self.refusals.nothing_to_reverse)

    def length(self, text: str) -> int:
        """`text`'s length as this region's limits count it."""
        if self.length_unit == "utf8":
            return len(text.encode("utf-8"))
        if self.length_unit == "gbk":
            return len(text.encode("gb18030", errors="replace"))
        return len(text)

    def fit(self, text: str, field: str) -> str:
        """`text` cut to this profile's limit of `field`, counted its way (GBK bytes in some
        regions): for a value that only informs (an operator's name), which must not stop a call."""
        limit = self.limits.get(field)
        while limit is not None and text and self.length(text) > limit:
            text = text[:-1]
        return text

    def fund_fen(self, fund_pay_sumamt: int, acct_pay: int) -> int:
        """The funds' share (统筹 and other funds, without the personal account) of a settlement
        answer's `fund_pay_sumamt`."""
        return fund_pay_sumamt - acct_pay if self.fund_includes_acct else fund_pay_sumamt

    def fund_pay_sumamt(self, fund: int, acct_pay: int) -> int:
        """`fund_pay_sumamt` to send (3201) for the funds' share `fund` and the account's `acct_pay`."""
        return fund + acct_pay if self.fund_includes_acct else fund

    def is_match(self, stmt_rslt: object) -> bool:
        return isinstance(stmt_rslt, str | int) and not isinstance(stmt_rslt, bool) and \
            str(stmt_rslt) in self.reconcile_match


def available_profiles() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def _read(name: str) -> tuple[dict[str, Any], str]:
    """A profile file's table and where it came from: a packaged name or a path."""
    if "/" in name or name.endswith(".toml"):
        path = Path(name)
    else:
        path = PROFILE_DIR / f"{name}.toml"
        if not path.is_file():
            raise ConfigError(
                f"nhsa.profile: no profile named {name!r}; available: {', '.join(available_profiles())} "
                "(or the path of a profile file)"
            )
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")), str(path)
    except FileNotFoundError as exc:
        raise ConfigError(f"nhsa.profile: {path} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"nhsa.profile: {path} cannot be read: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"nhsa.profile: {path} is not valid TOML: {exc}") from exc


def _merged(name: str, depth: int = 0) -> dict[str, Any]:
    data, origin = _read(name)
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or depth >= _MAX_BASES:
        raise ConfigError(f"nhsa.profile: {origin}: base must name a profile (at most {_MAX_BASES} deep)")
    merged = _merged(base, depth + 1)
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


@lru_cache(maxsize=16)
def load_profile(name: str = DEFAULT_PROFILE) -> Profile:
    """The profile `name` (a packaged one, or a path to a TOML file), validated; ConfigError if not."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"nhsa.profile: give a profile name; available: {', '.join(available_profiles())}")
    data = _merged(name)
    if "name" in data:
        raise ConfigError(f"nhsa.profile {name!r} is not valid:\n  name: unknown key (the file name names it)")
    data["name"] = Path(name).stem if name.endswith(".toml") else name
    try:
        return Profile(**data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            problems.append(f"{key}: unknown key" if err["type"] == "extra_forbidden" else f"{key}: {err['msg']}")
        raise ConfigError(f"nhsa.profile {name!r} is not valid:\n  " + "\n  ".join(problems)) from exc
