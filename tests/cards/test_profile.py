"""The cn-ssc profile against the emulator's card logic in-process (no pcscd), and fuzzed answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.cards.channel import ApduSession, FunctionChannel
from drivers.cards.errors import CardError, CardUnreadable
from drivers.cards.model import CardData
from drivers.cards.profiles import PROFILES, UnknownProfile, get_profile
from drivers.cards.profiles.cn_ssc import CnSscProfile
from drivers.cards.profiles.cn_ssc_fields import ssn_check_digit, validate_card_number, validate_ssn
from terminald.sim.card import CardApplet, CardDescription, load_card
from tests.cards.expected import ERRORS, READS, SSC2


class Recorder:
    """An in-process card: the emulator's applet behind a channel that logs every command."""

    def __init__(self, desc: CardDescription) -> None:
        self.applet = CardApplet(desc)
        self.log: list[bytes] = []
        self.answers: list[bytes] = []

    def __call__(self, apdu: bytes) -> bytes:
        self.log.append(apdu)
        self.answers.append(self.applet.handle(apdu))
        return self.answers[-1]


def read(card: str | CardDescription, psam: str | None = "psam") -> tuple[CardData, Recorder]:
    desc = card if isinstance(card, CardDescription) else load_card(card)
    recorder = Recorder(desc)
    opener = None
    if psam is not None:
        psam_session = ApduSession(FunctionChannel(CardApplet(load_card(psam)).handle), name="PSAM")
        opener = lambda: psam_session  # noqa: E731
    data = CnSscProfile().read(ApduSession(FunctionChannel(recorder)), opener)
    return data, recorder


def variant(base: str, **changes: Any) -> CardDescription:
    import tomllib

    from terminald.sim.card import CARDS_DIR

    raw = tomllib.loads((CARDS_DIR / f"{base}.toml").read_text(encoding="utf-8"))
    fields = {**raw.get("fields", {}), **changes.pop("fields", {})}
    for key in changes.pop("drop", ()):
        fields.pop(key)
    return CardDescription.from_dict(base + "-variant", {**raw, **changes, "fields": fields})


@pytest.mark.parametrize("card", sorted(READS))
def test_bundled_cards_read_as_expected(card: str) -> None:
    data, _ = read(card)
    got = data.as_dict()
    for key, value in READS[card].items():
        assert got[key] == value, key


def test_plain_card_needs_one_apdu_per_field() -> None:
    data, rec = read("ssc2")
    assert data.as_dict() == SSC2
    # SELECT SSSE + 7 EF05 records + EF06: ssn, name, name extension (absent), sex, nation, birth date
    assert len(rec.log) == 14
    assert all(apdu[1] == 0xB2 and apdu[3] & 0x07 == 4 and apdu[3] >> 3 in (5, 6) for apdu in rec.log[1:])


def test_t0_card_gets_get_response_6c_resend_and_form_fallback() -> None:
    _, rec = read("ssc2_t0")
    ins = [a[1] for a in rec.log]
    assert 0xC0 in ins  # GET RESPONSE after 61xx
    assert bytes.fromhex("00A40000 02EF05".replace(" ", "")) in rec.log  # SELECT EF with P1=00
    reads = [a for a in rec.log if a[1] == 0xB2]
    assert reads[0][3] == 0x2C  # tried by SFI first
    assert any(a[3] == 0x04 and a[4] != reads[0][4] for a in reads)  # re-sent with the 6Cxx length


def test_tag_addressing_form_is_used_when_the_only_one() -> None:
    data, rec = read(variant("ssc2", read_forms=["tag"]))
    assert data.as_dict() == SSC2
    assert any(a[1] == 0xB2 and a[3] == 0x00 for a in rec.log)


def test_v1_card_has_sex_in_record_3_and_no_name_extension() -> None:
    desc = variant("ssc2", fields={"spec_version": "1.00"}, drop=["birthplace"])
    data, rec = read(desc)
    assert (data.sex, data.nation, data.birth_date, data.name) == ("1", "01", "1980-03-15", "张伟")
    assert bytes.fromhex("00B2033412") not in rec.log  # no name-extension read on 1.0


def test_ssc3_authenticates_through_psam_before_protected_records() -> None:
    data, rec = read("ssc3")
    assert data.name == "阿卜杜热合曼·买买提明·阿卜杜拉"
    ins = [a[1] for a in rec.log]
    assert ins.index(0x88) < ins.index(0x82)
    assert all(a[-2:] != b"\x69\x82" for a in rec.answers)  # authenticated up front, never refused


