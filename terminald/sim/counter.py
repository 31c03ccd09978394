"""The demo's counter: the daemon as a child process, and a POS talking to it over HTTP."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from terminald.sim.ports import free_port

TERMINAL = "T0001"


class DemoFailed(Exception):
    """A step did not do what the day needs: the demo says which and exits 1."""


class Counter:
    """The daemon as a child process, and a POS talking to it."""

    def __init__(self, work: Path, central_url: str, printer_uri: str, use_cards: bool, *,
                 protocol: str = "v1", extra_config: str = "") -> None:
        """`protocol`: upstream.protocol; `extra_config`: TOML tables appended to the config
        (the [nhsa] institution of the platform demo)."""
        self.work = work
        self.protocol = protocol
        self.extra_config = extra_config
        self.state = work / "state"
        self.central_url = central_url
        self.printer_uri = printer_uri
        self.use_cards = use_cards
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = work / "terminald.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http: httpx.Client | None = None

    def config(self, downtime: tuple[datetime, datetime] | None) -> str:
        text = (f'[terminal]\nid = "{TERMINAL}"\ninstitution_name = "示例大药房(演示)"\n'
                f'[api]\nlisten = "127.0.0.1:{self.port}"\n'
                f'[upstream]\nurl = "{self.central_url}"\nwait_s = 3\n'
                + (f'protocol = "{self.protocol}"\n' if self.protocol != "v1" else "") +
                f'[offline]\nmax_tx_fen = 200000\nrequire_card_present = {str(self.use_cards).lower()}\n'
                f'[[printers]]\nname = "receipt"\nuri = "{self.printer_uri}"\ncolumns = 42\n'
                + self.extra_config)
        if downtime:
            text += (f'[[downtime]]\nstart = {downtime[0].isoformat(timespec="seconds")}\n'
                     f'end = {downtime[1].isoformat(timespec="seconds")}\nreason = "切换国家医保信息平台"\n')
        return text

    def start(self, downtime: tuple[datetime, datetime] | None = None) -> None:
        cfg = self.work / "terminald.toml"
        cfg.write_text(self.config(downtime), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TERMINALD_")}
        env.update(STATE_DIRECTORY=str(self.state), TERMINALD_CONFIG=str(cfg))
        env.pop("NOTIFY_SOCKET", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "terminald.cli", "serve"], env=env,
                                         stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise DemoFailed(f"terminald exited with {self.proc.returncode}; see {self.log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/v1/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise DemoFailed("terminald did not answer /v1/health within 30 s")
            time.sleep(0.05)
        token = (self.state / "api-token").read_text().strip()
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=40)

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        if self.http:
            self.http.close()

    def stop(self) -> None:
        if self.http:
            self.http.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    # --- the POS side ---------------------------------------------------------------------------
    def api(self) -> httpx.Client:
        assert self.http is not None
        return self.http

    def status(self) -> dict[str, Any]:
        return self.api().get("/v1/status").json()  # type: ignore[no-any-return]

    def sell(self, key: str, basket: list[dict[str, Any]], card: dict[str, Any], wait: float = 3) -> httpx.Response:
        body = {"kind": "settlement", **card, "items": basket,
                "total_fen": sum(i["amount_fen"] for i in basket),
                "operator": {"id": "op7", "name": "王芳"}, "meta": {"pos_order_id": key}}
        return self.api().post(f"/v1/transactions?wait={wait}", json=body, headers={"Idempotency-Key": key})

    def print_receipt(self, tx_id: str, document: str = "receipt") -> str:
        r = self.api().post(f"/v1/transactions/{tx_id}/receipt", json={"document": document})
        expect(r, 202, "print the receipt")
        job_id: str = r.json()["job_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            state = self.api().get(f"/v1/print-jobs/{job_id}").json()["state"]
            if state in ("done", "failed", "unknown"):
                if state != "done":
                    raise DemoFailed(f"print job {job_id} ended {state}")
                return job_id
            time.sleep(0.1)
        raise DemoFailed(f"print job {job_id} did not finish")

    def save_png(self, tx_id: str, name: str, document: str = "receipt") -> Path:
        r = self.api().get(f"/v1/transactions/{tx_id}/receipt.png", params={"document": document})
        expect(r, 200, "render the receipt preview")
        path = self.work / "receipts" / f"{name}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(r.content)
        return path

    def wait_for(self, what: str, check: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out waiting for {what}")
            time.sleep(0.1)


def expect(r: httpx.Response, status: int, what: str) -> dict[str, Any]:
    if r.status_code != status:
        raise DemoFailed(f"{what}: expected HTTP {status}, got {r.status_code}: {r.text[:300]}")
    return r.json() if r.headers.get("content-type", "").endswith("json") else {}
