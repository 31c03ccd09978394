"""The daemon's errors. Each carries a stable `code` (the API contract's) and
the HTTP status it maps to; `terminald.api.problems` turns them into
`application/problem+json`, never sending `str(exc)` of a foreign exception.

    TerminaldError
    ├── ConfigError              bad config file or env: startup stops, key named
    ├── ValidationFailed         422 validation_failed (with `errors`)
    ├── NotFoundError            404 not_found
    ├── ConflictError            409 (e.g. not_rejected; not_halted: upstream resume with no halt)
    ├── PolicyDenied             403 card_frozen / offline_limit_exceeded / card_not_present / card_expired
    ├── CardReadNotFound         422 card_read_unknown
    ├── CardReadUsed             422 card_read_used (terminald/cardreads.py: the read backs another sale)
    ├── PrinterNotConfigured     503 printer_unavailable
    └── BodyTooLarge             413 body_too_large (a chunked body past the limit)

Errors from `spool` and `drivers` keep their own types (SpoolError,
DriverError) and their `code`; the problem registry maps those too.
"""

from __future__ import annotations

from typing import Any


class TerminaldError(Exception):
    code = "internal_error"
    status = 500
    title = "Internal error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class ConfigError(TerminaldError):
    code = "config_invalid"
    title = "Invalid configuration"


class ValidationFailed(TerminaldError):
    code = "validation_failed"
    status = 422
    title = "The request is not valid"


class NotFoundError(TerminaldError):
    code = "not_found"
    status = 404
    title = "Not found"


class ConflictError(TerminaldError):
    code = "conflict"
    status = 409
    title = "Conflict"

    def __init__(self, detail: str = "", code: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        if code:
            self.code = code


class PolicyDenied(TerminaldError):
    status = 403
    title = "Refused by the offline policy"

    def __init__(self, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.code = code


class CardReadNotFound(TerminaldError):
    code = "card_read_unknown"
    status = 422
    title = "Unknown or expired card_read_id"


class PrinterNotConfigured(TerminaldError):
    code = "printer_unavailable"
    status = 503
    title = "No such printer"


class BodyTooLarge(TerminaldError):
    code = "body_too_large"
    status = 413
    title = "Payload too large"
