"""The upstream adapters' name table, and the one interface each of them implements.

The uploader (terminald/upload/uploader.py) is one piece whatever central speaks: the order,
the backoff, the link state, outages, planned windows, alarms and halts. What it sends, and
how, is an adapter, chosen by `upstream.protocol` from `ADAPTERS`, the way a printer's
transport is chosen by its URI scheme:

    "v1"    terminald.upstream.v1     our own batch protocol (contracts/upstream-v1.md)
    "nhsa"  terminald.upstream.nhsa   the national medical-security platform, one call per
                                      business step (contracts/upstream-nhsa.md)

Each adapter is a package of its own; its errors are translated at its edge into the
uploader's (terminald/upload/errors.py): `Transient` (back off, try again: the link goes
offline), `Refused` (pause), `Halt` (stop until staff resume). Nothing else leaves an adapter.

An adapter never writes the spool's records itself: it hands central's outcomes to
`UpstreamHost.apply`, which writes them once, announces them and wakes the POS's waiters.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from terminald.errors import ConfigError

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    import httpx

    from spool import Record, Spool
    from terminald.config import Config
    from terminald.upload.notices import Notices
    from terminald.upload.results import RecordResult
    from terminald.upload.state import UploadState

__all__ = ["ADAPTERS", "Adapter", "UpstreamHost", "adapter_for", "protocols"]


class UpstreamHost(Protocol):
    """What an adapter may ask of the uploader that runs it."""

    spool: Spool
    cfg: Config
    tz: ZoneInfo
    state: UploadState  # the uploader's own tables (acknowledged seq, ...)

    def reached(self) -> None:
        """Central answered (anything definite): the link is online."""

    async def apply(self, results: list[RecordResult]) -> None:
        """Write central's outcomes to the spool once, announce them, wake the POS's waiters."""

    def alarm(self, code: str, message: str) -> bool:
        """Raise (or keep) an alarm; True when it is new."""

    def clear_alarm(self, code: str) -> None: ...

    def emit(self, name: str, data: dict[str, Any]) -> None:
        """Publish an event (observers subscribe through the daemon)."""

    def eligible(self, record: Record) -> bool:
        """May this pending record be sent now? False while it waits for its patient
        (nhsa.reentry = "patient_present")."""

    @property
    def stopping(self) -> bool:
        """The daemon is stopping: start no new call (one in flight gets its answer)."""


class Adapter(Protocol):
    """One central system's protocol, as the uploader drives it.

    Every method raises only the uploader's errors (terminald/upload/errors.py).
    """

    async def aclose(self) -> None: ...

    async def probe(self) -> None:
        """Return when central accepts work; raise Transient otherwise (idle probing)."""

    async def sync(self) -> Notices | None:
        """Once before sending, again after every halt: check what central holds against the
        spool (v1: the cursor) and finish what an earlier run left open (nhsa: sign in,
        reverse calls left `sent`). Returns central's notices, when the protocol has them."""

    async def notices(self, frozen_since: int | None) -> Notices | None:
        """Central's notices (downtime windows, frozen cards); None when the protocol has none."""

    async def upload(self) -> int:
        """Decide the next pending records the host finds eligible; return how many were
        decided (0: nothing left to send). Outcomes go through `host.apply` as they come."""

    async def flush(self) -> None:
        """Finish writing outcomes still being applied (the loop is ending or restarting)."""

    async def reconcile(self, date: str, local: dict[str, Any]) -> dict[str, Any]:
        """Compare the spool's totals of a business day (`local`: count and net sums of the
        accepted records, reports.py) with central's; the report reports.py returns."""

    def resume(self, *, restored_checked: bool = False) -> list[str]:
        """Staff resumed uploading: clear what the adapter holds back for staff by itself (nhsa:
        persons waiting after a refused reversal or a record it cannot finish) and look again
        (sync) before the next round. Returns the alarm codes cleared; [] when nothing was held
        (v1 holds nothing: its halts are the uploader's).

        `restored_checked`: staff say they checked the pending records of a spool rebuilt from
        the mirror with central (nhsa: the records held as `nhsa_restored_unverified` are sent
        from now on, the spool's restore marker goes). Only then: a resume for any other reason
        leaves that hold (`still_held`). v1 ignores it."""

    def still_held(self) -> list[str]:
        """The alarm codes of what the adapter holds until staff resume with `restored_checked`
        (nhsa: `nhsa_restored_unverified` while the spool's restore marker is there); [] when
        nothing (v1: always)."""


AdapterFactory = Callable[..., Adapter]

# protocol name -> "module:factory". The factory is called as
#   factory(host, transport=None) -> Adapter
# and raises ConfigError when its part of the configuration cannot be used.
ADAPTERS: dict[str, str] = {
    "v1": "terminald.upstream.v1:V1Adapter",
    "nhsa": "terminald.upstream.nhsa:NhsaAdapter",
}


def protocols() -> list[str]:
    return sorted(ADAPTERS)


def adapter_for(
    protocol: str, host: UpstreamHost, *, transport: httpx.AsyncBaseTransport | None = None
) -> Adapter:
    """The adapter for `protocol`, made for `host` (ConfigError for an unknown name)."""
    target = ADAPTERS.get(protocol)
    if target is None:
        raise ConfigError(f"upstream.protocol {protocol!r} is not one of {', '.join(protocols())}")
    module_name, _, factory_name = target.partition(":")
    factory: AdapterFactory = getattr(importlib.import_module(module_name), factory_name)
    return factory(host, transport=transport)