def test_ssc3_without_psam_is_psam_required() -> None:
    with pytest.raises(CardUnreadable) as info:
        read("ssc3", psam=None)
    assert info.value.detail == "PSAM required"
    assert info.value.sw == 0x6982


def test_ssc3_with_a_psam_of_other_keys_fails_authentication() -> None:
    desc = load_card("psam")
    other = CardDescription.from_dict("other-psam", {"kind": "psam", "master_key": "FF" * 16})
    assert other.master_key != desc.master_key
    recorder = Recorder(load_card("ssc3"))
    psam_session = ApduSession(FunctionChannel(CardApplet(other).handle), name="PSAM")
    with pytest.raises(CardUnreadable, match="internal authentication"):
        CnSscProfile().read(ApduSession(FunctionChannel(recorder)), lambda: psam_session)


@pytest.mark.parametrize("card", sorted(ERRORS))
def test_error_cards(card: str) -> None:
    code, fragment, sw = ERRORS[card]
    with pytest.raises(CardError) as info:
        read(card)
    assert info.value.code == code
    assert fragment in info.value.detail
    assert getattr(info.value, "sw", None) == sw


def test_bad_ssn_check_digit_is_unreadable_not_garbage() -> None:
    with pytest.raises(CardUnreadable, match="check digit"):
        read(variant("ssc2", fields={"ssn": "110105198003150038"}))


def test_missing_required_field() -> None:
    with pytest.raises(CardUnreadable, match="no card_number"):
        read(variant("ssc2", drop=["card_number"]))


def test_ssn_and_card_number_validation() -> None:
    assert ssn_check_digit("11010519491231002") == "X"
    assert validate_ssn("11010519491231002x") == "11010519491231002X"
    for bad in ("1101051949123100", "11010519491331002X", "1101051949123100AX"):
        with pytest.raises(CardUnreadable):
            validate_ssn(bad)
    assert validate_card_number("a10000123") == "A10000123"
    with pytest.raises(CardUnreadable):
        validate_card_number("A1000-123")


def test_profile_registry() -> None:
    assert isinstance(get_profile("cn-ssc"), CnSscProfile)
    assert set(PROFILES) == {"cn-ssc"}
    with pytest.raises(UnknownProfile, match="known: cn-ssc"):
        get_profile("nope")


def test_external_authenticate_counts_tries_down_to_locked() -> None:
    applet = CardApplet(load_card("ssc3"))
    answers = []
    for _ in range(3):
        applet.handle(bytes.fromhex("0084000008"))
        answers.append(applet.handle(bytes.fromhex("0082000A10") + b"\x00" * 16)[-2:].hex().upper())
    assert answers == ["63C2", "63C1", "6983"]


# -- fuzzing: whatever the card answers, the profile raises a CardError or returns checked data ------


def _run_with(answer: Callable[[int, bytes], bytes], psam: bool = True) -> None:
    count = [0]

    def channel(apdu: bytes) -> bytes:
        count[0] += 1
        if count[0] > 200:
            raise AssertionError("the profile does not stop")
        return answer(count[0] - 1, apdu)

    psam_session = ApduSession(FunctionChannel(lambda a: answer(0, a)), name="PSAM")
    try:
        data = CnSscProfile().read(
            ApduSession(FunctionChannel(channel)), (lambda: psam_session) if psam else None
        )
    except CardError:
        return
    assert data.card_number and data.ssn and data.name
    validate_ssn(data.ssn)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=30))
def test_random_answers_only_give_card_errors(answers: list[bytes]) -> None:
    _run_with(lambda i, _apdu: answers[i % len(answers)])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["ssc2", "ssc2_t0", "ssc3"]),
    st.integers(0, 40),
    st.integers(0, 60),
    st.integers(0, 255),
)
def test_corrupted_genuine_answers_only_give_card_errors(card: str, which: int, pos: int, byte: int) -> None:
    applet = CardApplet(load_card(card))
    psam = CardApplet(load_card("psam"))

    def answer(i: int, apdu: bytes) -> bytes:
        genuine = (psam if apdu[0] == 0x80 else applet).handle(apdu)
        if i == which:
            raw = bytearray(genuine)
            raw[pos % len(raw)] = byte
            return bytes(raw)
        return genuine

    _run_with(answer)
