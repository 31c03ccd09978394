"""The commands that only read the spool (`spool list/show/check/export`, `outages`, `reconcile`)
leave its directory exactly as they found it: no -wal/-shm/-seq/lock file created, no file
changed, no owner or mode changed, no migration; run as root on a directory the daemon's user
owns (0700, files 0600), as IT does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from spool import Spool
from spool.schema import NAMESPACE, STEPS
from spool.store import connect, migrate, schema_version
from terminald.upload.state import UploadState
from tests.spool.factory import TERMINAL_ID, make_request
from tests.spool.test_readonly import listing

DAEMON_UID = DAEMON_GID = 65534  # stands for the `terminald` user: anyone but root

READ_ONLY = [
    ("spool", "list"),
    ("spool", "list", "--status", "pending"),
    ("spool", "show", "2"),
    ("spool", "show", "1", "--full"),
    ("spool", "check"),
    ("outages",),
    ("outages", "--csv", "--reportable"),
    ("reconcile", "--date", "2026-11-23"),
]


def terminald(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "terminald.cli", *args, "--config", str(config)],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def _as_the_daemons(state: Path) -> None:
    """The state directory as the daemon leaves it: 0700, files 0600, owned by its user (when we can)."""
    state.chmod(0o700)
    for path in state.iterdir():
        path.chmod(0o600)
    if os.geteuid() == 0:
        for path in (state, *state.iterdir()):
            os.chown(path, DAEMON_UID, DAEMON_GID)


def _config(tmp_path: Path, spool_path: Path) -> Path:
    config = tmp_path / "terminald.toml"
    config.write_text(f'[terminal]\nid = "{TERMINAL_ID}"\n[spool]\npath = "{spool_path}"\n', encoding="utf-8")
    return config


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """A stopped counter's state: three sales (one settled), an outage of 90 minutes."""
    directory = tmp_path / "state"
    directory.mkdir()
    with Spool.open(directory / "spool.db", TERMINAL_ID, background_check=False) as spool:
        for n in range(3):
            spool.append(make_request(f"k{n}", 1000 + n))
    upload = UploadState(directory / "spool.db")
    upload.begin_outage("2026-11-23T09:00:00.000+08:00", "connect_failed", planned=False)
    upload.end_outage("2026-11-23T10:30:00.000+08:00")
    upload.close()
    _as_the_daemons(directory)
    return directory


def test_read_only_commands_create_and_change_nothing(state: Path, tmp_path: Path) -> None:
    config = _config(tmp_path, state / "spool.db")
    before = listing(state)
    assert not {"spool.db-wal", "spool.db-shm", "spool.db.lock"} & before.keys()
    for args in READ_ONLY:
        done = terminald(*args, config=config)
        # reconcile: no upstream configured, so it cannot match (exit 1) but shows the local side.
        assert done.returncode == (1 if args[0] == "reconcile" else 0), (args, done.stdout, done.stderr)
        assert listing(state) == before, args
    listed = terminald("spool", "list", config=config).stdout
    assert len(listed.splitlines()) == 4  # header and three records
    assert "3 records, chain and integrity verified" in terminald("spool", "check", config=config).stdout
    assert "connect_failed" in terminald("outages", "--csv", config=config).stdout
    assert "local" in terminald("reconcile", "--date", "2026-11-23", config=config).stdout

    out = tmp_path / "out"
    out.mkdir()
    for fmt in ("jsonl", "csv", "sqlite"):
        done = terminald("spool", "export", str(out / f"all.{fmt}"), "--format", fmt, config=config)
        assert done.returncode == 0 and "exported 3 records" in done.stdout, done.stdout + done.stderr
        assert listing(state) == before, fmt
    assert sorted(p.name for p in out.iterdir()) == ["all.csv", "all.jsonl", "all.sqlite"]


def test_after_a_crash_they_create_nothing_either(state: Path, tmp_path: Path) -> None:
    """The daemon was killed: its -wal (with commits not yet in spool.db) and -shm are still there.
    Read through them, never beside them; the file and its WAL stay as they are."""
    path = state / "spool.db"
    child = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from spool import Spool; from tests.spool.factory import TERMINAL_ID, make_request\n"
         "spool = Spool.open(sys.argv[1], TERMINAL_ID, background_check=False)\n"
         "spool.append(make_request('after-crash', 4000)); print('appended', flush=True); sys.stdin.read()",
         str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "appended"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    _as_the_daemons(state)
    before = listing(state)
    assert {"spool.db-wal", "spool.db-shm"} <= before.keys()
    config = _config(tmp_path, path)
    for args in READ_ONLY:
        done = terminald(*args, config=config)
        assert done.returncode == (1 if args[0] == "reconcile" else 0), (args, done.stdout, done.stderr)
        after = listing(state)
        assert after.keys() == before.keys(), args
        for name, (size, mtime, mode, uid, gid) in before.items():
            # The -shm is the readers' shared index: reading may update it in place, nothing else.
            if name != "spool.db-shm":
                assert after[name] == (size, mtime, mode, uid, gid), (args, name)
            assert after[name][2:] == (mode, uid, gid), (args, name)
    assert "4 records" in terminald("spool", "check", config=config).stdout  # the WAL's commit is read


def test_an_older_spool_is_not_migrated_by_a_read(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = state / "spool.db"
    conn = connect(path)
    migrate(conn, NAMESPACE, STEPS[:-1])
    conn.close()
    _as_the_daemons(state)
    before = listing(state)
    config = _config(tmp_path, path)
    for args in (("spool", "list"), ("spool", "check"), ("spool", "show", "1")):
        done = terminald(*args, config=config)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert "start terminald (it migrates the file when it opens it)" in " ".join(done.stdout.split()), done.stdout
        assert listing(state) == before, args
    check = connect(path, readonly=True)
    try:
        assert schema_version(check, NAMESPACE) == len(STEPS) - 1
    finally:
        check.close()
