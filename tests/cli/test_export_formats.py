"""`terminald spool export --format sqlite`: every format the spool writes, the CLI offers (issue #13)."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

from spool import Spool
from spool.maintenance import EXPORT_FORMATS
from tests.spool.factory import TERMINAL_ID, make_request


def test_the_cli_offers_every_export_format_and_the_sqlite_copy_verifies(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    with Spool.open(state / "spool.db", TERMINAL_ID, background_check=False) as spool:
        for n in range(3):
            spool.append(make_request(f"k{n}", 1000 + n))
    config = tmp_path / "terminald.toml"
    config.write_text(f'[terminal]\nid = "{TERMINAL_ID}"\n[spool]\npath = "{state / "spool.db"}"\n',
                      encoding="utf-8")
    env = {"STATE_DIRECTORY": str(state), "PATH": "/usr/bin:/bin"}
    for fmt in EXPORT_FORMATS:
        dest = tmp_path / f"export.{fmt}"
        done = subprocess.run([sys.executable, "-m", "terminald.cli", "spool", "export", str(dest),
                               "--format", fmt, "--config", str(config)],
                              capture_output=True, text=True, env=env, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "exported 3 records" in done.stdout
        assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    # The sqlite copy is a spool: the hash chain of every record verifies in it.
    with Spool.open(tmp_path / "export.sqlite", TERMINAL_ID, background_check=False) as copy:
        report = copy.check()
    assert report.ok and report.records == 3
