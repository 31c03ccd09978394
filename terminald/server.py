"""`terminald serve`: listen, tell systemd we are ready, keep the watchdog fed.

The listening sockets are bound here, before uvicorn starts, so that the
Unix socket gets its permissions and TCP gets TCP_NODELAY (accepted sockets
inherit it on Linux; without it a keep-alive answer waits for the client's
delayed ACK). READY=1 goes out only after the spool is open and the API
listens. The watchdog is fed only while the event loop turns and the spool's
writer commits (see `_ready_and_watchdog`): a wedged daemon gets restarted by
systemd.

The daemon holds the spool's lock (spool/lock.py) from before the spool opens
until the process ends, so that `terminald spool drain` refuses to race it.

Everything the daemon creates is private (umask 0077: the spool and, through
SQLite, its -wal and -shm are 0600), except what the API group must reach:
the token files (0640) and the Unix socket (0660), both given to `api.group`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gc
import logging
import os
import socket
import stat
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from spool import Spool, SpoolCorrupt
from spool.lock import SpoolLock, SpoolLocked
from terminald.app import build
from terminald.config import Config
from terminald.errors import ConfigError
from terminald.notify import notify, watchdog_interval_s
from terminald.security import api_group_id

log = logging.getLogger("terminald")

EXECUTOR_THREADS = 32
# How the daemon names itself in the spool's lock file (what `spool drain` tells the user).
LOCK_HOLDER = "terminald serve"
# Whatever the caller's umask (systemd's UMask=, a shell's 0022), the daemon's files are its own.
UMASK = 0o077


def _tcp_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def _unix_socket(path: str, group: str = "") -> socket.socket:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(target.lstat().st_mode):
            target.unlink()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)  # made 0700 by the umask: nobody connects before it is chmod-ed below
    gid = api_group_id(group)
    if gid is not None and gid != os.getegid():
        try:
            os.chown(path, -1, gid)
        except PermissionError:
            log.warning("cannot give the socket %s to group %s (this user is not a member): "
                        "members of that group cannot connect", path, group)
    os.chmod(path, 0o660)  # owner and the API group (the POS user joins it), nobody else
    sock.listen(128)
    sock.setblocking(False)
    return sock


def sockets_for(cfg: Config) -> list[socket.socket]:
    sockets = []
    if cfg.api.listen:
        sockets.append(_tcp_socket(cfg.api.host, cfg.api.port))
    if cfg.api.unix_socket:
        sockets.append(_unix_socket(cfg.api.unix_socket, cfg.api.group))
    if not sockets:
        raise SystemExit("api.listen and api.unix_socket are both empty: nothing to serve on")
    return sockets


async def _ready_and_watchdog(server: uvicorn.Server, probe: Callable[[], None]) -> None:
    """READY=1 once serving; then WATCHDOG=1 each interval (half of WatchdogSec), but only after
    `probe` (a write through the spool's writer thread, run in a worker thread) came back.

    The ping is sent from the event loop, so a loop that does not turn sends none; and it waits
    for the probe, which waits behind whatever the writer is doing: a commit hung in fsync, a
    write lock held elsewhere, a dead writer thread all stop the pings until they end. A probe
    still running at the next interval is not started twice: the daemon waits for that one.
    """
    while not server.started:
        if server.should_exit:
            return
        await asyncio.sleep(0.01)
    # Everything loaded at start-up lives as long as the process: moving it out of the
    # collector's sight keeps full collections (tail-latency spikes under load) short.
    gc.collect()
    gc.freeze()
    notify("READY=1\nSTATUS=serving")
    interval = watchdog_interval_s()
    if interval is None:
        return
    probing: asyncio.Future[None] | None = None
    since = time.monotonic()
    try:
        while not server.should_exit:
            if probing is None:
                probing, since = asyncio.ensure_future(asyncio.to_thread(probe)), time.monotonic()
            await asyncio.wait({probing}, timeout=interval)
            if not probing.done():
                log.error("watchdog: the spool writer has not committed for %.0f s; not feeding the watchdog",
                          time.monotonic() - since)
            else:
                error = probing.exception()
                probing = None
                if error is None:
                    notify("WATCHDOG=1")
                else:
                    log.error("watchdog: the spool writer failed (%s: %s); not feeding the watchdog",
                              type(error).__name__, error)
            await asyncio.sleep(interval)
    finally:
        if probing is not None:
            probing.cancel()


def writer_probe(spool: Spool) -> None:
    """Commit an empty write through `spool`'s writer thread (waiting for it: the watchdog's proof).

    It takes the file's write lock and commits behind every job queued before it. A spool found
    corrupt refuses writes on purpose (the status page says why, sales get 503): the refusal
    comes from the writer thread, so it proves the thread turns, and a read must still work.
    """
    try:
        spool.write(_nothing)
    except SpoolCorrupt:
        spool.stats()


def _nothing(conn: object) -> None:
    return None


class _Server(uvicorn.Server):
    """uvicorn's server, cleaning up in `shutdown`: after a signal, uvicorn re-raises it once
    `serve` returns (the process then ends with it), so code after `serve` never runs."""

    def __init__(self, config: uvicorn.Config, unix_paths: list[str], stopping: asyncio.Event) -> None:
        super().__init__(config)
        self.unix_paths = unix_paths
        self.stopping = stopping

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.announce_stop()
        try:
            await super().shutdown(sockets)
        finally:
            self.remove_unix_sockets()

    def announce_stop(self) -> None:
        notify("STOPPING=1")
        self.stopping.set()

    def remove_unix_sockets(self) -> None:
        for path in self.unix_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)


async def serve_async(cfg: Config, sockets: list[socket.socket] | None = None) -> None:
    # Blocking calls (spool reads and state changes, card reads waiting for a card, printing)
    # run in the default executor; with its stock size (cores + 4), two slow card reads and a
    # few status pages would keep the spool's callers waiting. Appends need no thread: see
    # terminald/appender.py.
    asyncio.get_running_loop().set_default_executor(
        concurrent.futures.ThreadPoolExecutor(max_workers=EXECUTOR_THREADS, thread_name_prefix="io"))
    os.umask(UMASK)
    try:
        daemon, app = build(cfg)
    except ConfigError as exc:
        raise SystemExit(f"terminald: {exc.detail}") from exc
    try:
        lock = SpoolLock.acquire(cfg.spool_path, LOCK_HOLDER)
    except SpoolLocked as exc:
        what = "another terminald serves this spool" if exc.holder == LOCK_HOLDER else "wait for it to finish"
        raise SystemExit(f"terminald: {exc}: {what}") from exc
    sockets = sockets if sockets is not None else sockets_for(cfg)
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=10, server_header=False)

    def spool_probe() -> None:
        assert daemon.spool is not None
        writer_probe(daemon.spool)

    # Named now: uvicorn closes the sockets on shutdown, and a closed one no longer has a name.
    unix_paths = [str(sock.getsockname()) for sock in sockets if sock.family == socket.AF_UNIX]
    server = _Server(config, unix_paths, daemon.stopping)
    helper = asyncio.create_task(_ready_and_watchdog(server, spool_probe))
    try:
        await server.serve(sockets=sockets)
    finally:
        # Reached when serving ends without a signal (a start-up failure): the same clean-up.
        server.announce_stop()
        helper.cancel()
        server.remove_unix_sockets()
        lock.release()  # after a signal it is never reached: the lock goes with the process
    if not server.started:
        raise SystemExit(1)


def serve(cfg: Config) -> None:
    asyncio.run(serve_async(cfg))
