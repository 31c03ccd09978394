"""Errors of the upstream link. httpx errors are translated here, at the boundary.

UpstreamError                  code "upstream_error"; never escapes the uploader
├── Transient                  worth retrying the same records with backoff
│   ├── Unreachable            connect refused/reset, DNS, TLS, timeouts (no answer)
│   ├── ServerBusy             HTTP 408/425/429/5xx; `.retry_after` seconds when given
│   └── BadAnswer              an answer that is not what protocol v1 says (not JSON, bad fields)
├── Refused                    any other 4xx (bad token, unknown terminal): retry only after a pause
├── SequenceGap                409 sequence_gap: `.expected_seq`, `.results` decided before the gap
└── Halt                       central's books disagree with ours: uploading stops (halt), alarm `code`,
    │                          until `terminald upstream resume`; nothing is lost or rewritten
    ├── ChainBroken            422 chain_broken: `.seq`, `.results`
    ├── CursorRegression       central knows less than it acknowledged
    ├── ChainForked            central's cursor hash is not our record's hash at that seq
    └── CursorAhead            central's cursor is past our last seq (records we do not have)
"""

from __future__ import annotations

from terminald.errors import TerminaldError
from terminald.upload.results import RecordResult


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


class Halt(UpstreamError):
    """Uploading must stop until staff resume it: sending more could only make things worse."""

    code = "upstream_halt"


class ChainBroken(Halt):
    code = "chain_broken"

    def __init__(self, seq: int, results: list[RecordResult]) -> None:
        super().__init__(f"central says the hash chain breaks at seq {seq}")
        self.seq = seq
        self.results = results


class CursorRegression(Halt):
    code = "cursor_regression"

    def __init__(self, central_seq: int, acked_seq: int) -> None:
        super().__init__(
            f"central's cursor is at seq {central_seq} but it had acknowledged seq {acked_seq}: "
            "central lost records; uploading stopped, nothing is lost locally"
        )
        self.central_seq = central_seq
        self.acked_seq = acked_seq


class ChainForked(Halt):
    code = "chain_forked"

    def __init__(self, seq: int, central_hash: str, local_hash: str) -> None:
        super().__init__(
            f"central's cursor says seq {seq} has hash {central_hash[:12]}…, ours has {local_hash[:12]}…: "
            "central holds another history of this terminal (a fork); uploading stopped, nothing is lost locally"
        )
        self.seq = seq


class CursorAhead(Halt):
    code = "cursor_ahead"

    def __init__(self, central_seq: int, local_seq: int) -> None:
        super().__init__(
            f"central's cursor is at seq {central_seq} but this spool ends at seq {local_seq}: central holds "
            "records this terminal does not have (another PC with this terminal id, or an old spool "
            "restored); uploading stopped, nothing is lost locally"
        )
        self.central_seq = central_seq
        self.local_seq = local_seq
