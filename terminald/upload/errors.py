"""Errors of the upstream link. httpx errors are translated here, at the boundary.

UpstreamError                  code "upstream_error"; never escapes the uploader
├── Transient                  worth retrying the same records with backoff
│   ├── Unreachable            connect refused/reset, DNS, TLS, timeouts (no answer)
│   ├── ServerBusy             HTTP 408/425/429/5xx; `.retry_after` seconds when given
│   └── BadAnswer              an answer that is not what protocol v1 says (not JSON, bad fields)
├── Refused                    any other 4xx (bad token, unknown terminal): retry only after a pause
├── SequenceGap                409 sequence_gap: `.expected_seq`, `.results` decided before the gap
├── ChainBroken                422 chain_broken: `.seq`, `.results`; uploading stops, alarm
└── CursorRegression           central knows less than it acknowledged; uploading stops, alarm
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from terminald.errors import TerminaldError

if TYPE_CHECKING:
    from terminald.upload.answers import RecordResult


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


class SequenceGap(UpstreamError):
    code = "sequence_gap"

    def __init__(self, expected_seq: int, results: list[RecordResult]) -> None:
        super().__init__(f"central expects seq {expected_seq}")
        self.expected_seq = expected_seq
        self.results = results


class ChainBroken(UpstreamError):
    code = "chain_broken"

    def __init__(self, seq: int, results: list[RecordResult]) -> None:
        super().__init__(f"central says the hash chain breaks at seq {seq}")
        self.seq = seq
        self.results = results


class CursorRegression(UpstreamError):
    code = "cursor_regression"

    def __init__(self, central_seq: int, acked_seq: int) -> None:
        super().__init__(
            f"central's cursor is at seq {central_seq} but it had acknowledged seq {acked_seq}: "
            "central lost records; uploading stopped, nothing is lost locally"
        )
        self.central_seq = central_seq
        self.acked_seq = acked_seq
