"""Protocol v1's own errors, under the uploader's (terminald/upload/errors.py).

UpstreamError
├── SequenceGap                409 sequence_gap: `.expected_seq`, `.results` decided before the gap;
│                              handled inside the adapter (it re-reads the cursor), never leaves it
└── Halt
    ├── ChainBroken            422 chain_broken: `.seq`, `.results`
    ├── CursorRegression       central knows less than it acknowledged
    ├── ChainForked            central's cursor hash is not our record's hash at that seq
    └── CursorAhead            central's cursor is past our last seq (records we do not have)

The halts leave the adapter as they are: the uploader halts with their `code` as the alarm.
"""

from __future__ import annotations

from terminald.upload.errors import Halt, UpstreamError
from terminald.upload.results import RecordResult

__all__ = ["ChainBroken", "ChainForked", "CursorAhead", "CursorRegression", "SequenceGap"]


class SequenceGap(UpstreamError):
    code = "sequence_gap"

    def __init__(self, expected_seq: int, results: list[RecordResult]) -> None:
        super().__init__(f"central expects seq {expected_seq}")
        self.expected_seq = expected_seq
        self.results = results


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
