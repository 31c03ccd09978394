"""`[nhsa]` in the config: validated like every section, required only for protocol "nhsa"."""

from __future__ import annotations

from pathlib import Path

import pytest

from terminald.config import NhsaConfig, UpstreamConfig, load_config
from terminald.errors import ConfigError

GOOD = """
[nhsa]
fixmedins_code = "H44030500123"
fixmedins_name = "示例大药房"
mdtrtarea_admvs = "440300"
recer_sys_code = "YBXT"
profile = "example-regional"
concurrency = 16
reentry = "patient_present"
opter_type = 2
opter = "T0001"
opter_name = "自助机一号"
dev_no = "DEV-1"
"""


pytestmark = pytest.mark.usefixtures("config_env")  # tests/fixtures/config.py


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _nhsa_protocol() -> UpstreamConfig:
    return UpstreamConfig(protocol="nhsa")


def test_defaults_are_empty_and_allowed_for_other_protocols() -> None:
    cfg = load_config()
    assert cfg.nhsa == NhsaConfig()
    assert (cfg.nhsa.profile, cfg.nhsa.concurrency, cfg.nhsa.reentry, cfg.nhsa.opter_type) == (
        "national", 4, "auto", "1")
    assert cfg.nhsa.missing() == ["fixmedins_code", "fixmedins_name", "mdtrtarea_admvs", "recer_sys_code"]


def test_file_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERMINALD_NHSA__CONCURRENCY", "8")
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.nhsa.fixmedins_code == "H44030500123" and cfg.nhsa.concurrency == 8
    assert cfg.nhsa.opter_type == "2" and cfg.nhsa.reentry == "patient_present"
    assert cfg.nhsa.missing() == []


@pytest.mark.parametrize(("text", "key"), [
    ('[nhsa]\nfixmedins_code = "H4403050012"\n', "nhsa.fixmedins_code"),
    ('[nhsa]\nmdtrtarea_admvs = "44030A"\n', "nhsa.mdtrtarea_admvs"),
    ('[nhsa]\nrecer_sys_code = "TOO-LONG-CODE"\n', "nhsa.recer_sys_code"),
    ("[nhsa]\nconcurrency = 0\n", "nhsa.concurrency"),
    ("[nhsa]\nconcurrency = 65\n", "nhsa.concurrency"),
    ('[nhsa]\nreentry = "manual"\n', "nhsa.reentry"),
    ("[nhsa]\nopter_type = 4\n", "nhsa.opter_type"),
    ('[nhsa]\nopter = "' + "1" * 31 + '"\n', "nhsa.opter"),
    ('[nhsa]\nprofile = ""\n', "nhsa.profile"),
    ('[nhsa]\nmsgid_slot = "0701"\n', "nhsa.msgid_slot"),
    ('[nhsa]\nmsgid_slot = "7a"\n', "nhsa.msgid_slot"),
    ("[nhsa]\nsign_no = 'x'\n", "nhsa.sign_no: unknown key"),
])
def test_bad_values_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert key in info.value.detail


def test_unknown_env_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERMINALD_NHSA__FIXMEDINS", "x")
    with pytest.raises(ConfigError, match="TERMINALD_NHSA__FIXMEDINS: unknown key"):
        load_config()


def test_protocol_nhsa_requires_the_institution() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(upstream=_nhsa_protocol(), nhsa={"fixmedins_code": "H44030500123"})
    detail = info.value.detail
    for key in ("nhsa.fixmedins_name", "nhsa.mdtrtarea_admvs", "nhsa.recer_sys_code"):
        assert key in detail
    assert "nhsa.fixmedins_code" not in detail


def test_protocol_nhsa_requires_a_profile_that_loads() -> None:
    complete = {"fixmedins_code": "H44030500123", "fixmedins_name": "示例大药房",
                "mdtrtarea_admvs": "440300", "recer_sys_code": "YBXT"}
    cfg = load_config(upstream=_nhsa_protocol(), nhsa=complete)
    assert cfg.nhsa.profile == "national"
    with pytest.raises(ConfigError) as info:
        load_config(upstream=_nhsa_protocol(), nhsa={**complete, "profile": "atlantis"})
    assert "atlantis" in info.value.detail and "national" in info.value.detail


def test_other_protocols_ignore_an_unknown_profile(tmp_path: Path) -> None:
    assert load_config(_write(tmp_path, '[nhsa]\nprofile = "atlantis"\n')).nhsa.profile == "atlantis"
