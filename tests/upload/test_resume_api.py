"""Clearing a halt without a restart, through the real daemon: `POST /v1/upstream/resume` and
`terminald upstream resume`, logged with who and why."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx

from terminald.sim.central import CentralSim
from tests.api.helpers import assert_problem, post_tx, sale
from tests.api.sse import EventStream
from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for


def _halted_daemon(daemon_proc: Callable[..., DaemonProcess], central_sim: CentralSim) -> DaemonProcess:
    """A daemon whose first look at central's cursor finds another history: halted, chain_forked."""
    central_sim.control(fork_cursor=True)
    d = daemon_proc(f'[upstream]\nurl = "{central_sim.url}"\ntimeout_s = 2\n'
                    '[offline]\nrequire_card_present = false\n')
    with d.client() as api:
        wait_for(lambda: api.get("/v1/status").json()["upstream"]["halted"], 20, "the halt")
    return d


def _upstream(api: httpx.Client) -> dict[str, Any]:
    upstream: dict[str, Any] = api.get("/v1/status").json()["upstream"]
    return upstream


def test_resume_through_the_api(daemon_proc: Callable[..., DaemonProcess], central_sim: CentralSim) -> None:
    d = _halted_daemon(daemon_proc, central_sim)
    api = d.client()
    [alarm] = _upstream(api)["alarms"]
    assert alarm["code"] == "chain_forked"
    assert "terminald upstream resume --reason" in alarm["message"] and "POST /v1/upstream/resume" in alarm["message"]
    sold = post_tx(api, sale(), "resume-api-1", wait=0)
    assert sold.status_code == 202, sold.text  # halted: pending, paid in full
    tx_id = sold.json()["id"]

    with EventStream(d, since=0) as stream:
        anonymous = httpx.post(d.url + "/v1/upstream/resume", json={"operator": "x", "reason": "y"})
        assert_problem(anonymous, 401, "unauthorized")
        assert_problem(api.post("/v1/upstream/resume", json={"reason": "no operator"}), 422, "validation_failed")
        assert_problem(api.post("/v1/upstream/resume", json={"operator": "ops-li", "reason": "x\u0007"}), 422,
                       "validation_failed")
        # Not fixed yet: the cursor is checked first and the same halt comes back.
        again = api.post("/v1/upstream/resume", json={"operator": "ops-li", "reason": "first try"})
        assert again.status_code == 200, again.text
        assert again.json()["halted"] and [a["code"] for a in again.json()["alarms"]] == ["chain_forked"]
        assert central_sim.requests["records"] == 0

        central_sim.control(fork_cursor=False)
        fixed = api.post("/v1/upstream/resume", json={"operator": "ops-li", "reason": "central fixed ticket-4711"})
        assert fixed.status_code == 200, fixed.text
        body = fixed.json()
        assert not body["halted"] and body["alarms"] == [] and body["url_configured"] is True
        wait_for(lambda: api.get(f"/v1/transactions/{tx_id}").json()["status"] == "settled", 20, "the backlog")
        assert _upstream(api)["state"] == "online"
        stream.wait_for("transaction.settled")
        resumed = [e.data for e in stream.events if e.name == "upstream.resumed"]
    assert [(r["operator"], r["reason"], r["halt"]) for r in resumed] == [
        ("ops-li", "first try", ["chain_forked"]),
        ("ops-li", "central fixed ticket-4711", ["chain_forked"]),
    ]
    assert_problem(api.post("/v1/upstream/resume", json={"operator": "ops-li", "reason": "again"}), 409,
                   "not_halted")
    log = d.stderr_text()
    assert "uploading resumed by ops-li after chain_forked: central fixed ticket-4711" in log
    assert "WARNING" in next(line for line in log.splitlines() if "uploading resumed by ops-li" in line)


def test_resume_from_the_command_line(daemon_proc: Callable[..., DaemonProcess], central_sim: CentralSim) -> None:
    d = _halted_daemon(daemon_proc, central_sim)

    def resume(*extra: str) -> subprocess.CompletedProcess[str]:
        args = ["upstream", "resume", "--config", str(d.config_path), *extra]
        return subprocess.run([sys.executable, "-m", "terminald.cli", *args], capture_output=True, text=True,
                              env=d.env, timeout=60, check=False)

    not_fixed = resume("--reason", "before the fix", "--operator", "ops-wang")
    assert not_fixed.returncode == 1 and "halted again" in not_fixed.stdout, not_fixed
    assert "chain_forked" in not_fixed.stdout
    central_sim.control(fork_cursor=False)
    done = resume("--reason", "central restored")  # operator: the login name
    assert done.returncode == 0 and "resumed by" in done.stdout, done
    with d.client() as api:
        wait_for(lambda: _upstream(api)["state"] == "online", 20, "online")
    nothing = resume("--reason", "once more", "--operator", "ops-wang")
    assert nothing.returncode == 1 and "not_halted" in nothing.stdout, nothing
    log = d.stderr_text()
    assert "uploading resumed by ops-wang after chain_forked: before the fix" in log
    assert "central restored" in log
