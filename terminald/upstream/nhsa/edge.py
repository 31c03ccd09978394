"""The adapter's edge: what leaves it is the uploader's errors (terminald/upload/errors.py) only.

    UnknownOutcome of a call that changes nothing (9001, 1101), or of a 2601
        -> Unreachable (no answer: timeout, connect, reset) or PlatformUnsure (an answer that
           is not the envelope, HTTP 5xx): back off, the link shows offline
    a transient -1 (系统繁忙)                    -> PlatformBusy (back off)
    a money call without an answer after its retries (the transport fails)
                                                 -> OutcomeUnsettled (back off; reversed first
                                                    on the next round)
    9001 refused with a definite -1              -> SignInRefused (pause: the institution's
                                                    fields or the gateway's set-up are wrong)
    no msgid counter left for seconds            -> PlatformBusy (back off)

Only the transport and the gateway move the link. What belongs to one record stays inside
the adapter (the other persons go on):

    ReversalRefused   a 2601 refused with a message that is not "nothing to reverse": the
                      person waits (alarm `reversal_refused`)
    RecordStuck       a record the adapter cannot finish by itself: an answer that never adds
                      up, a gateway that keeps answering "unknown" for it, a 1101 answer that
                      cannot be used, a stored answer that cannot be applied, a 2601 that
                      cannot be built. The person is parked (alarm `nhsa_record_stuck`) until
                      staff resume
    ReversalNotDue    an open call the gateway may still be working on: its 2601 waits for
                      the profile's `reversal_delay_s`; the person waits, the others go on
"""

from __future__ import annotations

from terminald.upload.errors import Refused, Transient, Unreachable, UpstreamError
from terminald.upstream.nhsa.calllog import Call
from terminald.upstream.nhsa.errors import UnknownOutcome

__all__ = [
    "NO_DELAY",
    "RECORD_LEVEL",
    "OutcomeUnsettled",
    "PlatformBusy",
    "PlatformUnsure",
    "RecordStuck",
    "ReversalNotDue",
    "ReversalRefused",
    "SignInRefused",
    "StoredAnswerUnusable",
    "transient_of",
]

# UnknownOutcome reasons that mean "no answer at all" (client.py `_post`).
_NO_ANSWER = frozenset({"timeout", "connect_failed", "connection_lost", "transport"})
# Unknown outcomes of one record's call, not of the transport: a complete answer that cannot be
# trusted (its split does not add up), or a gateway's -1 that the profile reads as unknown (its
# own timeout, a duplicate serial). They park the record when they repeat; they never move the link.
# (A gateway's own timeout, "refused_unknown", is the gateway's trouble: it moves the link.)
RECORD_LEVEL = frozenset({"untrusted", "refused_duplicate"})
# Unknown outcomes after which nothing can still be at work at the gateway, so the 2601 need not
# wait: the connection was never made, or the whole answer came back (untrusted, or a completion
# the log refused).
NO_DELAY = frozenset({"connect_failed", "untrusted", "log_failed"})


class PlatformBusy(Transient):
    code = "nhsa_busy"  # also its cause (UpstreamError.cause)


class PlatformUnsure(Transient):
    """An answer that is not a definite one (HTTP error, not the envelope)."""

    code = "nhsa_bad_answer"

    def __init__(self, detail: str, reason: str) -> None:
        super().__init__(detail)
        self.reason = reason

    @property
    def cause(self) -> str:
        return f"nhsa_{self.reason}"


class OutcomeUnsettled(Transient):
    code = "nhsa_outcome_unknown"  # also its cause (UpstreamError.cause)


class SignInRefused(Refused):
    code = "nhsa_sign_in_refused"

    def __init__(self, detail: str) -> None:
        UpstreamError.__init__(self, f"the platform refused the sign-in (9001): {detail}")
        self.http_status = 200

    @property
    def cause(self) -> str:
        return self.code  # not Refused's refused_http_<status>: the gateway answered 200


class RecordStuck(Exception):
    """One record cannot be finished by the adapter: its person is parked until staff resume."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class StoredAnswerUnusable(RecordStuck):
    """A money call stands at the platform, but its stored answer cannot be applied."""


class ReversalNotDue(Exception):
    """An open call's 2601 must wait until `due` (time.time()): the gateway may still work on it."""

    def __init__(self, call: Call, due: float) -> None:
        super().__init__(f"2601 of {call.infno} {call.msgid} waits until {due:.0f}")
        self.call = call
        self.due = due
        # Set when the wait follows a failure of the transport just now: the uploader hears of
        # it (the link moves) once the person is set aside.
        self.transient: Transient | None = None


class ReversalRefused(Exception):
    """A 2601 answered -1 with a message that does not settle the call: it may still stand."""

    def __init__(self, call: Call, err_msg: str) -> None:
        super().__init__(f"2601 of {call.infno} {call.msgid} refused: {err_msg}")
        self.call = call
        self.err_msg = err_msg


def transient_of(exc: UnknownOutcome, what: str) -> Transient:
    """The uploader's error for a call of `what` without a definite answer."""
    detail = f"{what}: {exc.detail}"
    if exc.reason in _NO_ANSWER:
        return Unreachable(detail, kind=exc.reason)
    return PlatformUnsure(detail, exc.reason)
