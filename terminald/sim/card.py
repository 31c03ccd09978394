"""An emulated social-security card (or PSAM) plugged into pcscd's vpcd driver.

vpcd listens on 127.0.0.1:35963 + slot; we connect (= insert the card) and
answer its messages: a 2-byte big-endian length, then either one control byte
(0 power off, 1 power on, 2 reset, 4 send the ATR) or a command APDU, which
gets a response APDU. Closing the socket removes the card. If pcscd goes away
while the card is "in the reader", the emulator reconnects when it is back.

What a card holds is its description (``card_desc.py``). Only the standard
library and the byte helpers of ``drivers.cards.apdu`` are used, so the card
logic is independent of pyscard.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import os
import socket
import struct
import threading
import time
from pathlib import Path

from drivers.cards.apdu import Command, parse_command
from terminald.sim.card_desc import (
    CARDS_DIR,
    CardDescription,
    DescriptionError,
    card_key,
    cryptogram,
    load_card,
)

__all__ = [
    "CARDS_DIR",
    "CardApplet",
    "CardDescription",
    "CardEmulator",
    "DescriptionError",
    "load_card",
    "main",
    "run",
]

VPCD_PORT = 35963
SSSE_AID = bytes.fromhex("7378312E73682EC9E7BBE1B1A3D5CF")
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)  # Linux only


class CardApplet:
    """The card (or PSAM) logic without the socket: ``handle(apdu) -> response``; reset = power cycle."""

    def __init__(self, desc: CardDescription) -> None:
        self.desc = desc
        self.files = desc.records()
        self.tries = desc.ext_auth_tries
        ident = bytes.fromhex(desc.fields.get("card_identifier", ""))
        self.key = card_key(desc.master_key, ident) if desc.master_key and desc.kind == "ssc" else b""
        self.reset()

    def reset(self) -> None:
        self.in_ssse = False
        self.current_ef: int | None = None
        self.authed = False
        self.challenge: bytes | None = None
        self.pending = b""
        self.psam_key: bytes | None = None

    def handle(self, raw: bytes) -> bytes:
        try:
            cmd = parse_command(raw)
        except ValueError:
            return b"\x67\x00"
        if cmd.ins == 0xC0:
            return self._get_response(cmd)
        self.pending = b""
        data, sw = self._psam(cmd) if self.desc.kind == "psam" else self._card(cmd)
        if data and self.desc.t0:
            self.pending = data
            return bytes((0x61, len(data) & 0xFF))
        return data + sw.to_bytes(2, "big")

    def _get_response(self, cmd: Command) -> bytes:
        if not self.pending:
            return b"\x69\x85"
        le = cmd.le or 256
        if le < len(self.pending) and self.desc.strict_le:
            return bytes((0x6C, len(self.pending) & 0xFF))
        out, self.pending = self.pending[:le], self.pending[le:]
        return out + (bytes((0x61, len(self.pending) & 0xFF)) if self.pending else b"\x90\x00")

    def _card(self, cmd: Command) -> tuple[bytes, int]:
        if cmd.cla != 0x00:
            return b"", 0x6E00
        if cmd.ins == 0xA4:
            return self._select(cmd)
        if self.desc.kind != "ssc":
            return b"", 0x6D00
        if cmd.ins == 0xB2:
            return self._read_record(cmd)
        if cmd.ins == 0x84:
            self.challenge = os.urandom(8)
            return self.challenge, 0x9000
        if cmd.ins == 0x88 and self.key and len(cmd.data) == 8:
            return cryptogram(self.key, b"INT", cmd.data), 0x9000
        if cmd.ins == 0x82 and self.key:
            return self._external_auth(cmd)
        return b"", 0x6D00

    def _select(self, cmd: Command) -> tuple[bytes, int]:
        if cmd.p1 == 0x04:
            if self.desc.kind != "ssc" or cmd.data != SSSE_AID:
                return b"", 0x6A82
            if self.desc.locked:
                return b"", 0x9303
            self.in_ssse, self.current_ef = True, None
            return b"", 0x9000
        if cmd.p1 not in self.desc.select_ef_p1 or len(cmd.data) != 2:
            return b"", 0x6A86
        fid = int.from_bytes(cmd.data, "big")
        if not self.in_ssse or fid not in self.files:
            return b"", 0x6A82
        self.current_ef = fid
        return b"", 0x9000

    def _read_record(self, cmd: Command) -> tuple[bytes, int]:
        if not self.in_ssse:
            return b"", 0x6A82
        sfi, mode = cmd.p2 >> 3, cmd.p2 & 0x07
        if mode == 4 and sfi and "sfi" in self.desc.read_forms:
            fid, recno = 0xEF00 | sfi, cmd.p1
        elif cmd.p2 == 0x04 and "current" in self.desc.read_forms:
            if self.current_ef is None:
                return b"", 0x6986
            fid, recno = self.current_ef, cmd.p1
        elif cmd.p2 == 0x00 and "tag" in self.desc.read_forms:
            tag = bytes((cmd.p1,))
            found = [(f, i + 1) for f, recs in self.files.items() for i, r in enumerate(recs) if r[:1] == tag]
            if not found:
                return b"", 0x6A83
            fid, recno = found[0]
        else:
            return b"", 0x6A86
        records = self.files.get(fid)
        if records is None:
            return b"", 0x6A82
        if not 1 <= recno <= len(records) or not records[recno - 1]:
            return b"", 0x6A83
        names = {f"EF{fid & 0xFF:02X}", f"EF{fid & 0xFF:02X}:{recno}"}
        if not self.authed and names & self.desc.auth_required:
            return b"", 0x6982
        record = records[recno - 1]
        le = cmd.le or 256
        if self.desc.strict_le and le != 256 and le != len(record):
            return b"", 0x6C00 | len(record)
        return record[:le], 0x9000

    def _external_auth(self, cmd: Command) -> tuple[bytes, int]:
        if self.tries <= 0:
            return b"", 0x6983
        if self.challenge is None or len(cmd.data) != 16:
            return b"", 0x6985
        expected = cryptogram(self.key, b"EXT", self.challenge)
        self.challenge = None
        if hmac.compare_digest(expected, cmd.data):
            self.authed, self.tries = True, self.desc.ext_auth_tries
            return b"", 0x9000
        self.tries -= 1
        return b"", (0x63C0 | self.tries) if self.tries else 0x6983

    def _psam(self, cmd: Command) -> tuple[bytes, int]:
        if cmd.cla != 0x80:
            return b"", 0x6E00
        if cmd.ins == 0x1A:
            if len(cmd.data) != 16:
                return b"", 0x6700
            self.psam_key = card_key(self.desc.master_key, cmd.data)
            return b"", 0x9000
        if cmd.ins != 0xFA:
            return b"", 0x6D00
        if self.psam_key is None:
            return b"", 0x6985
        if cmd.p1 == 0x01 and len(cmd.data) == 24:
            good = hmac.compare_digest(cryptogram(self.psam_key, b"INT", cmd.data[:8]), cmd.data[8:])
            return b"", 0x9000 if good else 0x6988
        if cmd.p1 == 0x02 and len(cmd.data) == 8:
            return cryptogram(self.psam_key, b"EXT", cmd.data), 0x9000
        return b"", 0x6A86


class CardEmulator:
    """One card in one vpcd slot. ``insert()`` connects, ``remove()`` disconnects; both are idempotent."""

    def __init__(
        self,
        description: CardDescription | str | Path,
        slot: int = 0,
        host: str = "127.0.0.1",
        port: int | None = None,
    ) -> None:
        self.description = description if isinstance(description, CardDescription) else load_card(description)
        self.address = (host, port if port is not None else VPCD_PORT + slot)
        self.apdus = 0
        self._applet = CardApplet(self.description)
        self._inserted = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def inserted(self) -> bool:
        return self._inserted.is_set()

    def start(self) -> None:
        self.insert()

    def stop(self) -> None:
        self.remove()

    def insert(self) -> None:
        """Put the card in the reader; (re)connects to vpcd in the background until removed."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._inserted.set()
            self.apdus = 0
            name = f"vcard-{self.description.name}"
            self._thread = threading.Thread(target=self._run, name=name, daemon=True)
            self._thread.start()

    def remove(self, timeout_s: float = 5.0) -> None:
        """Pull the card out of the reader."""
        self._inserted.clear()
        self._close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _run(self) -> None:
        while self._inserted.is_set():
            try:
                sock = socket.create_connection(self.address, timeout=1.0)
            except OSError:  # vpcd (pcscd) not up yet: the card waits in the reader
                time.sleep(0.1)
                continue
            sock.settimeout(None)
            # vpcd writes the length and the body separately; without these, Nagle and
            # delayed ACKs add ~40 ms to every APDU.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sock = sock
            self._applet.reset()
            try:
                self._serve(sock)
            except (OSError, EOFError):
                pass  # pcscd went away or we were removed; the loop decides
            finally:
                self._close()

    def _recv(self, sock: socket.socket, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            if _QUICKACK is not None:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            chunk = sock.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def _serve(self, sock: socket.socket) -> None:
        while self._inserted.is_set():
            (length,) = struct.unpack(">H", self._recv(sock, 2))
            message = self._recv(sock, length)
            if length == 1:
                if message[0] in (0, 1, 2):
                    self._applet.reset()
                elif message[0] == 4:
                    sock.sendall(struct.pack(">H", len(self.description.atr)) + self.description.atr)
                continue
            self.apdus += 1
            limit = self.description.remove_after_apdus
            if limit and self.apdus >= limit:
                self._inserted.clear()  # pulled out in the middle of this command
                return
            if self.description.answer_delay_ms:
                time.sleep(self.description.answer_delay_ms / 1000)
            answer = self._applet.handle(message)
            sock.sendall(struct.pack(">H", len(answer)) + answer)


def run(card: str, slot: int) -> None:
    """Insert ``card`` (a file or a bundled name) into vpcd slot ``slot`` until Ctrl-C."""
    emulator = CardEmulator(card, slot=slot)
    emulator.insert()
    try:
        while emulator.inserted:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="terminald sim card", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--card",
        required=True,
        help="description file, or a bundled name: "
        + ", ".join(sorted(p.stem for p in CARDS_DIR.glob("*.toml"))),
    )
    parser.add_argument("--slot", type=int, default=0, help="vpcd slot (0 card, 1 PSAM)")
    args = parser.parse_args(argv)
    try:
        run(args.card, args.slot)
    except DescriptionError as exc:
        parser.exit(2, f"terminald sim card: {exc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
