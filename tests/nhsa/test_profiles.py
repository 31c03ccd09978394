"""Profiles: regional differences as data, loaded strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminald.errors import ConfigError
from terminald.upstream.nhsa.profiles import LIMITED_FIELDS, available_profiles, load_profile


def test_packaged_profiles() -> None:
    assert {"national", "mock", "example-regional"} <= set(available_profiles())
    for name in available_profiles():
        assert load_profile(name).name == name


def test_national_defaults() -> None:
    p = load_profile()
    assert p.name == "national"
    assert (p.infver, p.signtype, p.amount_as) == ("V1.0", "", "number")
    assert not p.presettle_first and not p.fund_includes_acct
    assert p.reversible_infnos == {"2102", "2103"}
    assert p.requires_sign_in and p.signin_input_key == "signIn" and p.refmsgid == "any"
    assert p.limits["msgid"] == 30 and p.limits["fixmedins_code"] == 12 and set(p.limits) == LIMITED_FIELDS


def test_the_regional_example_differs_in_data_only() -> None:
    national, regional = load_profile("national"), load_profile("example-regional")
    assert regional.amount_as == "string" and regional.signtype == "SM3" and regional.infver == "1.0.0"
    assert regional.presettle_first and regional.fund_includes_acct
    assert "2101" in regional.reversible_infnos and regional.signin_input_key == "data"
    assert regional.envelope_extra == {"recer_admdvs": "440100"}
    # Tables merge key by key over the base: two limits changed, the rest national.
    assert regional.limits["fixmedins_name"] == 20 and regional.limits["msgid"] == national.limits["msgid"]
    assert regional.refusals.sign_in == national.refusals.sign_in
    assert "交易繁忙" in regional.refusals.transient
    assert load_profile("mock").signtype == "MOCK"


@pytest.mark.parametrize(("message", "kind"), [
    ("系统繁忙,请稍后再试", "transient"),
    ("签到失效，请重新签到", "sign_in"),
    ("签到编号不能为空，请先签到", "sign_in"),
    ("原交易不存在或未成功，无需冲正", "rejected"),  # a 2601's "nothing to reverse": definite
    ("调用医保服务超时", "unknown"),
    ("Read timed out", "unknown"),
    ("签到失效(超时)", "unknown"),  # in two lists: the safer reading wins
    ("人员参保状态异常:已冻结", "rejected"),
    ("", "rejected"),
])
def test_refusal_classes(message: str, kind: str) -> None:
    assert load_profile().classify(message) == kind


def test_fund_with_and_without_the_account() -> None:
    national, regional = load_profile("national"), load_profile("example-regional")
    assert national.fund_fen(7000, 2000) == 7000 and national.fund_pay_sumamt(7000, 2000) == 7000
    assert regional.fund_fen(9000, 2000) == 7000 and regional.fund_pay_sumamt(7000, 2000) == 9000


def test_lengths_count_in_the_profiles_unit() -> None:
    assert load_profile("national").length("示例大药房") == 5
    assert load_profile("example-regional").length("示例大药房") == 10


def test_reconcile_match() -> None:
    p = load_profile()
    assert p.is_match("0") and p.is_match(0)
    assert not p.is_match("1") and not p.is_match(False) and not p.is_match(None)


def test_unknown_name_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as info:
        load_profile("atlantis")
    assert "atlantis" in info.value.detail
    for name in available_profiles():
        assert name in info.value.detail


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "site.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_a_site_file_may_build_on_a_packaged_profile(tmp_path: Path) -> None:
    p = load_profile(_write(tmp_path, 'base = "national"\namount_as = "string"\n[limits]\nopter_name = 10\n'))
    assert p.name == "site" and p.amount_as == "string" and p.limits["opter_name"] == 10
    assert p.limits["msgid"] == 30


@pytest.mark.parametrize(("text", "named"), [
    ('base = "national"\namount_as = "float"\n', "amount_as"),
    ('base = "national"\nsurprise = 1\n', "surprise: unknown key"),
    ('base = "national"\n[limits]\nnot_a_field = 3\n', "limits"),
    ('base = "national"\n[limits]\nopter = 0\n', "limits"),
    ('base = "national"\n[refusals]\ntransient = [""]\n', "refusals.transient"),
    ('base = "national"\n[refusals]\nmaybe = ["x"]\n', "refusals.maybe: unknown key"),
    ('base = "national"\nreversible_infnos = ["2102", "26O1"]\n', "reversible_infnos"),
    ('base = "national"\npresettle_first = "yes"\n', "presettle_first"),
    ('base = "national"\n[envelope_extra]\nmsgid = "x"\n', "envelope_extra"),
    ('base = "national"\nname = "other"\n', "name: unknown key"),
    ('base = "atlantis"\n', "atlantis"),
    ('base = 3\n', "base"),
    ('infver = "V1.0"\n', "signtype"),  # no base: every setting must be given
    ("not toml = = 1", "not valid TOML"),
])
def test_bad_files_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_profile(_write(tmp_path, text))
    assert named in info.value.detail


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_profile(str(tmp_path / "nope.toml"))


def test_a_base_loop_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.toml"
    path.write_text(f'base = "{path}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="base"):
        load_profile(str(path))


@pytest.mark.parametrize("message", ["明细流水号重复", "费用明细流水号S1重复", "交易重复，请勿重复提交"])
def test_a_duplicate_serial_is_of_unknown_outcome_never_a_rejection(message: str) -> None:
    # The platform holds an earlier call of this sale: it may stand, so never reject the record;
    # its own kind, so that its repeats park the sale (the gateway's own timeouts do not).
    assert load_profile().classify(message) == "duplicate"


def test_a_gateways_own_timeout_is_unknown_not_a_duplicate() -> None:
    assert load_profile().classify("调用医保中心服务超时，交易结果未知") == "unknown"


def test_reversal_delay_and_the_split_fields() -> None:
    national, mock = load_profile("national"), load_profile("mock")
    assert national.reversal_delay_s == 30 and 0 < mock.reversal_delay_s <= 2
    assert national.account_fields == ("acct_pay",) and national.fund_fields == ("fund_pay_sumamt",)


@pytest.mark.parametrize("line", [
    "reversal_delay_s = -1",
    'account_fields = []',
    'account_fields = ["acct_pay", "acct_pay"]',
    'fund_fields = ["psn_cash_pay"]',
    'account_fields = ["Acct Pay"]',
])
def test_bad_delay_or_split_fields_are_refused(tmp_path: Path, line: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(f'base = "national"\n{line}\n', encoding="utf-8")
    with pytest.raises(ConfigError):
        load_profile(str(path))
