"""A real network cut: central runs in a network namespace behind a veth pair; nftables drops its packets.

Needs root, `ip netns` and `nft`; skipped with the reason otherwise. Everything created here
(namespace, veth pair, nft table, simulator process) is removed in teardown.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from spool import Spool
from terminald.sim.central_store import CentralStore
from terminald.upload.uploader import Uploader
from tests.upload.helpers import TID, append, assert_exactly_once, make_config, until

REPO = Path(__file__).resolve().parents[2]


def _ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", "netns", "exec", ns, *args] if ns else list(args)
    subprocess.run(cmd, check=True, capture_output=True, timeout=10)


class NetNs:
    def __init__(self) -> None:
        n = os.getpid() % 100_000
        self.ns, self.host_if, self.peer_if = f"tdup{n}", f"tdh{n}", f"tdc{n}"
        octet = os.getpid() % 250 + 1
        self.host_ip, self.peer_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"

    def up(self) -> None:
        _ip("ip", "netns", "add", self.ns)
        _ip("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.peer_if)
        _ip("ip", "link", "set", self.peer_if, "netns", self.ns)
        _ip("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
        _ip("ip", "link", "set", self.host_if, "up")
        _ip("ip", "addr", "add", f"{self.peer_ip}/30", "dev", self.peer_if, ns=self.ns)
        _ip("ip", "link", "set", self.peer_if, "up", ns=self.ns)
        _ip("ip", "link", "set", "lo", "up", ns=self.ns)

    def cut(self) -> None:
        _ip("nft", "add", "table", "inet", "tdcut", ns=self.ns)
        _ip(
            "nft",
            "add",
            "chain",
            "inet",
            "tdcut",
            "in",
            "{ type filter hook input priority 0 ; policy drop ; }",
            ns=self.ns,
        )

    def restore(self) -> None:
        _ip("nft", "delete", "table", "inet", "tdcut", ns=self.ns)

    def down(self) -> None:
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[NetNs]:
    if os.geteuid() != 0:
        pytest.skip("needs root for ip netns / nftables")
    if not (shutil.which("ip") and shutil.which("nft")):
        pytest.skip("needs iproute2 (ip) and nftables (nft)")
    net = NetNs()
    try:
        net.up()
    except (subprocess.CalledProcessError, OSError) as exc:
        net.down()
        pytest.skip(f"network namespaces not permitted here: {exc}")
    try:
        yield net
    finally:
        net.down()


@pytest.mark.root
def test_network_cut_with_nftables(netns: NetNs, tmp_path: Path) -> None:
    db = tmp_path / "central.db"
    port = 18640
    sim = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            netns.ns,
            sys.executable,
            "-m",
            "terminald.sim.central",
            "--host",
            netns.peer_ip,
            "--port",
            str(port),
            "--db",
            str(db),
            "--latency-ms",
            "10",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://{netns.peer_ip}:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                httpx.get(f"{url}/v1/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or sim.poll() is not None:
                    raise AssertionError("central simulator did not come up in the namespace") from None
                time.sleep(0.1)
        spool = Spool.open(tmp_path / "spool.db", TID)
        append(spool, 1000)
        events: list[str] = []
        cfg = make_config(spool.path, url, upstream={"timeout_s": 0.5, "batch_size": 20})

        async def main() -> None:
            up = Uploader(
                spool,
                cfg,
                on_event=lambda n, d: events.append(n),
                retry_base_s=0.05,
                retry_cap_s=0.3,
                idle_probe_s=0.2,
            )
            await up.start()
            await until(lambda: spool.stats().pending < 700)
            netns.cut()
            await until(lambda: up.link.state == "offline")
            assert up.link.cause in ("timeout", "connection_lost")
            append(spool, 100)
            await asyncio.sleep(1.0)
            stalled = spool.stats().pending
            assert stalled > 100
            netns.restore()
            await until(lambda: spool.stats().pending == 0, timeout=60)
            assert up.link.state == "online"
            await up.stop()

        try:
            asyncio.run(main())
        finally:
            spool.close()
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
            sim.wait()
    store = CentralStore(db)
    try:
        records = store.records(TID)
    finally:
        store.close()
    spool = Spool.open(tmp_path / "spool.db", TID)
    try:
        assert len(records) == 1100
        assert_exactly_once(records, spool)
    finally:
        spool.close()
    assert events.count("upstream.offline") >= 1 and events.count("upstream.online") >= 2
