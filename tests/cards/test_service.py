"""CardService without pcscd, pluggable profiles, and the pinned public surface."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import ClassVar

import pytest

import drivers.cards
from drivers.cards import CardData, CardService
from drivers.cards.apdu import Command
from drivers.cards.channel import ApduSession
from drivers.cards.profiles import PsamOpener, UnknownProfile
from tests.fixtures.pcsc import Pcscd, VCard, reader_name

_NO_PCSCD = """
import json, time
from drivers.cards import CardService, CardError
events = []
svc = CardService(on_event=lambda n, d: events.append(n))
svc.start()
time.sleep(0.3)
out = {"state": svc.state, "readers": svc.readers(), "events": events}
try:
    svc.read(timeout_s=0.2)
except CardError as exc:
    out["error"] = [type(exc).__name__, exc.code]
svc.stop()
out["stopped_state"] = svc.state
print(json.dumps(out))
"""


def test_no_pcscd_means_pcscd_unavailable_and_no_reader_errors() -> None:
    # Point the PC/SC client library at a socket nobody listens on: pcscd "not running".
    env = {**os.environ, "PCSCLITE_CSOCK_NAME": "/nonexistent/pcscd.comm"}
    proc = subprocess.run(
        [sys.executable, "-c", _NO_PCSCD], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(proc.stdout)
    assert out == {
        "state": "pcscd_unavailable",
        "readers": [],
        "events": [],
        "error": ["PcscdUnavailable", "no_reader"],
        "stopped_state": "pcscd_unavailable",
    }


def test_unknown_profile_fails_at_construction() -> None:
    with pytest.raises(UnknownProfile) as info:
        CardService(profile="de-egk")
    assert info.value.code == "unknown_profile"


class ChallengeProfile:
    """A second profile, added without touching the PC/SC layer: answers with the card's GET CHALLENGE."""

    name: ClassVar[str] = "challenge-only"

    def read(self, card: ApduSession, psam: PsamOpener | None) -> CardData:
        answer = card.exchange(Command(0x00, 0x84, 0x00, 0x00, le=8))
        return CardData(card_identifier=answer.data.hex().upper() if answer.ok else None)


@pytest.mark.pcsc
def test_a_second_profile_plugs_in(pcscd: Pcscd, vcard: VCard) -> None:
    vcard("ssc2")
    service = CardService(profile="challenge-only", profiles={"challenge-only": ChallengeProfile})
    result = service.read(reader_name(0), timeout_s=5)
    assert result.apdus == 1
    assert result.card.card_identifier is not None and len(result.card.card_identifier) == 16


def test_public_surface_is_pinned() -> None:
    assert sorted(drivers.cards.__all__) == [
        "CardData",
        "CardError",
        "CardLocked",
        "CardRead",
        "CardService",
        "CardUnreadable",
        "NoCard",
        "NoReader",
        "ReaderBusy",
        "ReaderInfo",
    ]
    assert list(CardData.__dataclass_fields__) == [
        "card_number",
        "ssn",
        "name",
        "sex",
        "birth_date",
        "nation",
        "issuer_code",
        "issued_on",
        "expires_on",
        "card_type",
        "spec_version",
        "card_identifier",
    ]
    assert CardData(name="张伟").as_dict()["name"] == "张伟"


def test_error_codes_are_the_api_codes() -> None:
    from drivers.cards import errors

    codes: dict[type[errors.CardError], str] = {
        errors.NoReader: "no_reader",
        errors.PcscdUnavailable: "no_reader",
        errors.NoCard: "no_card",
        errors.CardUnreadable: "card_unreadable",
        errors.CardLocked: "card_locked",
        errors.ReaderBusy: "reader_busy",
    }
    from drivers.errors import DriverError

    for cls, code in codes.items():
        assert cls.code == code
        assert issubclass(cls, DriverError)
