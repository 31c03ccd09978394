"""Card reads: APDUs per full read, and time per read against a bare pyscard loop.

Uses real pcscd with the vpcd driver (an already running one, or one started
here and stopped at the end) and the emulated `ssc2` card in slot 0. For each
card it reports how many APDUs a full read sends against how many the fields
need (SELECT + one READ RECORD per CardData field record), then times
`CardService.read()` against a bare pyscard loop that connects, sends exactly
the same APDUs and disconnects, alternating both in the same run; the ratio
is the median over adjacent (ours, bare) pairs.

    .venv/bin/python bench/card_read.py [--reads 300]

Target: overhead <= 1.3x. Ends with one RESULT line.
"""

from __future__ import annotations

import argparse
import fcntl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from smartcard import scard

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.cards import CardService
from drivers.cards.channel import ApduSession, FunctionChannel
from drivers.cards.profiles.cn_ssc import CnSscProfile
from terminald.sim.card import VPCD_PORT, CardApplet, CardEmulator, load_card
from terminald.sim.pcscd import ensure_pcscd

READER = "Virtual PCD 00 00"
# SELECT SSSE + EF05 records 1-7 + EF06 ssn, name, name extension, sex, nation, birth date
APDUS_NEEDED = 1 + 7 + 6


def wait_for(predicate: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"card_read: timed out waiting for {what}")
        time.sleep(0.05)


def card_present() -> bool:
    _, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    try:
        hresult, states = scard.SCardGetStatusChange(ctx, 0, [(READER, scard.SCARD_STATE_UNAWARE)])
        return hresult == scard.SCARD_S_SUCCESS and bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(ctx)


def apdus_of(card: str) -> list[bytes]:
    """The exact command APDUs the cn-ssc profile sends to this card (recorded in-process)."""
    applet = CardApplet(load_card(card))
    sent: list[bytes] = []

    def channel(apdu: bytes) -> bytes:
        sent.append(apdu)
        return applet.handle(apdu)

    CnSscProfile().read(ApduSession(FunctionChannel(channel)), None)
    return sent


def bare_read(ctx: object, apdus: list[bytes]) -> None:
    hresult, card, _ = scard.SCardConnect(ctx, READER, scard.SCARD_SHARE_EXCLUSIVE, scard.SCARD_PROTOCOL_T0)
    assert hresult == scard.SCARD_S_SUCCESS, hex(hresult)
    for apdu in apdus:
        hresult, _ = scard.SCardTransmit(card, scard.SCARD_PCI_T0, list(apdu))
        assert hresult == scard.SCARD_S_SUCCESS
    scard.SCardDisconnect(card, scard.SCARD_RESET_CARD)


def measure(card: str, reads: int) -> tuple[int, float, float, float]:
    emulator = CardEmulator(card, slot=0)
    emulator.insert()
    try:
        wait_for(card_present, 10, "the card in slot 0")
        service = CardService()
        first = service.read(READER, timeout_s=5)
        apdus = apdus_of(card)
        assert first.apdus == len(apdus), (first.apdus, len(apdus))
        _, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        ours: list[float] = []
        bare: list[float] = []
        for i in range(reads):
            for which in (0, 1) if i % 2 else (1, 0):  # alternate the order to cancel drift
                started = time.perf_counter()
                if which:
                    service.read(READER)
                else:
                    bare_read(ctx, apdus)
                (ours if which else bare).append(time.perf_counter() - started)
        scard.SCardReleaseContext(ctx)
        # Each read is paired with the bare loop run right next to it, so a busy
        # machine slows both sides of a pair; the ratio is the median of the pairs.
        ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
        return first.apdus, statistics.median(ours) * 1000, statistics.median(bare) * 1000, ratio
    finally:
        emulator.remove()
        wait_for(lambda: not card_present(), 10, "slot 0 to empty")
        time.sleep(1.0)  # let pcscd's presence poll see the removal before another card goes in


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=300)
    args = parser.parse_args()

    try:
        daemon = ensure_pcscd()
    except RuntimeError as exc:
        raise SystemExit(f"card_read: {exc}") from exc
    lock_path = Path(tempfile.gettempdir()) / f"terminald-vpcd-{VPCD_PORT}.lock"
    try:
        with lock_path.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # share slot 0 politely with running tests
            results = {card: measure(card, args.reads) for card in ("ssc2", "ssc2_t0")}
    finally:
        daemon.stop()

    print(f"{'card':10} {'APDUs':>6} {'needed':>7} {'read ms':>8} {'bare ms':>8} {'ratio':>6}")
    for card, (apdus, ours, bare, ratio) in results.items():
        print(f"{card:10} {apdus:6d} {APDUS_NEEDED:7d} {ours:8.3f} {bare:8.3f} {ratio:6.2f}")
    apdus, ours, bare, ratio = results["ssc2"]
    t0_apdus = results["ssc2_t0"][0]
    print(
        f"RESULT apdus_per_read={apdus} apdus_needed={APDUS_NEEDED} t0_fallback_apdus_per_read={t0_apdus} "
        f"read_ms={ours:.3f} bare_ms={bare:.3f} overhead={ratio:.2f}x target=1.30x"
    )


if __name__ == "__main__":
    main()
