"""The draining process is killed with SIGKILL again and again; nothing is lost or sent twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spool import Spool
from terminald.sim.central import CentralSim
from tests.upload.helpers import TID, append, assert_exactly_once

REPO = Path(__file__).resolve().parents[2]
KILLS = 22


def _config(tmp_path: Path, spool_path: Path, url: str) -> Path:
    path = tmp_path / "terminald.toml"
    path.write_text(
        f'[terminal]\nid = "{TID}"\n[spool]\npath = "{spool_path}"\n'
        f'[upstream]\nurl = "{url}"\nbatch_size = 10\ntimeout_s = 2\n',
        encoding="utf-8",
    )
    return path


def _drain(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TERMINALD_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "terminald.cli", "spool", "drain", "--config", str(config)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _check_prefix(sim: CentralSim, spool_path: Path) -> int:
    """Between kills: central holds a prefix of the spool; every local outcome came from central."""
    spool = Spool.open(spool_path, TID, background_check=False)
    try:
        assert_exactly_once(sim, spool, all_final=False)
        central = {c["seq"]: c for c in sim.records(TID)}
        final = [r for r in spool.records(after_seq=0, limit=1_000_000) if r.status != "pending"]
        for record in final:
            stored = central[record.seq]["central_outcome"]
            assert record.outcome == (stored.get("settlement") or stored.get("reason"))
        return len(final)
    finally:
        spool.close()


@pytest.mark.slow
def test_kill_9_while_draining(central_sim: CentralSim, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.db"
    spool = Spool.open(spool_path, TID)
    append(spool, 3000)
    spool.close()
    central_sim.control(seed=3, latency_ms=25.0, drop_after_commit_rate=0.1)
    config = _config(tmp_path, spool_path, central_sim.url)
    dice = random.Random(11)
    progress = []
    killed = added = rounds = 0
    while killed < KILLS and rounds < 2 * KILLS:
        rounds += 1
        child = _drain(config)
        time.sleep(dice.uniform(0.5, 1.0))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        child.wait(timeout=10)
        progress.append(_check_prefix(central_sim, spool_path))
        if rounds % 4 == 0:  # new sales arrive between crashes
            spool = Spool.open(spool_path, TID, background_check=False)
            added += len(append(spool, 50))
            spool.close()
    assert killed >= KILLS, f"only {killed} children were still draining when killed"
    assert progress[-1] > progress[0], progress
    assert central_sim.injected["drop_after_commit"] > 0
    central_sim.control(drop_after_commit_rate=0.0, latency_ms=0.0)
    child = _drain(config)
    _, err = child.communicate(timeout=120)
    assert child.returncode == 0, err.decode()
    spool = Spool.open(spool_path, TID)
    try:
        assert spool.stats().pending == 0
        assert spool.check().ok
        assert_exactly_once(central_sim, spool)
        assert len(central_sim.records(TID)) == 3000 + added
    finally:
        spool.close()


def test_ctrl_c_stops_a_drain_and_loses_nothing(central_sim: CentralSim, tmp_path: Path) -> None:
    spool_path = tmp_path / "spool.db"
    spool = Spool.open(spool_path, TID)
    append(spool, 600)
    spool.close()
    central_sim.control(latency_ms=30.0)
    child = _drain(_config(tmp_path, spool_path, central_sim.url))
    deadline = time.monotonic() + 30
    while len(central_sim.records(TID)) < 20:
        assert time.monotonic() < deadline and child.poll() is None
        time.sleep(0.05)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 130, err.decode()
    assert "nothing is lost" in err.decode()
    final = _check_prefix(central_sim, spool_path)
    assert 20 <= final < 600
