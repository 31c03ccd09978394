"""The shared `daemon_proc` fixture: a real process, its own state, kill and restart by pid."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable

import httpx

from tests.fixtures.daemon import DaemonProcess
from tests.ops._helpers import post_transaction, settlement


def test_start_kill_restart_keeps_state_token_and_port(daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc("[offline]\nrequire_card_present = false\n",
                    env={"TERMINALD_TERMINAL__INSTITUTION_NAME": "夜间药房"})
    assert d.state_dir.is_dir() and (d.state_dir / "spool.db").exists()
    with d.client() as api:
        status = api.get("/v1/status").json()
        assert status["institution_name"] == "夜间药房"  # extra env reaches the daemon
        created = post_transaction(api, settlement(), wait=0)
        assert created.status_code == 202
    first_pid, token, url = d.pid, d.token, d.url

    assert d.kill(signal.SIGKILL) == -signal.SIGKILL
    try:
        os.kill(first_pid, 0)
        raise AssertionError("the killed daemon is still there")
    except ProcessLookupError:
        pass
    d.restart()
    assert d.pid != first_pid and d.token == token and d.url == url
    with d.client() as api:
        again = api.get(f"/v1/transactions/{created.json()['id']}")
        assert again.status_code == 200 and again.json()["status"] == "pending"
    assert "Started server process" in d.stderr_text()


def test_sigterm_is_a_clean_stop(daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc()
    # uvicorn re-raises SIGTERM after its graceful shutdown; systemd counts that as a clean exit.
    assert d.stop() in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in d.stderr_text()
    try:
        httpx.get(d.url + "/v1/health", timeout=1)
        raise AssertionError("still answering after stop")
    except httpx.TransportError:
        pass


def test_a_bad_config_is_reported_with_its_message(daemon_proc: Callable[..., DaemonProcess]) -> None:
    from tests.fixtures.daemon import DaemonStartError

    try:
        daemon_proc("[api]\nlisten_typo = 1\n")
        raise AssertionError("a bad key must stop the daemon")
    except DaemonStartError as exc:
        assert "listen_typo" in str(exc)
