"""Access control: bearer token, Host allow-list, Origin allow-list and CORS, body size, Unix socket."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.helpers import assert_problem, sale
from tests.fixtures.daemon import DaemonProcess

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
