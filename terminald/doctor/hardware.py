"""Doctor checks of the hardware: pcscd, card readers and cards, printers (and a test page)."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable
from fnmatch import fnmatchcase
from pathlib import Path

from terminald.config import Config
from terminald.doctor.base import FAIL, OK, PROBE_TIMEOUT_S, WARN, Check, ProbeTimeout, within

__all__ = ["check_pcscd", "check_printers", "check_readers"]

PCSCD_SOCKET = "/run/pcscd/pcscd.comm"


def _pcscd_running(proc: Path = Path("/proc")) -> bool:
    for entry in proc.iterdir() if proc.is_dir() else ():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "pcscd":
                    return True
    return False


def check_pcscd(socket_path: str | None = None, proc: Path = Path("/proc")) -> list[Check]:
    path = Path(socket_path or os.environ.get("PCSCLITE_CSOCK_NAME") or PCSCD_SOCKET)
    is_socket = False
    with contextlib.suppress(OSError):
        is_socket = stat.S_ISSOCK(path.stat().st_mode)
    running = _pcscd_running(proc)
    if is_socket:
        how = "running" if running else "socket-activated, starts on first use"
        return [Check(OK, "pcscd", f"socket {path} ({how})")]
    if running:
        return [Check(WARN, "pcscd", f"pcscd runs but its socket {path} is missing",
                      "restart it: sudo systemctl restart pcscd.socket pcscd.service")]
    return [Check(FAIL, "pcscd", "pcscd is not running: no card can be read",
                  "sudo apt-get install pcscd && sudo systemctl enable --now pcscd.socket")]


def _reader_states(timeout_s: float) -> list[tuple[str, bool]]:
    from drivers.cards.pcsc import PcscContext

    def probe() -> list[tuple[str, bool]]:
        with PcscContext() as ctx:
            names = ctx.list_readers()
            if not names:
                return []
            states = ctx.wait([(n, 0) for n in names], 0) or []
            present = {s.name: s.present for s in states}
            return [(n, present.get(n, False)) for n in names]

    return within(timeout_s, probe)


def check_readers(cfg: Config, probe: Callable[[float], list[tuple[str, bool]]] = _reader_states,
                  timeout_s: float = PROBE_TIMEOUT_S) -> list[Check]:
    from drivers.errors import DriverError

    try:
        readers = probe(timeout_s)
    except (DriverError, ProbeTimeout) as exc:
        return [Check(FAIL, "readers", f"cannot list card readers: {getattr(exc, 'detail', exc)}",
                      "check pcscd: sudo systemctl status pcscd; journalctl -u pcscd")]
    psam = cfg.card.psam_reader
    cards = [(n, present) for n, present in readers if n != psam]
    if cfg.card.readers:
        cards = [(n, p) for n, p in cards if any(fnmatchcase(n, pat) or pat in n for pat in cfg.card.readers)]
    checks: list[Check] = []
    if not cards:
        wanted = f" matching {', '.join(cfg.card.readers)}" if cfg.card.readers else ""
        status = FAIL if cfg.card.readers else WARN
        seen = f" (pcscd sees: {', '.join(n for n, _ in readers)})" if readers else ""
        checks.append(Check(status, "readers", f"no card reader{wanted} connected{seen}",
                            "plug the reader in (USB); `pcsc_scan` lists what pcscd sees; "
                            "fix [card] readers in the config if the name changed"))
    for name, present in cards:
        checks.append(Check(OK, "reader", f"{name}: " + ("card present" if present else
                                                         "ready, no card (insert one to test a read)")))
    if psam:
        found = [p for n, p in readers if n == psam]
        if not found:
            checks.append(Check(FAIL, "psam", f"PSAM reader {psam!r} not found",
                                "check the PSAM slot's reader name with `pcsc_scan`; fix [card] psam_reader"))
        elif not found[0]:
            checks.append(Check(FAIL, "psam", f"no PSAM card in {psam!r}", "insert the PSAM card"))
        else:
            checks.append(Check(OK, "psam", f"PSAM present in {psam}"))
    return checks


_PRINTER_FIX = {
    "paper_near_end": (WARN, "paper running low", "have a new paper roll ready"),
    "paper_out": (FAIL, "paper out", "load a new paper roll and close the cover"),
    "cover_open": (FAIL, "cover open", "close the printer cover"),
    "offline": (FAIL, "cannot be reached", "check power, cable / network address and the URI"),
    "unknown": (WARN, "did not answer the status query (some printers never do)",
                "print a test page: terminald doctor --print"),
}


def _printer_state(uri: str, timeout_s: float) -> str:
    from drivers.printers.status import query_status
    from drivers.printers.transports import open_transport

    def probe() -> str:
        transport = open_transport(uri)
        try:
            return query_status(transport, timeout_s=min(1.0, timeout_s))
        finally:
            transport.close()

    return within(timeout_s, probe)


def check_printers(cfg: Config, print_page: bool = False,
                   probe: Callable[[str, float], str] = _printer_state,
                   timeout_s: float = PROBE_TIMEOUT_S) -> list[Check]:
    from drivers.errors import DriverError

    checks: list[Check] = []
    for entry in cfg.printer_entries:
        label = f"{entry.name} ({entry.uri})"
        try:
            state = probe(entry.uri, timeout_s)
        except DriverError as exc:
            checks.append(Check(FAIL, "printer", f"{label}: {getattr(exc, 'detail', exc)}",
                                "fix the printer's uri in [[printers]] (see docs/operations.md)"))
            continue
        except ProbeTimeout as exc:
            state = "offline"
            checks.append(Check(FAIL, "printer", f"{label}: status query hung ({exc})",
                                _PRINTER_FIX[state][2]))
            continue
        if state == "ok":
            checks.append(Check(OK, "printer", f"{label}: ready"))
        else:
            status, what, fix = _PRINTER_FIX.get(state, _PRINTER_FIX["unknown"])
            checks.append(Check(status, "printer", f"{label}: {what}", fix))
        if print_page:
            checks.append(_test_page(cfg, entry.name))
    return checks


def _test_page(cfg: Config, name: str) -> Check:
    from terminald.cli.printing import print_test_page

    try:
        code = print_test_page(cfg, name)
    except Exception as exc:  # a driver or template bug must still give a line, not a traceback
        return Check(FAIL, "test page", f"{name}: {type(exc).__name__}", "see `terminald print test` output")
    if code == 0:
        return Check(OK, "test page", f"{name}: sent; check the paper")
    return Check(FAIL, "test page", f"{name}: not printed", "see the message above")
