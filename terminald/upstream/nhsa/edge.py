"""The adapter's edge: what leaves it is the uploader's errors (terminald/upload/errors.py) only.

    UnknownOutcome of a call that changes nothing (9001, 1101), or of a 2601
        -> Unreachable (no answer: timeout, connect, reset) or PlatformUnsure (an answer that
           is not the envelope, HTTP 5xx): back off, the link shows offline
    a transient -1 (系统繁忙)                    -> PlatformBusy (back off)
    a money call still unknown after its retries -> OutcomeUnsettled (back off; reversed first
                                                    on the next round)
    9001 refused with a definite -1              -> SignInRefused (pause: the institution's
                                                    fields or the gateway's set-up are wrong)
    a stored answer that cannot be applied       -> StoredAnswerUnusable (halt: staff look)

`ReversalRefused` is internal: a 2601 refused with a message that is not "nothing to reverse";
the person's records wait (alarm `reversal_refused`) while the other persons go on.
"""

from __future__ import annotations

from terminald.upload.errors import Halt, Refused, Transient, Unreachable, UpstreamError
from terminald.upstream.nhsa.calllog import Call
from terminald.upstream.nhsa.errors import UnknownOutcome

__all__ = [
    "OutcomeUnsettled",
    "PlatformBusy",
    "PlatformUnsure",
    "ReversalRefused",
    "SignInRefused",
    "StoredAnswerUnusable",
    "transient_of",
]

# UnknownOutcome reasons that mean "no answer at all" (client.py `_post`).
_NO_ANSWER = frozenset({"timeout", "connect_failed", "connection_lost", "transport"})


class PlatformBusy(Transient):
    code = "nhsa_busy"

    @property
    def cause(self) -> str:
        return "nhsa_busy"


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
    code = "nhsa_outcome_unknown"

    @property
    def cause(self) -> str:
        return "nhsa_outcome_unknown"


class SignInRefused(Refused):
    code = "nhsa_sign_in_refused"

    def __init__(self, detail: str) -> None:
        UpstreamError.__init__(self, f"the platform refused the sign-in (9001): {detail}")
        self.http_status = 200

    @property
    def cause(self) -> str:
        return "nhsa_sign_in_refused"


class StoredAnswerUnusable(Halt):
    code = "nhsa_stored_answer"


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
