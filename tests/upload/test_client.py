"""The protocol client translates every httpx error and status at the boundary."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from terminald.config import UpstreamConfig
from terminald.errors import ConfigError
from terminald.upload.errors import BadAnswer, Refused, ServerBusy, Transient, Unreachable, UpstreamError
from terminald.upstream.v1.client import CentralClient
from terminald.upstream.v1.errors import ChainBroken, SequenceGap

WIRE = [{"seq": 1, "record_id": "a"}]


def _call(handler: Callable[[httpx.Request], httpx.Response], token_file: str = "") -> UpstreamError | None:
    cfg = UpstreamConfig(url="http://central.test", token_file=token_file, timeout_s=1)

    async def main() -> UpstreamError | None:
        client = CentralClient(cfg, "T9", transport=httpx.MockTransport(handler))
        try:
            await client.post_records(WIRE)
        except UpstreamError as exc:
            return exc
        finally:
            await client.aclose()
        return None

    return asyncio.run(main())


def _raise(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (httpx.ConnectTimeout("t"), "timeout"),
        (httpx.ReadTimeout("t"), "timeout"),
        (httpx.ConnectError("refused"), "connect_failed"),
        (httpx.ReadError("reset"), "connection_lost"),
        (httpx.RemoteProtocolError("eof"), "connection_lost"),
        (httpx.UnsupportedProtocol("x"), "transport"),
    ],
)
def test_transport_errors(exc: Exception, kind: str) -> None:
    error = _call(_raise(exc))
    assert isinstance(error, Unreachable) and error.kind == kind and error.__cause__ is exc


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (408, ServerBusy),
        (425, ServerBusy),
        (429, ServerBusy),
        (500, ServerBusy),
        (503, ServerBusy),
        (400, Refused),
        (401, Refused),
        (404, Refused),
    ],
)
def test_statuses(status: int, kind: type[UpstreamError]) -> None:
    error = _call(lambda r: httpx.Response(status, headers={"Retry-After": "3"}, json={}))
    assert type(error) is kind
    assert isinstance(error, Transient) == (kind is ServerBusy)
    if isinstance(error, ServerBusy):
        assert error.retry_after == 3.0


def test_gap_and_chain_and_their_garbage() -> None:
    gap = _call(
        lambda r: httpx.Response(409, json={"error": "sequence_gap", "expected_seq": 5, "results": []})
    )
    assert isinstance(gap, SequenceGap) and gap.expected_seq == 5
    broken = _call(lambda r: httpx.Response(422, json={"error": "chain_broken", "seq": 1, "results": []}))
    assert isinstance(broken, ChainBroken) and broken.seq == 1
    assert isinstance(_call(lambda r: httpx.Response(409, content=b"<html>")), BadAnswer)
    assert isinstance(_call(lambda r: httpx.Response(409, json={"error": "sequence_gap"})), BadAnswer)
    assert isinstance(_call(lambda r: httpx.Response(200, content=b"\xff\xfe")), BadAnswer)


def test_headers_carry_token_and_terminal(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("abc\n")
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            200,
            json={
                "results": [
                    {"seq": 1, "record_id": "a", "status": "rejected", "reason": {"code": "not_insured"}}
                ],
                "last_seq": 1,
            },
        )

    assert _call(handler, str(token)) is None
    assert seen[0].headers["authorization"] == "Bearer abc" and seen[0].headers["x-terminal-id"] == "T9"
    assert seen[0].url.path == "/v1/terminals/T9/records"


def test_bad_local_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="token_file"):
        CentralClient(UpstreamConfig(url="http://x", token_file=str(tmp_path / "missing")), "T9")
    with pytest.raises(ConfigError, match="TLS"):
        CentralClient(UpstreamConfig(url="https://x", ca_file=str(tmp_path / "missing.pem")), "T9")
    with pytest.raises(ConfigError, match="empty"):
        CentralClient(UpstreamConfig(url=""), "T9")
