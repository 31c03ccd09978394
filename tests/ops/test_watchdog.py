"""The systemd watchdog, as systemd sees it: a real `terminald serve` with NOTIFY_SOCKET and
WATCHDOG_USEC, the notifications read from a datagram socket of the test's own.

The pings prove that the spool's writer commits: while another process holds the file's write
lock (the writer waits for it in SQLite's busy handler, as it would on a hung fsync), no
WATCHDOG=1 goes out; once the lock is released, the pings come back.
"""

from __future__ import annotations

import itertools
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for

WATCHDOG_USEC = 2_000_000  # WatchdogSec=2s: the daemon pings every second
INTERVAL_S = WATCHDOG_USEC / 1_000_000 / 2


class NotifySocket:
    """Where the daemon sends its sd_notify datagrams; keeps each with the time it came."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._closing = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closing:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def pings(self, after: float = 0.0) -> list[float]:
        return [at for at, text in list(self.messages) if "WATCHDOG=1" in text.split("\n") and at > after]

    def close(self) -> None:
        self._closing = True
        self._thread.join(5)
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    found = NotifySocket(tmp_path / "notify.sock")
    try:
        yield found
    finally:
        found.close()


def test_pings_stop_while_the_writer_cannot_commit_and_resume_after(
        daemon_proc: Callable[..., DaemonProcess], notify_socket: NotifySocket) -> None:
    d = daemon_proc(config="[offline]\nrequire_card_present = false\n",
                    env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": str(WATCHDOG_USEC)})
    wait_for(lambda: any("READY=1" in text for _, text in notify_socket.messages), what="READY=1")
    wait_for(lambda: len(notify_socket.pings()) >= 3, timeout_s=30, what="three WATCHDOG=1 pings")
    first = notify_socket.pings()
    assert all(b - a < 3 * INTERVAL_S + 1 for a, b in itertools.pairwise(first)), first

    # Wedge the writer: another process takes the write lock and keeps it. The daemon's writer
    # then waits for it (busy_timeout, 10 s) in the probe the watchdog queued.
    holder = sqlite3.connect(d.state_dir / "spool.db", isolation_level=None, timeout=30)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        locked_at = time.monotonic()
        # A probe that was already committing may still land: one ping, right after.
        grace = locked_at + INTERVAL_S + 0.5
        # Twice WatchdogSec without a ping (systemd would have restarted the daemon long
        # before), and the daemon saying why: its writer has not committed.
        quiet_until = grace + 2 * WATCHDOG_USEC / 1_000_000
        wait_for(lambda: time.monotonic() > quiet_until and _stalled_for(d.stderr_text()), timeout_s=30,
                 what="twice WatchdogSec, and the daemon reporting its writer stuck")
        assert notify_socket.pings(after=grace) == [], "WATCHDOG=1 while the writer could not commit"
        assert d.returncode is None
        # The API still answers: the loop turns, it is the writer that does not commit.
        assert d.client().get("/v1/health").status_code == 200
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    released = time.monotonic()
    wait_for(lambda: notify_socket.pings(after=released), timeout_s=20, what="the pings to come back")
    wait_for(lambda: len(notify_socket.pings(after=released)) >= 2, timeout_s=20, what="pings going on")
    # And nothing was lost meanwhile: sales go through again.
    r = d.client().post("/v1/transactions", params={"wait": 0}, headers={"Idempotency-Key": "after-wedge"},
                        json=_sale())
    assert r.status_code in (201, 202), r.text


def _stalled_for(log: str) -> list[str]:
    return re.findall(r"watchdog: the spool writer has not committed for (\d+) s", log)


def _sale() -> dict[str, object]:
    return {"kind": "settlement", "total_fen": 2500, "operator": {"id": "op7", "name": "王芳"},
            "items": [{"code": "XA01", "name": "阿莫西林胶囊", "qty": 2, "unit_price_fen": 1250, "amount_fen": 2500}],
            "card": {"card_number": "A10000001", "ssn": "110101199001011234", "name": "张三",
                     "issuer_code": "110100000001"}}
