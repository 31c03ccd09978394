"""A hypothesis state machine over the Spool API against a plain in-memory model."""

from __future__ import annotations

import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from spool import GENESIS_HASH, IdempotencyConflict, InvalidTransition, Outcome, Spool
from tests.fixtures.spool import TERMINAL_ID, make_request


class SpoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="spool-sm-"))
        self.path = self.dir / "s.db"
        self.spool = Spool.open(self.path, TERMINAL_ID, background_check=False)
        self.keys: dict[str, tuple[int, int]] = {}  # key -> (total_fen, seq)
        self.status: dict[int, str] = {}
        self.amount: dict[int, int] = {}
        self.offline: dict[int, bool] = {}
        self.hashes: list[str] = [GENESIS_HASH]
        self.pruned_upto = 0

    @initialize()
    def start(self) -> None:
        assert self.spool.stats().last_seq == 0

    @rule(total=st.integers(min_value=0, max_value=10**7), offline=st.booleans())
    def append_new(self, total: int, offline: bool) -> None:
        key = f"k{len(self.keys)}"
        result = self.spool.append(make_request(key, total, offline=offline,
                                                offline_reason="upstream_unreachable" if offline else None))
        assert result.created
        seq = len(self.hashes)
        assert result.record.seq == seq and result.record.prev_hash == self.hashes[-1]
        self.keys[key] = (total, seq)
        self.status[seq] = "pending"
        self.amount[seq] = total
        self.offline[seq] = offline
        self.hashes.append(result.record.hash)

    @precondition(lambda self: any(seq in self.status for _, seq in self.keys.values()))
    @rule(data=st.data())
    def append_again(self, data: st.DataObject) -> None:
        # Keys of pruned records are forgotten by design, so only live ones are retried.
        key = data.draw(st.sampled_from(sorted(k for k, (_, seq) in self.keys.items() if seq in self.status)))
        total, seq = self.keys[key]
        reason = "upstream_unreachable" if self.offline[seq] else None
        result = self.spool.append(make_request(key, total, offline=self.offline[seq], offline_reason=reason))
        assert not result.created and result.record.seq == seq
        try:
            self.spool.append(make_request(key, total + 1, offline=self.offline[seq], offline_reason=reason))
        except IdempotencyConflict as exc:
            assert exc.existing.seq == seq
        else:
            raise AssertionError("same key, other body must conflict")

    @precondition(lambda self: self.status)
    @rule(data=st.data(), verdict=st.sampled_from(["settled", "rejected"]))
    def outcome(self, data: st.DataObject, verdict: str) -> None:
        seq = data.draw(st.sampled_from(sorted(self.status)))
        [record] = self.spool.apply_outcomes(
            [Outcome(seq, verdict, {"code": "x"} if verdict == "rejected" else {})]
        )
        if self.status[seq] == "pending":
            self.status[seq] = verdict
        assert record.status == self.status[seq]

    @precondition(lambda self: self.status)
    @rule(data=st.data())
    def resolve(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(sorted(self.status)))
        record = self.spool.get_seq(seq)
        assert record is not None
        if self.status[seq] == "rejected":
            assert self.spool.resolve(record.record_id, "self_pay").status == "resolved"
            self.status[seq] = "resolved"
        else:
            try:
                self.spool.resolve(record.record_id, "voided")
            except InvalidTransition:
                pass
            else:
                raise AssertionError(f"resolved a {self.status[seq]} record")

    @rule()
    def prune(self) -> None:
        limit = self.pruned_upto + 1
        while self.status.get(limit) in ("settled", "resolved"):
            limit += 1
        later = datetime.now(UTC) + timedelta(days=2)
        assert self.spool.prune(1, now=later) == limit - 1 - self.pruned_upto
        for seq in range(self.pruned_upto + 1, limit):
            del self.status[seq], self.amount[seq]
        self.pruned_upto = limit - 1

    @rule()
    def reopen(self) -> None:
        self.spool.close()
        self.spool = Spool.open(self.path, TERMINAL_ID, background_check=False)

    @invariant()
    def matches_model(self) -> None:
        stats = self.spool.stats()
        pending = [s for s, v in sorted(self.status.items()) if v == "pending"]
        assert stats.last_seq == len(self.hashes) - 1 and stats.last_hash == self.hashes[-1]
        assert stats.pending == len(pending)
        assert stats.pending_amount_fen == sum(self.amount[s] for s in pending)
        assert stats.pending_offline_fen == sum(self.amount[s] for s in pending if self.offline[s])
        assert stats.rejected_unresolved == sum(v == "rejected" for v in self.status.values())
        assert stats.settled_total == sum(v == "settled" for v in self.status.values())
        assert [r.seq for r in self.spool.backlog(limit=1000)] == pending
        totals = self.spool.totals("2026-11-23")
        settled = [s for s, v in self.status.items() if v == "settled"]
        assert totals.count == len(settled) and totals.total_fen == sum(self.amount[s] for s in settled)
        assert [r.seq for r in self.spool.records(limit=1000)] == sorted(self.status)

    def teardown(self) -> None:
        try:
            report = self.spool.check()
            assert report.ok, report.problems
            assert report.records == len(self.status)
        finally:
            self.spool.close()
            shutil.rmtree(self.dir, ignore_errors=True)


SpoolMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_spool_state_machine = SpoolMachine.TestCase
