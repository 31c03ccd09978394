"""CLI bodies: drain, outages, reconcile (exit codes and output)."""

from __future__ import annotations

from pathlib import Path

import pytest

from spool import Spool
from terminald.sim.central import CentralSim
from terminald.upload.commands import drain, main, print_outages, print_reconcile
from terminald.upload.state import UploadState
from tests.upload.helpers import TID, append, assert_exactly_once, make_config


def test_drain_empties_the_backlog(central_sim: CentralSim, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID)
    append(spool, 120, day="2026-11-23")
    spool.close()
    cfg = make_config(path, central_sim.url)
    assert drain(cfg) == 0
    assert print_reconcile(cfg, "2026-11-23") == 0
    spool = Spool.open(path, TID)
    try:
        assert_exactly_once(central_sim, spool)
    finally:
        spool.close()


def test_drain_without_upstream_or_when_halted(central_sim: CentralSim, tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = Spool.open(path, TID)
    append(spool, 3)
    spool.close()
    assert drain(make_config(path, "")) == 1
    cfg = make_config(path, central_sim.url)
    assert drain(cfg) == 0
    central_sim.control(regress={"terminal_id": TID, "count": 2})
    assert drain(cfg) == 0  # nothing pending: nothing to check
    spool = Spool.open(path, TID)
    append(spool, 1)
    spool.close()
    assert drain(cfg) == 1  # central lost records it had acknowledged: stop, say so
    assert print_reconcile(cfg, "2026-11-23") == 1


def test_outages_table_and_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    path = tmp_path / "spool.db"
    Spool.open(path, TID).close()
    state = UploadState(path)
    state.begin_outage("2026-11-23T09:00:00.000+08:00", "timeout", planned=False)
    state.end_outage("2026-11-23T10:30:00.000+08:00")
    state.begin_outage("2026-11-23T11:00:00.000+08:00", "connect_failed", planned=False)
    state.end_outage("2026-11-23T11:05:00.000+08:00")
    state.close()
    cfg = make_config(path, "")
    assert print_outages(cfg, reportable=True, csv=True) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "started_at,ended_at,duration_s,cause,planned,reportable",
        "2026-11-23T09:00:00.000+08:00,2026-11-23T10:30:00.000+08:00,5400.0,timeout,False,True",
    ]
    assert print_outages(cfg, reportable=False, csv=False) == 0
    table = capsys.readouterr().out
    assert "connect_failed" in table and "1:30:00" in table


def test_module_entry_rejects_a_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[upstream]\nurl = 'ftp://x'\n")
    assert main(["outages", "--config", str(bad)]) == 2
