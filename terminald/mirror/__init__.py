"""The mirror: every spool record, in order and exactly once, on the hospital's PostgreSQL.

Contract: mirror-postgresql.md; for IT: docs/mirror.md.

    schema.py     the tables, the fleet view, row-level security, the role lines (init_db)
    rows.py       a spool Record as a mirror row and back
    chain.py      the append rule: compare-and-set on the head row, fork and gap detection
    changes.py    which spool records changed since the last pass (the history cursor)
    statuses.py   status changes as updates outside the chain
    heartbeat.py  the terminal's fleet row
    connect.py    the DSN's defaults (read-write target, keepalives), connecting
    copier.py     MirrorCopier: the loop, reconnects with backoff, lag and alarms
    restore.py    a spool rebuilt from the mirror
    service.py    MirrorService: the copier as a part of the daemon (its process, hints and
                  heartbeat values, the lag alarm, events, /v1/status); terminald/daemon.py builds
                  it when ``mirror.dsn`` is set
    child.py      the copier's process (``python -m terminald.mirror.child``) and its messages
    errors.py     MirrorError and its tree
"""

from terminald.mirror.copier import MirrorAlarm, MirrorCopier, MirrorStatus
from terminald.mirror.errors import (
    MirrorError,
    MirrorFork,
    MirrorRejected,
    MirrorSchemaMissing,
    MirrorUnavailable,
    RestoreFailed,
)
from terminald.mirror.heartbeat import Heartbeat
from terminald.mirror.restore import RestoreReport, restore_from, restore_spool
from terminald.mirror.schema import init_db, role_name, role_statements

__all__ = [
    "Heartbeat",
    "MirrorAlarm",
    "MirrorCopier",
    "MirrorError",
    "MirrorFork",
    "MirrorRejected",
    "MirrorSchemaMissing",
    "MirrorStatus",
    "MirrorUnavailable",
    "RestoreFailed",
    "RestoreReport",
    "init_db",
    "restore_from",
    "restore_spool",
    "role_name",
    "role_statements",
]
