"""Errors of the national-platform adapter. httpx errors become UnknownOutcome at the
client's edge; sqlite3 errors stay SpoolError (the spool's own tree and codes).

    NhsaError                    code "nhsa_error" (a TerminaldError)
    ├── UnknownOutcome           no definite answer to a call that was (maybe) sent: HTTP error,
    │                            timeout, reset, a body that is not the envelope, an infcode other
    │                            than 0/-1, a -1 the profile lists as of unknown outcome. The call
    │                            may have taken effect: a money call is reversed (2601 with its
    │                            msgid) before it is tried again. `.reason` is a short stable word.
    ├── EnvelopeError            the request cannot be built (field too long, bad msgid, missing
    │                            insuplc_admdvs): nothing was sent
    ├── AmountError              not an exact 2-decimal yuan amount, or out of range (also a
    │                            ValueError)
    ├── MsgidExhausted           the 9,999 counters of this second are used: try again next second
    └── CallLogError             a call-log transition that is not allowed (complete twice with
                                 another state, reverse an `ok` call, unknown msgid)

A bad `profile` raises `terminald.errors.ConfigError` (start-up stops, the name is given with
the available ones). Results that are definite answers are values, not errors:
`envelope.Ok` and `envelope.Refused` (infcode -1).
"""

from __future__ import annotations

from terminald.errors import TerminaldError

__all__ = ["AmountError", "CallLogError", "EnvelopeError", "MsgidExhausted", "NhsaError", "UnknownOutcome"]


class NhsaError(TerminaldError):
    code = "nhsa_error"
    status = 502
    title = "The national platform adapter failed"


class UnknownOutcome(NhsaError):
    """The call may or may not have taken effect at the platform."""

    code = "nhsa_unknown_outcome"
    title = "No definite answer from the national platform"

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason


class EnvelopeError(NhsaError):
    code = "nhsa_envelope_invalid"
    status = 500
    title = "The request to the national platform cannot be built"


class AmountError(NhsaError, ValueError):
    code = "nhsa_amount_invalid"
    status = 500
    title = "Not an exact amount in yuan"


class MsgidExhausted(NhsaError):
    code = "nhsa_msgid_exhausted"
    status = 503
    title = "No message id left for this second"


class CallLogError(NhsaError):
    code = "nhsa_call_log"
    status = 500
    title = "Call log transition not allowed"
