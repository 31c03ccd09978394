"""`upstream.protocol = "nhsa"` in the config, and the adapter from the name table."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from spool import Spool
from terminald.config import load_config
from terminald.errors import ConfigError
from terminald.upstream.adapters import adapter_for
from terminald.upstream.nhsa import NhsaAdapter
from tests.nhsa_adapter.helpers import TID, FakeHost, make_config

FILE = """
[upstream]
url = "http://127.0.0.1:8650/fsi/api"
protocol = "nhsa"

[nhsa]
fixmedins_code = "H11010500123"
fixmedins_name = "示例大药房"
mdtrtarea_admvs = "110105"
recer_sys_code = "YBXT"
profile = "mock"
mac = "00-16-3E-01-02-03"
ip = "10.1.2.3"
"""


pytestmark = pytest.mark.usefixtures("config_env")  # tests/fixtures/config.py


def test_the_protocol_and_the_sign_in_fields_load_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "t.toml"
    path.write_text(FILE, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.upstream.protocol == "nhsa" and (cfg.nhsa.mac, cfg.nhsa.ip) == ("00-16-3E-01-02-03", "10.1.2.3")
    with pytest.raises(ConfigError, match=r"nhsa\.fixmedins_code"):
        load_config(None, upstream={"protocol": "nhsa"})


def test_the_name_table_makes_the_adapter_and_a_missing_url_is_a_config_error(tmp_path: Path) -> None:
    spool = Spool.open(tmp_path / "spool.db", TID, background_check=False)
    try:
        host = FakeHost(spool, make_config(spool.path, "http://127.0.0.1:9/fsi/api"))
        adapter = adapter_for("nhsa", host)
        assert isinstance(adapter, NhsaAdapter)
        asyncio.run(adapter.aclose())
        with pytest.raises(ConfigError, match=r"upstream\.url"):
            NhsaAdapter(FakeHost(spool, make_config(spool.path, "")))
    finally:
        spool.close()
