"""The envelope out, and the line between a definite answer and an unknown outcome coming back."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from terminald.upstream.nhsa import wirejson
from terminald.upstream.nhsa.amounts import to_fen, to_wire
from terminald.upstream.nhsa.envelope import (
    MAX_ANSWER_BYTES,
    Institution,
    Ok,
    Operator,
    Refused,
    build_request,
    encode_request,
    parse_answer,
)
from terminald.upstream.nhsa.errors import EnvelopeError, UnknownOutcome
from terminald.upstream.nhsa.profiles import Profile, load_profile
from tests.nhsa.helpers import CODE, INSTITUTION, OPERATOR, PSN_NO, answer

MSGID = CODE + "20260315093012" + "0001"
NATIONAL = load_profile("national")
REGIONAL = load_profile("example-regional")
CONTRACT_FIELDS = [
    "infno", "msgid", "mdtrtarea_admvs", "insuplc_admdvs", "recer_sys_code", "dev_no", "dev_safe_info",
    "cainfo", "signtype", "infver", "opter_type", "opter", "opter_name", "inf_time", "fixmedins_code",
    "fixmedins_name", "sign_no", "input",
]


def _settle_input(profile: Profile) -> dict[str, Any]:
    return {
        "psn_no": PSN_NO, "mdtrt_cert_type": "03", "mdtrt_cert_no": "A12345678", "begntime": "2026-03-14 16:02:11",
        "medfee_sumamt": to_wire(12345, profile.amount_as), "psn_setlway": "01", "insutype": "310",
        "acct_used_flag": "1", "insuplc_admdvs": "440300",
        "drugdetail": [{"feedetl_sn": "1", "cnt": Decimal("2"), "pric": to_wire(6172, profile.amount_as),
                        "det_item_fee_sumamt": to_wire(12345, profile.amount_as),
                        "sel_retn_time": "2026-03-14 16:02:11", "sel_retn_flag": "0"}],
    }


def _build(profile: Profile = NATIONAL, **overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "profile": profile, "institution": INSTITUTION, "operator": OPERATOR, "infno": "2102",
        "msgid": MSGID, "input": _settle_input(profile), "insuplc_admdvs": "440300", "sign_no": "S" * 30,
    }
    args.update(overrides)
    return build_request(**args)


# -- out --------------------------------------------------------------------------------------------

def test_every_field_of_the_contract_in_order() -> None:
    env = _build()
    assert list(env) == CONTRACT_FIELDS
    assert env["inf_time"] == "2026-03-15 09:30:12"  # the msgid's own second
    assert (env["signtype"], env["infver"], env["opter_type"]) == ("", "V1.0", "1")
    assert (env["opter"], env["opter_name"]) == ("0001", "王药师")
    assert (env["fixmedins_code"], env["mdtrtarea_admvs"], env["recer_sys_code"]) == (CODE, "440300", "YBXT")
    assert list(env["input"]) == ["data"] and env["input"]["data"]["psn_no"] == PSN_NO


def test_amounts_are_numbers_or_strings_as_the_profile_says() -> None:
    national = json.loads(encode_request(_build()))
    assert '"medfee_sumamt":123.45' in encode_request(_build()).decode()
    assert national["input"]["data"]["drugdetail"][0]["pric"] == 61.72
    regional = json.loads(encode_request(_build(REGIONAL, input=_settle_input(REGIONAL))))
    assert regional["input"]["data"]["medfee_sumamt"] == "123.45"
    assert regional["signtype"] == "SM3" and regional["infver"] == "1.0.0"
    assert regional["recer_admdvs"] == "440100"  # the profile's extra field
    assert to_fen(wirejson.loads(encode_request(_build()))["input"]["data"]["medfee_sumamt"]) == 12345


def test_sign_in_input_key_and_no_sign_no() -> None:
    env = _build(infno="9001", input={"opter_no": "0001", "mac": "00:11:22:33:44:55", "ip": "10.0.0.8"},
                 insuplc_admdvs="", sign_no="stale")
    assert list(env["input"]) == ["signIn"] and env["sign_no"] == ""
    regional = _build(REGIONAL, infno="9001", input={"opter_no": "0001"}, insuplc_admdvs="", sign_no="")
    assert list(regional["input"]) == ["data"]
    assert regional["insuplc_admdvs"] == "440300"  # "mdtrtarea" for calls without a person


def test_person_calls_need_the_insured_area() -> None:
    with pytest.raises(EnvelopeError, match="insuplc_admdvs"):
        _build(insuplc_admdvs="")
    assert _build(infno="1101", input={"mdtrt_cert_type": "02"}, insuplc_admdvs="")["insuplc_admdvs"] == ""


@pytest.mark.parametrize(("overrides", "match"), [
    ({"infno": "210"}, "infno"),
    ({"msgid": "H44030500123202603150930120000"}, "msgid"),
    ({"msgid": "P99999999999" + "20260315093012" + "0001"}, "another fixmedins_code"),
    ({"insuplc_admdvs": "44030"}, "insuplc_admdvs"),
    ({"sign_no": ""}, "sign in"),
    ({"operator": Operator("", "x")}, "opter"),
    ({"operator": Operator("1", "x", "4")}, "opter_type"),  # type: ignore[arg-type]
    ({"operator": Operator("1" * 31, "x")}, "opter is 31"),
    ({"institution": Institution(CODE, "x", "4403", "YBXT")}, "mdtrtarea_admvs"),
    ({"institution": Institution(CODE, "药" * 201, "440300", "YBXT")}, "fixmedins_name"),
    ({"input": {"data": "x" * 40_000}}, "input is"),
    ({"input": {"pric": 61.72}}, "floats"),
    ({"input": ["not", "an", "object"]}, "object"),
])
def test_a_request_that_cannot_be_built_is_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(EnvelopeError, match=match):
        _build(**overrides)


def test_limits_count_in_the_profiles_unit() -> None:
    name = "示例大药房连锁有限公司一店"  # 13 characters, 26 GBK bytes
    inst = Institution(CODE, name, "440300", "YBXT")
    _build(institution=inst)
    with pytest.raises(EnvelopeError, match="fixmedins_name is 26 long"):
        _build(REGIONAL, institution=inst, input=_settle_input(REGIONAL))


def test_every_profile_here_requires_a_sign_no_outside_9001() -> None:
    with pytest.raises(EnvelopeError):
        _build(REGIONAL, sign_no="", input=_settle_input(REGIONAL))


# -- in: definite ---------------------------------------------------------------------------------

def _parse(body: bytes, status: int = 200, profile: Profile = NATIONAL, **kw: Any) -> Ok | Refused:
    return parse_answer(status, body, msgid=MSGID, profile=profile, **kw)


def test_success_with_output() -> None:
    setl = {"setlinfo": {"setl_id": "S1", "medfee_sumamt": 123.45, "fund_pay_sumamt": 70.00}}
    result = _parse(answer(0, setl))
    assert isinstance(result, Ok)
    assert result.output["setlinfo"]["fund_pay_sumamt"] == Decimal("70.00")  # never a float
    assert to_fen(result.output["setlinfo"]["medfee_sumamt"]) == 12345
    assert result.inf_refmsgid == "440300202603150930120000000001"
    assert result.respond_time == "20260315093012400"


@pytest.mark.parametrize("infcode", [0, "0"])
def test_success_as_number_or_string_and_extra_fields(infcode: Any) -> None:
    body = answer(infcode, {"x": 1}, warn_msg="提示", signtype="SM3", cainfo="abc", brand_new_field=[1, 2])
    result = _parse(body)
    assert isinstance(result, Ok) and result.output == {"x": 1} and result.warn_msg == "提示"


@pytest.mark.parametrize("output", [None, {}])
def test_success_without_output(output: Any) -> None:
    body = json.dumps({"infcode": 0, "output": output}).encode()
    assert _parse(body) == Ok({}, "", "", "")
    assert _parse(b'{"infcode": 0}') == Ok({})


def test_informational_fields_of_any_type_are_read_as_text() -> None:
    result = _parse(answer(0, {}, refmsg_time=20260315093012300, respond_time=None, inf_refmsgid=12))
    assert isinstance(result, Ok) and result.refmsg_time == "20260315093012300" and result.respond_time == ""


@pytest.mark.parametrize("infcode", [-1, "-1"])
def test_refusal_is_definite_and_masked(infcode: Any) -> None:
    result = _parse(answer(infcode, err_msg="身份证号110101199003071234的人员张三丰已冻结"), redact=("张三丰",))
    assert isinstance(result, Refused) and result.kind == "rejected"
    assert "110101199003071234" not in result.err_msg and "张三丰" not in result.err_msg
    assert "已冻结" in result.err_msg


@pytest.mark.parametrize(("message", "kind"), [("系统繁忙", "transient"), ("签到失效", "sign_in"),
                                               (None, "rejected"), (404, "rejected")])
def test_refusal_kinds_come_from_the_profile(message: Any, kind: str) -> None:
    result = _parse(answer(-1, err_msg=message))
    assert isinstance(result, Refused) and result.kind == kind


def test_refusal_with_a_bom_and_output_of_any_shape() -> None:
    body = b"\xef\xbb\xbf" + answer(-1, err_msg="x", output=None).replace(b'"output": {}', b'"output": "n/a"')
    assert isinstance(_parse(body), Refused)


# -- in: unknown ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "body", "reason"), [
    (500, answer(0, {}), "http_status"),
    (502, b"<html><body>Bad Gateway</body></html>", "http_status"),
    (404, answer(-1, err_msg="x"), "http_status"),  # even a -1 body: the status says it is not the platform
    (201, answer(0, {}), "http_status"),
    (204, b"", "http_status"),
    (200, b"", "empty"),
    (200, b"  \r\n ", "empty"),
    (200, b"<!DOCTYPE html><html><head><title>503</title></head></html>", "not_json"),
    (200, answer(0, {"setlinfo": {"setl_id": "S1"}})[:-7], "not_json"),  # truncated
    (200, b'{"infcode": 0, "output": {', "not_json"),
    (200, b"\xff\xfe\x00{", "not_json"),
    (200, "{\"infcode\": 0, \"err_msg\": \"成功\"}".encode("gbk"), "not_json"),
    (200, b'{"infcode": NaN}', "not_json"),
    (200, b'{"infcode": 0, "infcode": -1}', "not_json"),  # which one?
    (200, b"[]", "not_envelope"),
    (200, b'"ok"', "not_envelope"),
    (200, b"null", "not_envelope"),
    (200, b'{"code": "0", "message": "ok", "data": {"infcode": 0}}', "no_infcode"),
    (200, b'{"output": {}}', "no_infcode"),
    (200, answer(1), "infcode"),
    (200, answer(-2), "infcode"),
    (200, answer(None), "infcode"),
    (200, answer(True), "infcode"),
    (200, answer(False), "infcode"),
    (200, answer("00"), "infcode"),
    (200, answer(" 0"), "infcode"),
    (200, b'{"infcode": 0.0}', "infcode"),
    (200, answer(0, output=[1]), "not_envelope"),
    (200, answer(0, output="{}"), "not_envelope"),
    (200, answer(-1, err_msg="调用医保服务超时"), "refused_unknown"),
])
def test_anything_else_is_an_unknown_outcome(status: int, body: bytes, reason: str) -> None:
    with pytest.raises(UnknownOutcome) as info:
        _parse(body, status)
    assert info.value.reason == reason
    assert info.value.code == "nhsa_unknown_outcome"


def test_the_unknown_detail_never_quotes_the_body() -> None:
    secret = b'<html>110101199003071234</html>'
    with pytest.raises(UnknownOutcome) as info:
        _parse(secret)
    assert "110101199003071234" not in str(info.value)
    assert "HTML" in info.value.detail
    with pytest.raises(UnknownOutcome) as info:
        _parse(answer(-1, err_msg="110101199003071234 超时"))
    assert "110101199003071234" not in str(info.value)


def test_too_large() -> None:
    with pytest.raises(UnknownOutcome) as info:
        _parse(b" " * (MAX_ANSWER_BYTES + 1))
    assert info.value.reason == "too_large"


def test_refmsgid_echo_mode() -> None:
    echo = _parse(answer(0, {}, inf_refmsgid=MSGID), profile=REGIONAL)
    assert isinstance(echo, Ok)
    for other in ["H44030500123202603150930120002", "", None]:
        for code in (0, -1):
            with pytest.raises(UnknownOutcome) as info:
                _parse(answer(code, {}, inf_refmsgid=other, err_msg="x"), profile=REGIONAL)
            assert info.value.reason == "refmsgid_mismatch"
    # national: inf_refmsgid is the receiver's own id, whatever it is
    assert isinstance(_parse(answer(0, {}, inf_refmsgid="something else")), Ok)


def test_deep_nesting_is_unknown_not_a_crash() -> None:
    deep = b'{"infcode": 0, "output": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
    with pytest.raises(UnknownOutcome):
        _parse(deep)
