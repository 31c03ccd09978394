"""A real PostgreSQL primary with a real synchronous standby, started for the tests
(tests/fixtures/postgres.py), the demo (`terminald demo --mirror`) and bench/mirror.py.

Each pair lives in a temp directory of its own: ``initdb`` for the primary (``synchronous_commit
= on``, ``synchronous_standby_names`` naming the standby), ``pg_basebackup -R`` for the standby,
both listening on 127.0.0.1 only, on free ports. The server refuses to run as root, so as root
(CI) every server program runs as the ``postgres`` user (``runuser``); as anyone else, as that
user. Readiness is polled (``pg_ctl -w``, then the primary's ``pg_stat_replication`` until the
standby is ``sync``), never slept for. Teardown stops only the postmasters this fixture started,
by the pid in their ``postmaster.pid``, whatever the test did.

Where PostgreSQL is not installed, or cannot run here, `pg_unavailable_reason()` says why: the
tests skip with it, the demo plays its day without the mirror.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from terminald.sim.waiting import wait_for

__all__ = ["PgNode", "PgPair", "find_pg_bindir", "pg_unavailable_reason", "start_pair"]


STANDBY_NAME = "standby1"
START_TIMEOUT_S = 30


def find_pg_bindir() -> Path | None:
    """The server's bin directory: `pg_config --bindir` if it has initdb, else the newest Debian one."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            done = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=False)
            candidates.append(done.stdout.strip())
    # Debian: one directory per major version; the newest first.
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
                         reverse=True)
    for candidate in candidates:
        if candidate and all((Path(candidate) / name).is_file() for name in ("initdb", "pg_ctl", "pg_basebackup")):
            return Path(candidate)
    return None


