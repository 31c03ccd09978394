"""Shared steps of the daemon-with-a-mirror tests: the config, sales through the API, reading
/v1/status's mirror section, the event log, and the mirror against the daemon's spool."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import httpx

from spool import Spool
from tests.api.helpers import post_tx, sale
from tests.fixtures.daemon import DaemonProcess
from tests.fixtures.postgres import PgPair
from tests.mirror.helpers import TID, assert_mirror_equals_spool, mirrored_rows
from tests.waiting import wait_for

__all__ = ["TID", "config", "copier_processes", "events_named", "mirror_of", "pg_connections", "sell", "spool_of",
           "wait_caught_up", "wait_equal"]


def config(dsn: str, *, lag_alarm_s: float = 300, upstream_url: str = "") -> str:
    """A daemon mirroring to ``dsn``; typed cards allowed offline, no offline ceiling in the way."""
    upstream = f'[upstream]\nurl = "{upstream_url}"\nwait_s = 0\n' if upstream_url else ""
    return (f'[terminal]\nid = "{TID}"\n{upstream}'
            "[offline]\nrequire_card_present = false\nmax_total_fen = 1000000000000\n"
            # A short reconnect bound: a test outage of seconds must not leave a 30 s backoff behind.
            f'[mirror]\ndsn = "{dsn}"\nlag_alarm_s = {lag_alarm_s}\nretry_max_s = 0.3\n')


def sell(api: httpx.Client, count: int, prefix: str = "s") -> list[int]:
    """``count`` sales, one after another, not waiting for central; their seqs."""
    seqs = []
    for i in range(count):
        r = post_tx(api, sale(items=[{"code": "XA01", "name": "阿莫西林胶囊", "qty": 1, "unit_price_fen": 100 + i,
                                      "amount_fen": 100 + i}]), f"{prefix}-{i}-{uuid.uuid4()}", wait=0)
        assert r.status_code in (201, 202), r.text
        seqs.append(int(r.json()["seq"]))
    return seqs


def mirror_of(api: httpx.Client) -> dict[str, Any]:
    r = api.get("/v1/status")
    assert r.status_code == 200, r.text
    section: dict[str, Any] = r.json()["mirror"]
    return section


def wait_caught_up(api: httpx.Client, seq: int, timeout_s: float = 30) -> dict[str, Any]:
    """Until /v1/status says the mirror holds everything up to ``seq`` and nothing waits."""
    def done() -> dict[str, Any] | None:
        m = mirror_of(api)
        ok = m["mirrored_seq"] == m["spool_seq"] == seq and m["unmirrored"] == 0 and m["lag_s"] == 0
        return m if ok else None

    found: dict[str, Any] = wait_for(done, timeout_s, f"the mirror to reach seq {seq}", 0.05)
    return found


def spool_of(daemon: DaemonProcess) -> Spool:
    return Spool.open_readonly(daemon.state_dir / "spool.db", TID)


def wait_equal(pair: PgPair, dbname: str, daemon: DaemonProcess, timeout_s: float = 30) -> int:
    """Until the mirror equals the daemon's spool (records, order, hashes, statuses); how many."""
    last: list[BaseException] = []

    def equal() -> int:
        spool = spool_of(daemon)
        try:
            return assert_mirror_equals_spool(pair, dbname, spool)
        except AssertionError as exc:
            last[:] = [exc]
            return 0
        finally:
            spool.close()

    try:
        count: int = wait_for(equal, timeout_s, "the mirror to equal the spool", 0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {last[0] if last else ''}") from None
    rows = mirrored_rows(pair, dbname, TID)
    assert len(rows) == len({row[0] for row in rows}) == count  # nothing twice
    return count


def events_named(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    """The stored events called ``name``, oldest first (the daemon writes them within ms)."""
    conn = sqlite3.connect(f"file:{Path(daemon.state_dir / 'spool.db')}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT data FROM events WHERE name = ? ORDER BY id", (name,)).fetchall()
    finally:
        conn.close()
    return [json.loads(row[0]) for row in rows]


def copier_processes(daemon_pid: int) -> list[int]:
    """Live copier processes started by the daemon ``daemon_pid`` (alive or not: a child outliving
    its daemon keeps ``--parent`` in its command line). A zombie has none and is not counted."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        if b"terminald.mirror.child" in argv and b"--parent" in argv and str(daemon_pid).encode() in argv:
            found.append(int(entry.name))
    return found


def pg_connections(pid: int, port: int) -> int:
    """TCP connections of process ``pid`` to ``port`` on this machine (its fds against /proc/net/tcp)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table, encoding="ascii") as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
                    count += 1
    return count
