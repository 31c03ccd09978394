"""The card emulator: descriptions, the CLI entry point, and the vpcd wire protocol (against a fake vpcd)."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from terminald.sim.card import CARDS_DIR, CardDescription, CardEmulator, DescriptionError, load_card, main

BUNDLED = {
    "ssc2",
    "ssc2_t0",
    "ssc3",
    "psam",
    "locked",
    "foreign",
    "removed_mid_read",
    "frozen",
    "expired",
}


def test_every_required_description_ships_and_loads() -> None:
    assert {p.stem for p in CARDS_DIR.glob("*.toml")} >= BUNDLED
    for name in BUNDLED:
        assert load_card(name).name == name


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("kind = [", "not valid TOML"),
        ('colour = "red"', "unknown keys"),
        ('kind = "bank"', "kind must be one of"),
        ('atr = "XYZ"', "non-hexadecimal"),
        ('[fields]\nname = "' + "长" * 16 + '"', "does not fit"),
        ('[fields]\nissued_on = "2023-02-30"', "issued_on"),
        ('[fields]\nshoe_size = "42"', "unknown fields"),
        ('t0 = "false"', "t0 must be a bool"),
        ("remove_after_apdus = true", "remove_after_apdus must be a int"),
        ('read_forms = ["sfi", "by-magic"]', "read_forms within"),
    ],
)
def test_bad_descriptions_are_description_errors(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DescriptionError, match=fragment):
        load_card(path)


def test_missing_description_file(tmp_path: Path) -> None:
    with pytest.raises(DescriptionError, match="cannot read"):
        load_card(tmp_path / "nope.toml")


def test_cli_reports_a_bad_card_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--card", str(tmp_path / "nope.toml")])
    assert info.value.code == 2
    assert "cannot read card description" in capsys.readouterr().err


class FakeVpcd:
    """A listening socket speaking vpcd's side of the protocol, on an ephemeral port."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.conn: socket.socket | None = None

    def accept(self) -> None:
        self.server.settimeout(10)
        self.conn, _ = self.server.accept()
        self.conn.settimeout(10)

    def send(self, payload: bytes) -> bytes | None:
        assert self.conn is not None
        self.conn.sendall(struct.pack(">H", len(payload)) + payload)
        if len(payload) == 1 and payload[0] != 4:
            return None
        head = self._recv(2)
        return self._recv(struct.unpack(">H", head)[0])

    def _recv(self, n: int) -> bytes:
        assert self.conn is not None
        buf = b""
        while len(buf) < n:
            chunk = self.conn.recv(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    def close(self) -> None:
        if self.conn:
            self.conn.close()
        self.server.close()


@pytest.fixture
def fake_vpcd() -> Iterator[FakeVpcd]:
    vpcd = FakeVpcd()
    yield vpcd
    vpcd.close()


def test_emulator_speaks_the_vpcd_protocol(fake_vpcd: FakeVpcd) -> None:
    emulator = CardEmulator("ssc2", port=fake_vpcd.port)
    emulator.insert()
    try:
        fake_vpcd.accept()
        assert fake_vpcd.send(b"\x04") == load_card("ssc2").atr
        assert fake_vpcd.send(b"\x01") is None  # power on: no answer
        select = bytes.fromhex("00A404000F7378312E73682EC9E7BBE1B1A3D5CF")
        assert fake_vpcd.send(select) == b"\x90\x00"
        record = fake_vpcd.send(bytes.fromhex("00B2072C0B"))
        assert record == bytes.fromhex("0709") + b"A10000123" + b"\x90\x00"
        assert fake_vpcd.send(b"\x00\xb2") == b"\x67\x00"  # malformed APDU
    finally:
        emulator.remove()
    assert not emulator.inserted


def test_emulator_removes_itself_after_n_apdus(fake_vpcd: FakeVpcd) -> None:
    raw = {"remove_after_apdus": 2, "fields": {"card_number": "A10000123"}}
    desc = CardDescription.from_dict("short", raw)
    emulator = CardEmulator(desc, port=fake_vpcd.port)
    emulator.insert()
    fake_vpcd.accept()
    assert fake_vpcd.send(bytes.fromhex("0084000008")) is not None
    with pytest.raises((EOFError, ConnectionResetError)):
        fake_vpcd.send(bytes.fromhex("0084000008"))
    emulator.remove(timeout_s=10)
    assert not emulator.inserted
