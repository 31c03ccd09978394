"""Errors of the upstream link, whatever the protocol. Each adapter translates its own
errors (httpx's, its protocol's) into these at its edge, `raise … from exc`; nothing else
leaves an adapter (terminald/upstream/adapters.py).

UpstreamError                  code "upstream_error"; never escapes the uploader
├── Transient                  worth retrying the same records with backoff
│   ├── Unreachable            connect refused/reset, DNS, TLS, timeouts (no answer)
│   ├── ServerBusy             HTTP 408/425/429/5xx; `.retry_after` seconds when given
│   └── BadAnswer              an answer that is not what the protocol says (not JSON, bad fields)
├── Refused                    any other 4xx (bad token, unknown terminal): retry only after a pause
└── Halt                       central's books disagree with ours: uploading stops (halt), alarm `code`,
                               until `terminald upstream resume`; nothing is lost or rewritten

An adapter's own subclasses (protocol v1's SequenceGap and its halts: terminald/upstream/v1/errors.py)
are handled as their base class.
"""

from __future__ import annotations

from terminald.errors import TerminaldError

__all__ = ["BadAnswer", "Halt", "Refused", "ServerBusy", "Transient", "Unreachable", "UpstreamError"]


class UpstreamError(TerminaldError):
    code = "upstream_error"
    status = 502
    title = "The central system did not answer as expected"

    @property
    def cause(self) -> str:
        """A short, stable description for the link state and the outage log."""
        return self.code


class Transient(UpstreamError):
    code = "upstream_transient"


class Unreachable(Transient):
    code = "upstream_unreachable"

    def __init__(self, detail: str, kind: str = "unreachable") -> None:
        super().__init__(detail)
        self.kind = kind

    @property
    def cause(self) -> str:
        return self.kind


class ServerBusy(Transient):
    code = "upstream_busy"

    def __init__(self, status: int, retry_after: float | None = None) -> None:
        super().__init__(f"central answered HTTP {status}")
        self.http_status = status
        self.retry_after = retry_after

    @property
    def cause(self) -> str:
        return f"http_{self.http_status}"


class BadAnswer(Transient):
    code = "upstream_bad_answer"

    @property
    def cause(self) -> str:
        return "bad_answer"


class Refused(UpstreamError):
    code = "upstream_refused"

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"central refused the request with HTTP {status}: {detail}")
        self.http_status = status

    @property
    def cause(self) -> str:
        return f"refused_http_{self.http_status}"


class Halt(UpstreamError):
    """Uploading must stop until staff resume it: sending more could only make things worse."""

    code = "upstream_halt"
