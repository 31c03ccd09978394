"""The mirror's errors. None of them reaches the POS: the mirror never stands in a sale's way.
They show as lag and alarms (``MirrorCopier.status()``) and in the commands IT runs.

    MirrorError                  base; ``code`` is stable (status, events, docs/mirror.md)
    ├── MirrorUnavailable        mirror_unavailable: no read-write server answered, or the
    │                            connection broke (retried with backoff)
    ├── MirrorSchemaMissing      mirror_schema_missing: `terminald mirror init-db` was not run,
    │                            or this terminal's role has no grant
    ├── MirrorFork               mirror_fork: the mirror's head or rows disagree with this
    │                            spool's chain (a fork or a gap); nothing is overwritten
    ├── MirrorRejected           mirror_rejected: the server refused a record or an update
    │                            (a value it cannot store); retried, never skipped
    ├── MirrorMisconfigured      mirror_config: the DSN or the password file cannot be used as
    │                            written (not retried until the config is fixed)
    └── RestoreFailed            restore_failed: the mirror cannot give back a whole, verified
                                 chain, or the destination exists

psycopg's errors are translated where they are caught (``raise ... from exc``).
"""

from __future__ import annotations

__all__ = [
    "MirrorError",
    "MirrorFork",
    "MirrorMisconfigured",
    "MirrorRejected",
    "MirrorSchemaMissing",
    "MirrorUnavailable",
    "RestoreFailed",
]


class MirrorError(Exception):
    code = "mirror_error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class MirrorUnavailable(MirrorError):
    code = "mirror_unavailable"


class MirrorSchemaMissing(MirrorError):
    code = "mirror_schema_missing"


class MirrorFork(MirrorError):
    code = "mirror_fork"

    def __init__(self, detail: str, seq: int | None = None) -> None:
        super().__init__(detail)
        self.seq = seq


class MirrorRejected(MirrorError):
    code = "mirror_rejected"


class MirrorMisconfigured(MirrorError):
    code = "mirror_config"


class RestoreFailed(MirrorError):
    code = "restore_failed"
