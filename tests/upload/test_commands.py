"""CLI bodies (terminald/cli/): drain, outages, reconcile (exit codes and output); drain refuses
while the daemon holds the spool's lock."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from spool import Spool
from spool.lock import SpoolLock, SpoolLocked, lock_path
from terminald.cli.spool import drain
from terminald.cli.upstream import print_outages, print_reconcile
from terminald.sim.central import CentralSim
from terminald.upload.state import UploadState
from tests.api.helpers import central_config, post_tx, sale
from tests.fixtures.daemon import DaemonProcess, DaemonStartError
from tests.upload.helpers import TID, append, assert_exactly_once, make_config
from tests.waiting import wait_for


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


def test_a_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[upstream]\nurl = 'ftp://x'\n")
    for args in (["outages"], ["reconcile", "--date", "2026-11-23"], ["spool", "drain"]):
        done = subprocess.run([sys.executable, "-m", "terminald.cli", *args, "--config", str(bad)],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "upstream.url" in done.stderr


# -- the spool's lock: drain never races a running daemon -------------------------------------------------
def _cli(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """The real CLI, with the daemon's own configuration and state directory."""
    env = {**d.env, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "terminald.cli", *args], env=env, cwd=d.workdir,
                          capture_output=True, text=True, timeout=120, check=False)


def test_drain_refuses_while_the_daemon_holds_the_spool(
        central_sim: CentralSim, daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(config=central_config(central_sim.url, terminal_id=TID, wait_s=0)
                    + "[offline]\nrequire_card_present = false\n")
    api = d.client()
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "online", what="online")
    central_sim.control(down=True)
    wait_for(lambda: api.get("/v1/status").json()["mode"] == "offline", what="offline")
    for n in range(3):
        assert post_tx(api, sale(), f"k{n}", wait=0).status_code == 202
    central_sim.control(down=False)

    refused = _cli(d, "spool", "drain")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (f"terminald is running (pid {d.pid}) and holds this spool: stop it, or let it upload"
            in refused.stderr), refused.stderr
    assert "uploading" not in refused.stderr  # it never started

    # The daemon uploads them itself, without a false chain_broken; its lock stays.
    wait_for(lambda: api.get("/v1/status").json()["spool"]["pending"] == 0, timeout_s=60, what="uploaded")
    assert api.get("/v1/status").json()["upstream"]["halted"] is False
    assert _cli(d, "spool", "drain").returncode == 1

    # Stopped, the spool is free: drain runs (nothing left to send).
    d.stop()
    done = _cli(d, "spool", "drain")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backlog empty" in done.stderr
    # And the daemon starts again afterwards: drain let go of the lock.
    d.start()


def test_the_daemon_does_not_start_while_a_drain_holds_the_spool(
        daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(start=False)
    d.state_dir.mkdir(parents=True, exist_ok=True)
    with SpoolLock.acquire(d.state_dir / "spool.db", "terminald spool drain"):
        with pytest.raises(DaemonStartError):
            d.start(timeout_s=30)
        assert d.returncode == 1
        assert f"terminald spool drain (pid {os.getpid()}) holds" in d.stderr_text()
        assert "wait for it to finish" in d.stderr_text()
        # The refused daemon touched nothing: no spool was created.
        assert not (d.state_dir / "spool.db").exists()
    d.start()
    # A second daemon on the same spool is refused the same way, naming the first.
    second = daemon_proc(start=False, state_dir=d.state_dir)
    with pytest.raises(DaemonStartError):
        second.start(timeout_s=30)
    assert f"terminald serve (pid {d.pid}) holds" in second.stderr_text()
    assert d.client().get("/v1/status").status_code == 200


def test_the_lock_is_released_by_the_kernel_when_its_holder_dies(tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.db"
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from spool.lock import SpoolLock; "
         "lock = SpoolLock.acquire(sys.argv[1], 'terminald spool drain'); print('held', flush=True); "
         "sys.stdin.read()", str(spool_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with pytest.raises(SpoolLocked) as refused:
            SpoolLock.acquire(spool_path, "terminald spool drain")
        assert refused.value.pid == child.pid and refused.value.holder == "terminald spool drain"
        child.kill()  # SIGKILL: no clean-up of its own
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    with SpoolLock.acquire(spool_path, "test") as lock:
        assert lock.held
        assert lock_path(spool_path).read_text() == f"{os.getpid()} test\n"
    assert lock_path(spool_path).read_text() == ""
