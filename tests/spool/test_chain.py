"""Canonical JSON and the hash chain, against hand-computed bytes."""

from __future__ import annotations

import hashlib

import pytest

from spool import GENESIS_HASH, InvalidRequest, canonical_json, digest, record_hash
from spool.chain import record_hash_spliced, verify_links


def test_canonical_json_sorts_keys_compacts_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": "阿莫西林"}}) == (
        '{"a":{"c":"阿莫西林","d":[1,2]},"b":1}'.encode()
    )
    assert canonical_json(None) == b"null"
    assert canonical_json({"x": 1.5, "y": True}) == b'{"x":1.5,"y":true}'


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {"k": object()}, {1j: 2}])
def test_non_json_values_are_refused(bad: object) -> None:
    with pytest.raises(InvalidRequest):
        canonical_json(bad)


def test_hashes_are_sha256_of_the_canonical_bytes() -> None:
    wire = {"seq": 1, "prev_hash": GENESIS_HASH, "payload": {"名": "张三"}}
    expected = hashlib.sha256(
        ('{"payload":{"名":"张三"},"prev_hash":"' + "0" * 64 + '","seq":1}').encode()
    ).hexdigest()
    assert record_hash(wire) == expected
    assert record_hash(wire | {"hash": "ignored"}) == expected
    assert digest({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()
    assert GENESIS_HASH == "0" * 64


def _chain(n: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        wire: dict[str, object] = {"seq": seq, "terminal_id": "T", "prev_hash": prev, "payload": {"i": seq}}
        wire["hash"] = record_hash(wire)
        prev = str(wire["hash"])
        out.append(wire)
    return out


def test_verify_links_accepts_a_good_chain_and_pinpoints_damage() -> None:
    chain = _chain(5)
    assert verify_links(chain, 0, GENESIS_HASH, "T") == []
    edited = [dict(w) for w in chain]
    edited[2]["payload"] = {"i": 999}
    problems = verify_links(edited, 0, GENESIS_HASH, "T")
    assert problems == ["seq 3: hash does not match the record's content"]
    gap = chain[:2] + chain[3:]
    assert any("seq 4: expected seq 3" in p for p in verify_links(gap, 0, GENESIS_HASH))
    assert any("terminal_id" in p for p in verify_links(chain, 0, GENESIS_HASH, "OTHER"))
    assert verify_links(chain[2:], 2, str(chain[1]["hash"])) == []
    assert verify_links(chain[2:], 2, GENESIS_HASH) == ["seq 3: prev_hash does not match the hash of seq 2"]


@pytest.mark.parametrize(
    "envelope",
    [
        {"seq": 1, "prev_hash": GENESIS_HASH, "kind": "settlement", "terminal_id": "T"},
        {"seq": 1},
        {"kind": "x"},
        {},
        {"a": "x\\", "payload_x": 1, "pay": '","payload":'},
    ],
)
def test_spliced_hash_equals_the_plain_one(envelope: dict[str, object]) -> None:
    payload = {"名": "张三", "n": [1, 2.5, None], "total_fen": 10}
    assert record_hash_spliced(envelope, canonical_json(payload).decode()) == record_hash(
        envelope | {"payload": payload}
    )