def pg_unavailable_reason() -> str | None:
    """Why a PostgreSQL pair cannot be started here, or None."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install 'psycopg[binary]')"
    if find_pg_bindir() is None:
        return "PostgreSQL server binaries not found (install the Debian package postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no postgres user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing (util-linux)"
    return None


def _free_port() -> int:
    # Bound then released: another process could take it before the server does, so a start
    # that fails to bind is retried on another port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgNode:
    """One server of a pair: its data directory, port and log."""

    name: str
    datadir: Path
    port: int
    log: Path

    def pid(self) -> int | None:
        """The postmaster's pid from postmaster.pid, if that process still runs."""
        try:
            pid = int((self.datadir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class PgPair:
    """A primary and its synchronous standby, in one temp directory.

    ``dsn()`` names both servers, primary first, with ``target_session_attrs=read-write``:
    what a terminal's config holds, so a promoted standby is followed.
    """

    bindir: Path
    root: Path
    primary: PgNode
    standby: PgNode
    run_as: str | None
    started: list[PgNode] = field(default_factory=list)

    # -- connection strings -------------------------------------------------------------------------
    def dsn(self, dbname: str = "postgres", user: str = "postgres", **extra: str) -> str:
        params = {"host": "127.0.0.1,127.0.0.1", "port": f"{self.primary.port},{self.standby.port}",
                  "dbname": dbname, "user": user, "target_session_attrs": "read-write",
                  "connect_timeout": "3", **extra}
        return " ".join(f"{key}={value}" for key, value in params.items())

    def node_dsn(self, node: PgNode, dbname: str = "postgres", user: str = "postgres") -> str:
        return f"host=127.0.0.1 port={node.port} dbname={dbname} user={user} connect_timeout=3"

    def admin(self, dbname: str = "postgres") -> Any:
        """A sync autocommit connection as the superuser to whichever node is the primary now."""
        import psycopg

        return psycopg.connect(self.dsn(dbname), autocommit=True)

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    # -- running the server programs ----------------------------------------------------------------
    def _run(self, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / program), *args]
        if self.run_as:
            command = [shutil.which("runuser") or "/usr/sbin/runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=self.root, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"})

    def start(self, node: PgNode) -> None:
        """Start ``node`` and wait until it accepts connections (pg_ctl -w polls postmaster.pid)."""
        for attempt in range(3):
            done = self._run("pg_ctl", "start", "-w", "-t", str(START_TIMEOUT_S), "-D", str(node.datadir),
                             "-l", str(node.log), "-o", f"-p {node.port}")
            if node not in self.started:
                self.started.append(node)
            if done.returncode == 0:
                return
            if "could not bind" in node.log_tail() and attempt < 2:
                node.port = _free_port()  # taken between _free_port and the bind: try another
                continue
            raise RuntimeError(f"pg_ctl start of the {node.name} failed: {done.stderr.strip()}\n{node.log_tail()}")

    def stop(self, node: PgNode, mode: str = "fast") -> None:
        """Stop ``node`` through its postmaster's pid (SIGINT: fast, SIGQUIT: immediate) and wait.

        Not SIGTERM: that is the "smart" shutdown, which waits for every client to leave.
        """
        pid = node.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGINT if mode == "fast" else signal.SIGQUIT)
        if not _wait_gone(pid, 20):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, 10)

    def kill9(self, node: PgNode) -> None:
        """A crash: SIGKILL the postmaster and every process it started, at once, then wait."""
        pid = node.pid()
        if pid is None:
            return
        victims = [pid, *_children(pid)]
        for victim in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        for victim in victims:
            _wait_gone(victim, 10)

    def promote_standby(self) -> None:
        """`pg_ctl promote` and wait until the standby takes writes: what Patroni/repmgr do on failover."""
        done = self._run("pg_ctl", "promote", "-w", "-t", str(START_TIMEOUT_S), "-D", str(self.standby.datadir))
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl promote failed: {done.stderr.strip()}\n{self.standby.log_tail()}")
        import psycopg

        def writable() -> bool:
            try:
                with psycopg.connect(self.node_dsn(self.standby), autocommit=True) as conn:
                    row = conn.execute("SELECT pg_is_in_recovery()").fetchone()
                    return row is not None and row[0] is False
            except psycopg.OperationalError:
                return False

        wait_for(writable, START_TIMEOUT_S, "the promoted standby to take writes", 0.05)

    def wait_sync(self) -> None:
        """Until the primary reports the standby streaming as its synchronous standby."""
        import psycopg

        def synced() -> bool:
            try:
                with psycopg.connect(self.node_dsn(self.primary), autocommit=True) as conn:
                    row = conn.execute("SELECT sync_state FROM pg_stat_replication WHERE application_name = %s",
                                       (STANDBY_NAME,)).fetchone()
                    return row is not None and row[0] == "sync"
            except psycopg.OperationalError:
                return False

        wait_for(synced, START_TIMEOUT_S, "the standby to stream as the synchronous standby", 0.05)

    def close(self) -> None:
        """Stop what this pair started (immediate shutdown: the data is thrown away) and delete it."""
        for node in self.started:
            with contextlib.suppress(OSError):
                self.stop(node, mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def _alive(pid: int) -> bool:
    """Running: a zombie (dead, waiting for whoever reaps orphans here) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The ppid is the second field after the parenthesised command name.
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


_PRIMARY_CONF = f"""
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
wal_level = replica
max_wal_senders = 4
hot_standby = on
# The standby's: reconnect to a restarted primary at once, not after the default 5 s (until it
# does, every commit on the primary waits for it).
wal_retrieve_retry_interval = '100ms'
synchronous_commit = on
synchronous_standby_names = 'FIRST 1 ({STANDBY_NAME})'
# Test servers: small, and no fsync (a kill -9 of the server keeps the page cache; only a
# machine crash would not, and the tests crash processes, not machines).
fsync = off
shared_buffers = 16MB
max_connections = 40
logging_collector = off
log_min_messages = warning
"""


def start_pair(base: Path | None = None) -> PgPair:
    """initdb, configure, start the primary, pg_basebackup -R the standby, start it, wait for sync."""
    bindir = find_pg_bindir()
    if bindir is None:
        raise RuntimeError("PostgreSQL server binaries not found")
    run_as = "postgres" if os.geteuid() == 0 else None
    # The system temp directory, not pytest's (0700, root's): the server's user must reach it.
    root = Path(tempfile.mkdtemp(prefix="terminald-pg-", dir=base))
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    primary = PgNode("primary", root / "primary", _free_port(), root / "primary.log")
    standby = PgNode("standby", root / "standby", _free_port(), root / "standby.log")
    pair = PgPair(bindir=bindir, root=root, primary=primary, standby=standby, run_as=run_as)
    try:
        done = pair._run("initdb", "-D", str(primary.datadir), "-U", "postgres", "-A", "trust", "--no-sync",
                         "-E", "UTF8", "--locale=C.UTF-8")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip()}")
        with (primary.datadir / "postgresql.conf").open("a") as conf:
            conf.write(_PRIMARY_CONF)
        with (primary.datadir / "pg_hba.conf").open("a") as hba:
            hba.write("host replication all 127.0.0.1/32 trust\n")
        pair.start(primary)
        done = pair._run("pg_basebackup", "-D", str(standby.datadir), "-R", "-X", "stream", "--no-sync",
                         "-d", f"host=127.0.0.1 port={primary.port} user=postgres application_name={STANDBY_NAME}")
        if done.returncode != 0:
            raise RuntimeError(f"pg_basebackup failed: {done.stderr.strip()}")
        # Once promoted, the standby is a primary with no standby of its own: it must not wait
        # for one (a failover tool such as Patroni sets this on promotion).
        with (standby.datadir / "postgresql.auto.conf").open("a") as conf:
            conf.write("synchronous_standby_names = ''\n")
        pair.start(standby)
        pair.wait_sync()
    except BaseException:
        pair.close()
        raise
    return pair
