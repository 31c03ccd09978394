"""Protocol v1 client: one httpx.AsyncClient, explicit timeouts, typed answers and errors.

Every call either returns a parsed, checked value or raises an UpstreamError subclass
(terminald/upload/errors.py, and v1's own in errors.py here); httpx exceptions never leave
this module. An answer body is read up to MAX_ANSWER_BYTES (8 MiB, after content decoding):
past it, the answer is garbage (BadAnswer, retried), whatever it says.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx

from terminald.config import UpstreamConfig
from terminald.errors import ConfigError
from terminald.upload.errors import BadAnswer, Refused, ServerBusy, Unreachable
from terminald.upload.notices import Notices
from terminald.upstream.v1.answers import (
    BatchAnswer,
    CentralTotals,
    Cursor,
    SentRecord,
    parse_batch,
    parse_cursor,
    parse_notices,
    parse_results,
    parse_totals,
)
from terminald.upstream.v1.errors import ChainBroken, SequenceGap

__all__ = ["MAX_ANSWER_BYTES", "CentralClient", "parse_retry_after"]

_RETRYABLE_STATUS = frozenset({408, 425, 429})
# An answer body past this (after content decoding) is garbage: read no further, retry later.
MAX_ANSWER_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class _Answer:
    """An HTTP answer read in full, within MAX_ANSWER_BYTES."""

    status_code: int
    reason_phrase: str
    headers: httpx.Headers
    content: bytes


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _read_token(token_file: str) -> str:
    if not token_file:
        return ""
    try:
        return Path(token_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"upstream.token_file {token_file} cannot be read: {exc.strerror}") from exc


def _tls(cfg: UpstreamConfig) -> ssl.SSLContext | bool:
    if not (cfg.ca_file or cfg.client_cert):
        return True
    try:
        ctx = ssl.create_default_context(cafile=cfg.ca_file or None)
        if cfg.client_cert:
            ctx.load_cert_chain(cfg.client_cert, cfg.client_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(
            f"upstream TLS files (ca_file/client_cert/client_key) cannot be loaded: {exc}"
        ) from exc
    return ctx


class CentralClient:
    """Talks to one central system for one terminal."""

    def __init__(
        self, cfg: UpstreamConfig, terminal_id: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        if not cfg.url:
            raise ConfigError("upstream.url is empty: there is no central system to talk to")
        self._cfg = cfg
        self._tid = terminal_id
        headers = {"X-Terminal-Id": terminal_id, "User-Agent": "terminald/upstream-v1"}
        token = _read_token(cfg.token_file)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        # connect is short so that an unplugged cable is noticed quickly; read gets the full budget.
        timeout = httpx.Timeout(cfg.timeout_s, connect=min(cfg.timeout_s, 5.0))
        self._http = httpx.AsyncClient(
            base_url=cfg.url,
            headers=headers,
            timeout=timeout,
            verify=_tls(cfg),
            transport=transport,
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=2),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> _Answer:
        try:
            request = self._http.build_request(method, path, **kwargs)
            response = await self._http.send(request, stream=True)
            try:
                return await self._read(response)
            finally:
                await response.aclose()
        except httpx.TimeoutException as exc:
            raise Unreachable(f"no answer from central within {self._cfg.timeout_s} s", "timeout") from exc
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot connect to central: {exc}", "connect_failed") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
            raise Unreachable(f"connection to central lost: {exc}", "connection_lost") from exc
        except httpx.TransportError as exc:
            raise Unreachable(f"transport error talking to central: {exc}", "transport") from exc
        except httpx.DecodingError as exc:
            raise BadAnswer(f"central's answer cannot be decoded: {exc}") from exc

    @staticmethod
    async def _read(response: httpx.Response) -> _Answer:
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > MAX_ANSWER_BYTES:
            raise BadAnswer(f"HTTP {response.status_code} answer of {declared} bytes is over the bound")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise BadAnswer(f"HTTP {response.status_code} answer is over {MAX_ANSWER_BYTES} bytes")
        return _Answer(response.status_code, response.reason_phrase, response.headers, bytes(body))

    @staticmethod
    def _json(response: _Answer) -> Any:
        try:
            return json.loads(response.content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadAnswer(f"HTTP {response.status_code} answer is not JSON") from exc

    def _check_status(self, response: _Answer) -> None:
        status = response.status_code
        if status in _RETRYABLE_STATUS or status >= 500:
            raise ServerBusy(status, parse_retry_after(response.headers.get("Retry-After")))
        if not 200 <= status < 300:
            raise Refused(status, response.reason_phrase)

    async def _get(self, path: str, **params: Any) -> Any:
        response = await self._call("GET", path, params=params or None)
        self._check_status(response)
        return self._json(response)

    async def health(self) -> None:
        """Return when central accepts work; raise otherwise."""
        response = await self._call("GET", "/v1/health")
        self._check_status(response)

    async def cursor(self) -> Cursor:
        return parse_cursor(await self._get(f"/v1/terminals/{self._tid}/cursor"))

    async def notices(self, frozen_since: int | None = None) -> Notices:
        params = {"frozen_since": frozen_since} if frozen_since else {}
        return parse_notices(await self._get(f"/v1/terminals/{self._tid}/notices", **params))

    async def totals(self, date: str) -> CentralTotals:
        return parse_totals(await self._get(f"/v1/terminals/{self._tid}/totals", date=date))

    async def post_records(self, wires: list[dict[str, Any]]) -> BatchAnswer:
        """Send one batch; SequenceGap / ChainBroken carry the results decided before the stop."""
        # Each answer is checked against what was sent: seq, record_id, and the total the parts
        # of a settlement must add up to.
        sent = [SentRecord.of(w) for w in wires]
        body = json.dumps({"records": wires}, ensure_ascii=False, separators=(",", ":")).encode()
        response = await self._call(
            "POST",
            f"/v1/terminals/{self._tid}/records",
            content=body,
            headers={"Content-Type": "application/json"},
        )
        if response.status_code in (409, 422):
            answer = self._json(response)
            error = answer.get("error") if isinstance(answer, dict) else None
            if response.status_code == 409 and error == "sequence_gap":
                results = parse_results(answer.get("results", []), sent)
                expected = answer.get("expected_seq")
                if not isinstance(expected, int) or isinstance(expected, bool) or expected < 1:
                    raise BadAnswer("sequence_gap without a valid expected_seq")
                raise SequenceGap(expected, results)
            if response.status_code == 422 and error == "chain_broken":
                results = parse_results(answer.get("results", []), sent)
                seq = answer.get("seq")
                raise ChainBroken(seq if isinstance(seq, int) else -1, results)
        self._check_status(response)
        return parse_batch(self._json(response), sent)
