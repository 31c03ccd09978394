"""The platform's envelope: one JSON object per call, and its answer read into a typed result.

Out, `build_request` gives every field of the contract's table, in its order:

    infno  msgid  mdtrtarea_admvs  insuplc_admdvs  recer_sys_code  dev_no  dev_safe_info  cainfo
    signtype  infver  opter_type  opter  opter_name  inf_time  fixmedins_code  fixmedins_name
    sign_no  input  (+ the profile's envelope_extra)

with `inf_time` the msgid's own second ("yyyy-MM-dd HH:mm:ss"), `signtype`/`infver` from the
profile, `input` as {"data": {...}} (9001: {"signIn": {...}} or the profile's key), and each
field within the profile's length limits. A request that cannot be built raises EnvelopeError:
nothing was sent. `encode_request` makes the bytes (UTF-8 JSON, amounts never floats).

In, `parse_answer(status, body, ...)` is the line between definite and unknown, on which
exactly-once rests:

    Ok(output)             HTTP 200, an envelope object, infcode 0: the call took effect
    Refused(err_msg, kind) HTTP 200, an envelope object, infcode -1: the call did nothing;
                           `kind` from the profile: rejected, transient or sign_in
    raise UnknownOutcome   anything else: HTTP status other than 200, an empty body, a body
                           that is not UTF-8 JSON (HTML error pages, truncated text), JSON that
                           is not an object or repeats a key, infcode missing or not 0/-1 (0 and
                           -1 may come as numbers or strings), `output` of a success that is not
                           an object, an `inf_refmsgid` other than the msgid when the profile
                           says the gateway echoes it, and a -1 whose message the profile lists
                           as `unknown` (a gateway's own timeout)

Strict where a field decides the outcome; lenient where it only informs: extra fields are
allowed, `err_msg`, `refmsg_time` and `respond_time` of any type are read as text, so a
harmless quirk of a gateway never turns every answer into a reversal. `err_msg` is masked
before it leaves this module (redact.py); the UnknownOutcome detail never quotes the body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from terminald.upstream.nhsa import wirejson
from terminald.upstream.nhsa.errors import EnvelopeError, UnknownOutcome
from terminald.upstream.nhsa.msgid import inf_time, parse_msgid
from terminald.upstream.nhsa.profiles import Profile
from terminald.upstream.nhsa.redact import mask_text

if TYPE_CHECKING:
    from terminald.config import NhsaConfig

__all__ = [
    "MAX_ANSWER_BYTES",
    "PERSON_INFNOS",
    "SIGN_IN",
    "Answer",
    "Institution",
    "Ok",
    "Operator",
    "Refused",
    "build_request",
    "encode_request",
    "parse_answer",
]

SIGN_IN = "9001"
# Calls about a person: the envelope's insuplc_admdvs (from 1101) is required.
PERSON_INFNOS = frozenset({"2101", "2102", "2103", "2601"})
MAX_ANSWER_BYTES = 8 * 1024 * 1024
_INFNO = re.compile(r"[0-9]{4}")
_ADMDVS = re.compile(r"[0-9]{6}")


@dataclass(frozen=True)
class Institution:
    """The envelope fields that come from `[nhsa]`."""

    fixmedins_code: str
    fixmedins_name: str
    mdtrtarea_admvs: str
    recer_sys_code: str
    dev_no: str = ""
    dev_safe_info: str = ""
    cainfo: str = ""

    @classmethod
    def from_config(cls, cfg: NhsaConfig) -> Institution:
        return cls(cfg.fixmedins_code, cfg.fixmedins_name, cfg.mdtrtarea_admvs, cfg.recer_sys_code,
                   cfg.dev_no, cfg.dev_safe_info, cfg.cainfo)


@dataclass(frozen=True)
class Operator:
    """Who does the call: the transaction's operator (`opter_type` 1 staff, 2 self-service
    terminal, 3 mobile terminal)."""

    opter: str
    opter_name: str
    opter_type: Literal["1", "2", "3"] = "1"


@dataclass(frozen=True)
class Ok:
    output: Mapping[str, Any]
    inf_refmsgid: str = ""
    refmsg_time: str = ""
    respond_time: str = ""
    warn_msg: str = ""


@dataclass(frozen=True)
class Refused:
    err_msg: str  # masked
    kind: Literal["rejected", "transient", "sign_in"] = "rejected"
    inf_refmsgid: str = ""
    respond_time: str = ""


Answer = Ok | Refused


def _check_len(profile: Profile, name: str, value: str) -> None:
    limit = profile.limits.get(name)
    if limit is not None and profile.length(value) > limit:
        raise EnvelopeError(
            f"{name} is {profile.length(value)} long ({profile.length_unit}), "
            f"profile {profile.name!r} allows {limit}"
        )


def build_request(
    *,
    profile: Profile,
    institution: Institution,
    operator: Operator,
    infno: str,
    msgid: str,
    input: Mapping[str, Any],
    insuplc_admdvs: str = "",
    sign_no: str = "",
) -> dict[str, Any]:
    """The request envelope of one call (a dict for `encode_request`); EnvelopeError if it cannot be."""
    if not isinstance(infno, str) or not _INFNO.fullmatch(infno):
        raise EnvelopeError(f"infno must be 4 digits, not {infno!r}")
    parsed = parse_msgid(msgid)
    if parsed.fixmedins_code != institution.fixmedins_code:
        raise EnvelopeError("the msgid was made for another fixmedins_code")
    if not _ADMDVS.fullmatch(institution.mdtrtarea_admvs or ""):
        raise EnvelopeError("mdtrtarea_admvs must be 6 digits")
    if insuplc_admdvs:
        if not _ADMDVS.fullmatch(insuplc_admdvs):
            raise EnvelopeError("insuplc_admdvs must be 6 digits (from 1101 insuinfo[].insuplc_admdvs)")
    elif infno in PERSON_INFNOS:
        raise EnvelopeError(f"{infno} is about a person: insuplc_admdvs (from 1101) is required")
    elif profile.insuplc_without_person == "mdtrtarea":
        insuplc_admdvs = institution.mdtrtarea_admvs
    if infno != SIGN_IN and profile.requires_sign_in and not sign_no:
        raise EnvelopeError(f"{infno} needs a sign_no: sign in (9001) first")
    if operator.opter_type not in ("1", "2", "3"):
        raise EnvelopeError(f"opter_type must be 1, 2 or 3, not {operator.opter_type!r}")
    if not operator.opter or not operator.opter_name:
        raise EnvelopeError("opter and opter_name are required")
    if not isinstance(input, Mapping):
        raise EnvelopeError("input must be an object")
    key = profile.signin_input_key if infno == SIGN_IN else "data"
    envelope: dict[str, Any] = {
        "infno": infno,
        "msgid": msgid,
        "mdtrtarea_admvs": institution.mdtrtarea_admvs,
        "insuplc_admdvs": insuplc_admdvs,
        "recer_sys_code": institution.recer_sys_code,
        "dev_no": institution.dev_no,
        "dev_safe_info": institution.dev_safe_info,
        "cainfo": institution.cainfo,
        "signtype": profile.signtype,
        "infver": profile.infver,
        "opter_type": operator.opter_type,
        "opter": operator.opter,
        "opter_name": operator.opter_name,
        "inf_time": inf_time(msgid),
        "fixmedins_code": institution.fixmedins_code,
        "fixmedins_name": institution.fixmedins_name,
        "sign_no": sign_no if infno != SIGN_IN else "",
        "input": {key: dict(input)},
    }
    for name, value in envelope.items():
        if name == "input":
            try:
                text = wirejson.dumps(value)
            except TypeError as exc:
                raise EnvelopeError(f"input cannot be sent: {exc}") from exc
            _check_len(profile, "input", text)
        else:
            if not isinstance(value, str):
                raise EnvelopeError(f"{name} must be text")
            _check_len(profile, name, value)
    envelope.update(profile.envelope_extra)
    return envelope


def encode_request(envelope: Mapping[str, Any]) -> bytes:
    try:
        return wirejson.dumps(envelope).encode("utf-8")
    except TypeError as exc:
        raise EnvelopeError(f"the envelope cannot be sent: {exc}") from exc


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)


def _infcode(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value in (0, -1):
        return value
    if isinstance(value, str) and value in ("0", "-1"):
        return int(value)
    return None


def _describe_unparsable(body: bytes) -> str:
    head = body.lstrip()[:1]
    if head == b"<":
        return "an HTML or XML page, not the envelope"
    if head in (b"{", b"["):
        return "JSON that does not parse (truncated?)"
    return "not JSON"


def parse_answer(
    status: int, body: bytes, *, msgid: str, profile: Profile, redact: Iterable[str] = ()
) -> Answer:
    """Ok or Refused for a definite answer; raise UnknownOutcome for anything else.

    `redact`: strings of the person (name, card and identity numbers) to mask in err_msg.
    """
    if status != 200:
        raise UnknownOutcome("http_status", f"HTTP {status}")
    if len(body) > MAX_ANSWER_BYTES:
        raise UnknownOutcome("too_large", f"answer of {len(body)} bytes is over {MAX_ANSWER_BYTES}")
    if not body.strip():
        raise UnknownOutcome("empty", "HTTP 200 with an empty body")
    try:
        answer = wirejson.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UnknownOutcome("not_json", f"HTTP 200 body is {_describe_unparsable(body)}") from exc
    if not isinstance(answer, dict):
        raise UnknownOutcome("not_envelope", f"HTTP 200 body is a JSON {type(answer).__name__}, not an object")
    if "infcode" not in answer:
        raise UnknownOutcome("no_infcode", "the answer has no infcode")
    infcode = _infcode(answer["infcode"])
    if infcode is None:
        shown = repr(answer["infcode"])[:20]
        raise UnknownOutcome("infcode", f"infcode {shown} is neither 0 nor -1")
    refmsgid = answer.get("inf_refmsgid")
    if profile.refmsgid == "echo" and refmsgid != msgid:
        raise UnknownOutcome("refmsgid_mismatch", "inf_refmsgid is not this call's msgid: an answer to another call")
    if infcode == 0:
        output = answer.get("output")
        if output is None:
            output = {}
        if not isinstance(output, dict):
            raise UnknownOutcome("not_envelope", f"output is a JSON {type(output).__name__}, not an object")
        return Ok(output, _text(refmsgid), _text(answer.get("refmsg_time")), _text(answer.get("respond_time")),
                  mask_text(answer.get("warn_msg"), redact))
    raw = _text(answer.get("err_msg"))
    kind = profile.classify(raw)
    masked = mask_text(raw, redact)
    if kind == "unknown":
        raise UnknownOutcome("refused_unknown", f"-1 whose outcome the profile calls unknown: {masked}")
    if kind == "duplicate":
        raise UnknownOutcome("refused_duplicate", f"-1 for a duplicate of an earlier call: {masked}")
    return Refused(masked, kind, _text(refmsgid), _text(answer.get("respond_time")))
