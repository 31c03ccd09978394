"""Access control: bearer tokens (the POS's and the status page's read-only one, rotated without a
restart), Host allow-list, Origin allow-list and CORS, body size, Unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from terminald.privacy import mask_card
from terminald.security import AccessControl
from terminald.sim.central import CentralSim
from tests.api.helpers import TYPED_CARD, assert_problem, central_config, post_tx, revoke, sale
from tests.fixtures.daemon import DaemonProcess
from tests.waiting import wait_for

MiB = 1024 * 1024
ALLOWED_ORIGIN = "http://pos.example.test:8080"


@pytest.fixture
def daemon(daemon_proc: Callable[..., DaemonProcess]) -> DaemonProcess:
    return daemon_proc(config=f'[api]\nallowed_origins = ["{ALLOWED_ORIGIN}/"]\n')


@pytest.fixture
def anon(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    """A client without the token."""
    with httpx.Client(base_url=daemon.url, timeout=30) as client:
        yield client


def test_token_file_created_0640_and_kept(daemon: DaemonProcess) -> None:
    mode = stat.S_IMODE(daemon.token_path.stat().st_mode)
    assert mode == 0o640, oct(mode)
    assert len(daemon.token) >= 32
    token = daemon.token
    daemon.restart()
    assert daemon.token == token


def test_token_file_from_config(daemon_proc: Callable[..., DaemonProcess], tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "api-token"
    d = daemon_proc(config=f'[api]\ntoken_file = "{path}"\n')
    assert d.token_path == path and path.read_text().strip() == d.token
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert d.client().get("/v1/status").status_code == 200


def test_public_paths_need_no_token(anon: httpx.Client) -> None:
    client = anon
    health = client.get("/v1/health")
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("path", ["/v1/status", "/v1/devices", "/v1/transactions", "/v1/transactions/x",
                                  "/v1/outages", "/openapi.json", "/metrics", "/v1/events"])
def test_no_token_401(anon: httpx.Client, path: str) -> None:
    r = anon.get(path)
    assert_problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"


def test_wrong_tokens_401(daemon: DaemonProcess, anon: httpx.Client) -> None:
    client = anon
    for value in ("Bearer wrong", f"Bearer {daemon.token}x", f"Basic {daemon.token}", daemon.token,
                  "Bearer", f"Bearer {daemon.token[:-1]}"):
        assert_problem(client.get("/v1/status", headers={"Authorization": value}), 401, "unauthorized")
    r = client.post("/v1/transactions", json=sale(), headers={"Idempotency-Key": "a", "Authorization": "x"})
    assert_problem(r, 401, "unauthorized")
    assert client.get("/v1/status", headers={"Authorization": f"bearer {daemon.token}"}).status_code == 200


def test_host_allow_list(daemon: DaemonProcess) -> None:
    api = daemon.client()
    for host in ("evil.example", f"evil.example:{daemon.port}", "127.0.0.2", "localhost.evil.example",
                 f"[::2]:{daemon.port}", ""):
        assert_problem(api.get("/v1/status", headers={"Host": host}), 421, "host_not_allowed")
    # DNS rebinding gets nothing, not even the public health check.
    assert_problem(api.get("/v1/health", headers={"Host": "evil.example"}), 421, "host_not_allowed")
    for host in (f"localhost:{daemon.port}", "localhost", f"127.0.0.1:{daemon.port}", f"[::1]:{daemon.port}",
                 "LOCALHOST"):
        assert api.get("/v1/status", headers={"Host": host}).status_code == 200, host


def test_origin_allow_list_and_cors(daemon: DaemonProcess, anon: httpx.Client) -> None:
    api = daemon.client()
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{daemon.port + 1}",
                   "http://pos.example.test:8081"):
        r = api.get("/v1/status", headers={"Origin": origin})
        assert_problem(r, 403, "origin_not_allowed")
        assert "access-control-allow-origin" not in r.headers
    # Even with the token a foreign page cannot record anything.
    r = api.post("/v1/transactions", json=sale(), headers={"Idempotency-Key": "o", "Origin": "http://evil.example"})
    assert_problem(r, 403, "origin_not_allowed")

    same = api.get("/v1/status", headers={"Origin": f"http://127.0.0.1:{daemon.port}"})
    assert same.status_code == 200 and "access-control-allow-origin" not in same.headers

    allowed = api.get("/v1/status", headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "Origin" in allowed.headers["vary"]

    preflight = anon.options("/v1/transactions", headers={
        "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, idempotency-key, content-type"})
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    allow_headers = preflight.headers["access-control-allow-headers"].lower()
    assert {"authorization", "idempotency-key", "content-type"} <= {h.strip() for h in allow_headers.split(",")}
    assert "POST" in preflight.headers["access-control-allow-methods"]
    foreign = anon.options("/v1/transactions", headers={"Origin": "http://evil.example",
                                                                "Access-Control-Request-Method": "POST"})
    assert_problem(foreign, 403, "origin_not_allowed")


def test_body_too_large_by_content_length(daemon: DaemonProcess) -> None:
    api = daemon.client()
    big = b'{"kind": "settlement", "pad": "' + b"x" * MiB + b'"}'
    r = api.post("/v1/transactions", content=big, headers={"Idempotency-Key": "big",
                                                           "Content-Type": "application/json"})
    assert_problem(r, 413, "body_too_large")
    assert_problem(api.post("/v1/card/read", content=big, headers={"Content-Type": "application/json"}),
                   413, "body_too_large")
    assert api.get("/v1/status").json()["spool"]["last_seq"] == 0


def test_body_too_large_chunked(daemon: DaemonProcess) -> None:
    api = daemon.client()

    def chunks() -> Iterator[bytes]:
        yield b'{"kind": "settlement", "pad": "'
        for _ in range(20):
            yield b"x" * (64 * 1024)
        yield b'"}'

    r = api.post("/v1/transactions", content=chunks(), headers={"Idempotency-Key": "chunked",
                                                                "Content-Type": "application/json"})
    assert "content-length" not in r.request.headers and r.request.headers["transfer-encoding"] == "chunked"
    assert_problem(r, 413, "body_too_large")
    r = api.post("/v1/transactions/x/resolve", content=chunks(), headers={"Content-Type": "application/json"})
    assert_problem(r, 413, "body_too_large")
    assert api.get("/v1/status").json()["spool"]["last_seq"] == 0

    def small() -> Iterator[bytes]:
        yield b'{"resolution": '
        yield b'"voided"}'

    # A chunked body under the limit goes through (then: no such record).
    r = api.post("/v1/transactions/x/resolve", content=small(), headers={"Content-Type": "application/json"})
    assert_problem(r, 404, "not_found")


def test_unix_socket(daemon_proc: Callable[..., DaemonProcess], tmp_path: Path) -> None:
    sock = tmp_path / "run" / "api.sock"
    d = daemon_proc(config=f'[api]\nunix_socket = "{sock}"\n')
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o660
    transport = httpx.HTTPTransport(uds=str(sock))
    with httpx.Client(transport=transport, base_url="http://terminald", timeout=30) as client:
        assert_problem(client.get("/v1/status"), 401, "unauthorized")
        r = client.get("/v1/status", headers={"Authorization": f"Bearer {d.token}"})
        assert r.status_code == 200 and r.json()["instance_id"]
        assert client.get("/v1/health").status_code == 200
    d.stop()
    assert not os.path.exists(sock)


# -- the status page's read-only token ---------------------------------------------------------------------
def status_token(d: DaemonProcess) -> str:
    return d.token_path.with_name("status-token").read_text(encoding="ascii").strip()


def test_status_token_created_0640_beside_the_main_one_and_kept(daemon: DaemonProcess) -> None:
    path = daemon.token_path.with_name("status-token")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    token = status_token(daemon)
    assert len(token) >= 32 and token != daemon.token
    daemon.restart()
    assert status_token(daemon) == token


def test_status_token_file_from_config_and_never_the_main_one(daemon_proc: Callable[..., DaemonProcess],
                                                              tmp_path: Path) -> None:
    path = tmp_path / "page" / "status"
    d = daemon_proc(config=f'[api]\nstatus_token_file = "{path}"\n')
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    r = d.client(headers={"Authorization": f"Bearer {path.read_text().strip()}"}).get("/v1/status")
    assert r.status_code == 200
    shared = tmp_path / "one-token"
    same = daemon_proc(config=f'[api]\ntoken_file = "{shared}"\nstatus_token_file = "{shared}"\n', start=False)
    with pytest.raises(Exception, match="status_token_file must differ"):
        same.start(timeout_s=15)


# What the page calls: never 403 with its token (404 for ids that do not exist is fine).
PAGE_CALLS = [("GET", "/v1/status"), ("GET", "/v1/devices"), ("GET", "/v1/transactions?status=rejected&limit=200"),
              ("GET", "/v1/transactions/nope"), ("GET", "/v1/outages"), ("GET", "/v1/followups"),
              ("GET", "/v1/print-jobs/nope"), ("POST", "/v1/transactions/nope/resolve"),
              ("POST", "/v1/transactions/nope/receipt")]
# Everything else: 403 token_not_allowed, before the route runs.
NOT_FOR_THE_PAGE = [("POST", "/v1/transactions"), ("POST", "/v1/transactions/nope/refund"),
                    ("POST", "/v1/card/read"), ("POST", "/v1/upstream/resume"), ("GET", "/metrics"),
                    ("GET", "/openapi.json"), ("GET", "/v1/reconciliation?date=2026-01-05"),
                    ("GET", "/v1/transactions/nope/receipt.png"), ("DELETE", "/v1/print-jobs/nope"),
                    ("POST", "/v1/print-jobs/nope"), ("PUT", "/v1/transactions/nope/resolve"),
                    ("POST", "/v1/transactions/a/b/resolve"), ("GET", "/v1/status/"), ("GET", "//v1/status"),
                    ("GET", "/v1/events/x"), ("POST", "/v1/status"), ("HEAD", "/v1/status")]


def test_status_token_may_call_what_the_page_needs_and_nothing_else(daemon: DaemonProcess) -> None:
    page = httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {status_token(daemon)}"},
                        timeout=30)
    with page:
        for method, path in PAGE_CALLS:
            body = {"resolution": "voided"} if path.endswith("/resolve") else {} if method == "POST" else None
            r = page.request(method, path, json=body)
            assert r.status_code in (200, 404), f"{method} {path}: {r.status_code} {r.text}"
        for method, path in NOT_FOR_THE_PAGE:
            body = sale() if path == "/v1/transactions" else {}
            r = page.request(method, path, json=body, headers={"Idempotency-Key": "page-sale"})
            if method == "HEAD":
                assert r.status_code == 403
            else:
                assert_problem(r, 403, "token_not_allowed")
        with page.stream("GET", "/v1/events") as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
    # The refused sale left no trace; the POS's token still does everything.
    api = daemon.client()
    assert api.get("/v1/status").json()["spool"]["last_seq"] == 0
    assert api.get("/metrics").status_code == 200
    # (refused by the offline policy, no card read here: past access control, then)
    assert_problem(post_tx(api, sale(), "pos-sale"), 403, "card_not_present")


def test_status_token_gets_card_numbers_masked_the_pos_gets_what_it_sent(
        daemon_proc: Callable[..., DaemonProcess]) -> None:
    daemon = daemon_proc(config="[offline]\nrequire_card_present = false\n")
    api = daemon.client()
    created = post_tx(api, sale(), "masked-1").json()
    number = TYPED_CARD["card_number"]
    assert created["card"]["card_number"] == number  # the POS sent it (and may read cards anyway)
    page = daemon.client(headers={"Authorization": f"Bearer {status_token(daemon)}"})
    one = page.get(f"/v1/transactions/{created['id']}")
    listed = page.get("/v1/transactions")
    for body in (one.json(), listed.json()["items"][0]):
        assert body["card"]["card_number"] == mask_card(number) != number
        assert body["card"]["name_masked"] == "张*" and body["id"] == created["id"]
    for r in (one, listed):
        assert number not in r.text and TYPED_CARD["ssn"] not in r.text
        assert int(r.headers["content-length"]) == len(r.content)
    assert api.get(f"/v1/transactions/{created['id']}").json()["card"]["card_number"] == number


def test_status_token_resolves_a_rejection_and_reprints(daemon_proc: Callable[..., DaemonProcess],
                                                        central_sim: CentralSim) -> None:
    central_sim.control(not_insured=[TYPED_CARD["card_number"]])
    d = daemon_proc(config=central_config(central_sim.url))
    api = d.client()
    created = post_tx(api, sale(), "rejected-1", wait=10).json()
    assert created["status"] == "rejected", created
    page = d.client(headers={"Authorization": f"Bearer {status_token(d)}"})
    resolved = page.post(f"/v1/transactions/{created['id']}/resolve", json={"resolution": "self_pay"})
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "resolved"
    assert resolved.json()["card"]["card_number"] == mask_card(TYPED_CARD["card_number"])
    job = page.post(f"/v1/transactions/{created['id']}/receipt", json={})
    assert job.status_code == 202, job.text
    assert page.get(f"/v1/print-jobs/{job.json()['job_id']}").status_code == 200
    # A revoke is a new transaction: not for the page.
    assert_problem(page.post("/v1/transactions", json=revoke(created["id"]), headers={"Idempotency-Key": "rv"}),
                   403, "token_not_allowed")


# -- Host check without a known server address ----------------------------------------------------------------
async def _raw_call(scope_extra: dict[str, Any]) -> tuple[int, bytes]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"reached"})

    guarded = AccessControl(app, token="t" * 40, allowed_hosts=["localhost"], allowed_origins=[],
                            max_body_bytes=MiB)
    scope = {"type": "http", "method": "GET", "path": "/v1/health", "raw_path": b"/v1/health",
             "query_string": b"", "headers": [(b"host", b"localhost")], **scope_extra}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await guarded(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


@pytest.mark.parametrize("server", [None, ("", None), ("", 8631)])
def test_host_check_fails_closed_when_the_server_is_unknown(server: Any) -> None:
    extra = {} if server is None else {"server": server}
    status, body = asyncio.run(_raw_call(extra))
    assert status == 421 and json.loads(body)["code"] == "host_not_allowed"


def test_host_check_known_servers() -> None:
    assert asyncio.run(_raw_call({"server": ("127.0.0.1", 8631)})) == (200, b"reached")
    assert asyncio.run(_raw_call({"server": ("/run/terminald/api.sock", None)})) == (200, b"reached")
    status, _ = asyncio.run(_raw_call({"server": ("127.0.0.1", 8631), "headers": [(b"host", b"evil.example")]}))
    assert status == 421


# -- token rotation through the real daemon -------------------------------------------------------------------
def rotate(d: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "terminald.cli", "token", "rotate", *args],
                          env=d.env, cwd=d.workdir, capture_output=True, text=True, timeout=60)


def test_token_rotate_without_restart(daemon: DaemonProcess, anon: httpx.Client) -> None:
    old, old_status, pid = daemon.token, status_token(daemon), daemon.pid
    daemon.token_path.chmod(0o600)  # the new file keeps the old one's mode (and owner)
    os.chown(daemon.token_path, 4321, 4322)
    done = rotate(daemon)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "accepts the new token" in done.stdout
    new = daemon.token_path.read_text().strip()
    st = daemon.token_path.stat()
    assert new != old and stat.S_IMODE(st.st_mode) == 0o600 and (st.st_uid, st.st_gid) == (4321, 4322)
    assert not list(daemon.token_path.parent.glob(".*.tmp"))
    assert_problem(anon.get("/v1/status", headers={"Authorization": f"Bearer {old}"}), 401, "unauthorized")
    assert anon.get("/v1/status", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    # The status page's token was not touched, and rotates on its own.
    assert anon.get("/v1/status", headers={"Authorization": f"Bearer {old_status}"}).status_code == 200
    done = rotate(daemon, "--status-page")
    assert done.returncode == 0, done.stdout + done.stderr
    new_status = status_token(daemon)
    assert new_status != old_status
    assert stat.S_IMODE(daemon.token_path.with_name("status-token").stat().st_mode) == 0o640
    assert_problem(anon.get("/v1/status", headers={"Authorization": f"Bearer {old_status}"}), 401, "unauthorized")
    r = anon.post("/v1/transactions", json=sale(), headers={"Authorization": f"Bearer {new_status}",
                                                           "Idempotency-Key": "k"})
    assert_problem(r, 403, "token_not_allowed")  # still the read-only one
    assert anon.get("/v1/status", headers={"Authorization": f"Bearer {new}"}).status_code == 200
    assert daemon.pid == pid and daemon.returncode is None  # no restart
    daemon.restart()  # and the new tokens are the ones in force after a restart too
    assert daemon.token == new and status_token(daemon) == new_status


def test_a_broken_token_file_keeps_the_token_in_force(daemon: DaemonProcess, anon: httpx.Client) -> None:
    daemon.token_path.write_text("\n")  # an editor's accident: revoking is `token rotate`
    assert anon.get("/v1/status", headers={"Authorization": f"Bearer {daemon.token}"}).status_code == 200
    wait_for(lambda: "cannot be used" in daemon.stderr_text(), 10, "the daemon to say the file is unusable")
    assert daemon.token not in daemon.stderr_text()


def test_token_rotate_with_no_daemon_running(daemon_proc: Callable[..., DaemonProcess]) -> None:
    d = daemon_proc(start=False)
    done = rotate(d)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "does not answer" in done.stdout
    assert stat.S_IMODE(d.token_path.stat().st_mode) == 0o640
    token = d.token_path.read_text().strip()
    d.start()
    assert d.token == token


def test_token_rotate_never_creates_the_directory(daemon_proc: Callable[..., DaemonProcess],
                                                  tmp_path: Path) -> None:
    missing = tmp_path / "not-made" / "api-token"
    d = daemon_proc(config=f'[api]\ntoken_file = "{missing}"\n', start=False)
    done = rotate(d)
    assert done.returncode == 1 and "no directory" in done.stdout, done.stdout + done.stderr
    assert not missing.parent.exists()
