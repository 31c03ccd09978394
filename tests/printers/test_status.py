"""DLE EOT status parsing, fuzzed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from drivers.errors import PrinterError, PrinterUnavailable
from drivers.printers.status import STATES, classify, query_status, reply_byte, valid

byte_or_none = st.none() | st.integers(0, 255)


@given(st.integers(0, 255))
def test_valid_is_the_fixed_bit_pattern(b: int) -> None:
    assert valid(b) == (b & 0x93 == 0x12)


@given(st.binary(max_size=16) | st.none())
def test_reply_byte_is_only_ever_a_valid_byte(reply: bytes | None) -> None:
    got = reply_byte(reply)
    if got is None:
        assert not reply or not any(valid(b) for b in reply)
    else:
        assert valid(got) and reply is not None and got in reply


@given(byte_or_none, byte_or_none, byte_or_none)
def test_classify_is_total(p: int | None, c: int | None, paper: int | None) -> None:
    state = classify(p, c, paper)
    assert state in STATES
    if p is None:
        assert state == "unknown"
    elif state == "ok":
        assert not p & 0x08 and not (paper is not None and paper & 0x6C)


def test_classify_known_cases() -> None:
    assert classify(0x12, None, 0x12) == "ok"
    assert classify(0x12, None, 0x1E) == "paper_near_end"
    assert classify(0x12, None, 0x72) == "paper_out"
    assert classify(0x1A, 0x16, 0x12) == "cover_open"
    assert classify(0x1A, 0x32, None) == "paper_out"
    assert classify(0x1A, 0x12, 0x12) == "offline"
    assert classify(0x12, None, None) == "ok"


class ScriptedTransport:
    uri = "scripted://"

    def __init__(self, replies: list[bytes | Exception | None]) -> None:
        self.replies = replies

    def write(self, data: bytes, *, job_id: str = "") -> None:
        raise AssertionError("status must not print")

    def query(self, request: bytes, timeout_s: float) -> bytes | None:
        assert request[:2] == b"\x10\x04" and request[2] in (1, 2, 4)
        r = self.replies.pop(0) if self.replies else None
        if isinstance(r, Exception):
            raise r
        return r

    def close(self) -> None:
        pass


reply = st.one_of(
    st.none(),
    st.binary(max_size=8),
    st.sampled_from([PrinterUnavailable("off"), PrinterError("bad"), OSError("io")]),
)


@given(st.lists(reply, max_size=4))
def test_query_status_never_raises(replies: list[bytes | Exception | None]) -> None:
    state = query_status(ScriptedTransport(list(replies)), 0.01)
    assert state in STATES
    first = replies[0] if replies else None
    if isinstance(first, PrinterUnavailable):
        assert state == "offline"
    elif first is None or isinstance(first, Exception) or reply_byte(first) is None:
        assert state == "unknown"
