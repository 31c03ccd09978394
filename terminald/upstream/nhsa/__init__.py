"""The national medical-security platform (`upstream.protocol = "nhsa"`): the adapter and its pieces.

The adapter (`NhsaAdapter`, the uploader's `Adapter`):

    adapter.py    NhsaAdapter: sync, upload, probe, reconcile for the protocol-neutral uploader
    lanes.py      each person's records in seq order, up to [nhsa] concurrency persons at once
    settle.py     one record's calls: 1101 -> (2101) -> 2102, or 2103; what a crash left open
    session.py    the calls as the adapter makes them: signed in, 2601 until definite
    sale.py       a spooled record as the platform's inputs (lines, feedetl_sn, business time)
    outcome.py    the platform's answers as the spool's outcomes (settlement split, reasons)
    edge.py       the adapter's errors, as the uploader's (terminald/upload/errors.py)
    person.py     who a record is about (the order key)
    reconcile.py  3201 daily totals

The protocol pieces:

    amounts.py    integer fen <-> 2-decimal yuan on the wire, exactly
    wirejson.py   JSON both ways without a float
    msgid.py      the 30-character message id
    envelope.py   the request envelope; the answer read as Ok, Refused or UnknownOutcome
    profiles.py   regional differences as data (profile_data/*.toml)
    calllog.py    every call, written before it is sent and completed after (spool file, "nhsa")
    client.py     one logged call over httpx; sign-in; 2601 reversal of a call left open
    redact.py     masking of the platform's messages
    errors.py     the error tree

contracts/upstream-nhsa.md is the protocol; docs/nhsa.md describes these modules.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from terminald.upstream.nhsa.adapter import NhsaAdapter
    from terminald.upstream.nhsa.person import person_key

__all__ = ["NhsaAdapter", "person_key", "standing_records"]


def __getattr__(name: str) -> Any:
    # Imported on first use: the config imports the profiles from this package, and the adapter
    # imports the uploader's pieces, which import the config.
    if name == "NhsaAdapter":
        from terminald.upstream.nhsa.adapter import NhsaAdapter

        return NhsaAdapter
    if name == "person_key":  # the re-entry book's `person_of`, handed to it by the daemon
        from terminald.upstream.nhsa.person import person_key

        return person_key
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def standing_records(spool_path: str | Path) -> set[str]:
    """The spool records whose 2102/2103 stands at the platform (`CallLog.standing_records`): the
    re-entry book's `standing_records`, bound to the spool's path by the daemon."""
    from terminald.upstream.nhsa.calllog import CallLog

    return CallLog.standing_records(spool_path)
