"""pcscd for the simulators: use the one running, or start our own.

The card emulator plugs into pcscd's vpcd driver, so a demo or a test needs a
pcscd that lists the "Virtual PCD" readers. If one already answers, it is
used as is and never stopped; otherwise `pcscd --foreground` is started and
only that process is stopped afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

VPCD_DRIVER_CONF = Path("/etc/reader.conf.d/vpcd")


def vpcd_readers() -> list[str]:
    """The Virtual PCD readers pcscd lists now ([] when pcscd does not answer)."""
    from smartcard import scard

    hresult, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        return []
    try:
        hresult, names = scard.SCardListReaders(ctx, [])
        return [n for n in names if n.startswith("Virtual PCD")] if hresult == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(ctx)


def unavailable_reason() -> str | None:
    if shutil.which("pcscd") is None:
        return "pcscd is not installed (apt-get install pcscd)"
    if not VPCD_DRIVER_CONF.exists():
        return "the vpcd driver is not installed (apt-get install vsmartcard-vpcd)"
    return None


@dataclass
class Pcscd:
    owned: bool
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout_s: float = 15.0) -> None:
        if not self.owned:
            raise RuntimeError("only a pcscd we started may be (re)started")
        log = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(["pcscd", "--foreground"], stdout=log, stderr=subprocess.STDOUT)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        while len(vpcd_readers()) < 2:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("pcscd did not list the vpcd readers (is another pcscd holding its socket?)")
            time.sleep(0.05)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if not self.owned:
            raise RuntimeError("never kill a pcscd this process did not start")
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.owned and self.proc is not None:
            self.kill(signal.SIGTERM)


def ensure_pcscd(log_path: Path | None = None) -> Pcscd:
    """A pcscd with the vpcd readers: the running one, or one we start (then `owned`)."""
    reason = unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    if vpcd_readers():
        return Pcscd(owned=False)
    daemon = Pcscd(owned=True, log_path=log_path)
    daemon.start()
    return daemon
