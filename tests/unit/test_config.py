from pathlib import Path

import pytest

from terminald.config import load_config
from terminald.errors import ConfigError

pytestmark = pytest.mark.usefixtures("config_env")  # tests/fixtures/config.py


def test_defaults_need_no_file(tmp_path: Path) -> None:
    cfg = load_config()
    assert cfg.api.listen == "127.0.0.1:8631"
    assert cfg.spool_path == tmp_path / "state" / "spool.db"
    assert cfg.printer_entries[0].uri == f"preview://{tmp_path / 'state' / 'receipts'}"
    assert cfg.upstream.url == ""


def test_file_and_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.toml"
    path.write_text('[upstream]\nurl = "http://127.0.0.1:9"\nwait_s = 2\n'
                    '[[downtime]]\nstart = 2026-12-01T18:00:00+08:00\nend = 2026-12-11T22:00:00+08:00\n'
                    'reason = "切换国家医保信息平台"\n', encoding="utf-8")
    monkeypatch.setenv("TERMINALD_UPSTREAM__WAIT_S", "7")
    cfg = load_config(path)
    assert cfg.upstream.url == "http://127.0.0.1:9"
    assert cfg.upstream.wait_s == 7
    assert cfg.downtime[0].reason == "切换国家医保信息平台"


@pytest.mark.parametrize(("text", "key"), [
    ("[upstream]\nurll = 'x'\n", "upstream.urll: unknown key"),
    ("[upstream]\nwait_s = 'soon'\n", "upstream.wait_s"),
    ("[api]\nlisten = 'nowhere'\n", "api.listen"),
    ("[bogus]\n", "bogus: unknown key"),
    ("[[downtime]]\nstart = 2026-12-02T00:00:00+08:00\nend = 2026-12-01T00:00:00+08:00\n", "downtime.0"),
    ("[[printers]]\nuri = 'tcp://127.0.0.1:9100'\ncolumns = 40\n", "printers.0.columns"),
    ("not toml = = 1", "not valid TOML"),
])
def test_bad_config_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert key in info.value.detail


def test_unknown_env_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERMINALD_UPSTREAM__WAITS", "3")
    with pytest.raises(ConfigError, match="TERMINALD_UPSTREAM__WAITS: unknown key"):
        load_config()


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")
