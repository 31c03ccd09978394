"""Canonical JSON and the hash chain of upstream protocol v1.

``hash`` is the SHA-256 (hex) of the canonical JSON of the wire record without
``hash``; ``prev_hash`` of seq 1 is 64 zeros. Central recomputes the same
bytes, so the encoding here is part of the contract: keys sorted, separators
``,`` and ``:``, UTF-8, non-ASCII kept as is. NaN and infinities are refused
because they are not JSON and central could not reproduce the hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from json.encoder import encode_basestring
from typing import Any

from spool.errors import InvalidRequest

__all__ = ["GENESIS_HASH", "canonical_json", "canonical_text", "digest", "record_hash", "record_hash_spliced",
           "record_text", "verify_links"]

GENESIS_HASH = "0" * 64


# What json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# allow_nan=False) would build on every call, built once: it keeps no state between
# calls, so threads share it.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_text(obj: object) -> str:
    """Encode ``obj`` as canonical JSON text; InvalidRequest if it is not JSON."""
    try:
        return _ENCODER.encode(obj)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"value is not canonical JSON: {exc}") from exc


def canonical_json(obj: object) -> bytes:
    """Encode ``obj`` as canonical JSON bytes; InvalidRequest if it is not JSON."""
    return canonical_text(obj).encode("utf-8")


def digest(obj: object) -> str:
    """SHA-256 hex of the canonical JSON of ``obj`` (used for idempotency bodies)."""
    return hashlib.sha256(canonical_json(obj)).hexdigest()


def record_text(wire: Mapping[str, object]) -> str:
    """The text a wire record's ``hash`` is the SHA-256 of (its canonical JSON without ``hash``):
    what the mirror keeps as the record itself."""
    return canonical_text({k: v for k, v in wire.items() if k != "hash"})


def record_hash(wire_without_hash: Mapping[str, object]) -> str:
    """The ``hash`` of a wire record; a ``hash`` key, if present, is ignored."""
    return hashlib.sha256(record_text(wire_without_hash).encode("utf-8")).hexdigest()


def record_hash_spliced(envelope: Mapping[str, object], payload_json: str) -> str:
    """``record_hash`` of ``envelope`` plus ``"payload"`` already encoded as canonical JSON.

    The writer encodes each payload once (to store it) and splices that text
    in here instead of encoding it again; sorted keys make the position exact.
    """
    text = _spliced_scalars(envelope, payload_json)
    if text is not None:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
    head = {k: v for k, v in envelope.items() if k < "payload" and k != "hash"}
    tail = {k: v for k, v in envelope.items() if k > "payload"}
    parts = [canonical_json(head).decode("utf-8")[:-1] if head else "{"]
    parts.append(("," if head else "") + '"payload":' + payload_json)
    parts.append(("," + canonical_json(tail).decode("utf-8")[1:]) if tail else "}")
    return hashlib.sha256("".join(parts).encode("utf-8")).hexdigest()


def _scalar_json(value: object) -> str | None:
    """The canonical JSON of a str, int, bool or None, exactly as ``canonical_json`` writes it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if type(value) is str:
        return encode_basestring(value)  # what json uses for a str with ensure_ascii=False
    if type(value) is int:
        return int.__repr__(value)  # what json uses for an int
    return None


def _spliced_scalars(envelope: Mapping[str, object], payload_json: str) -> str | None:
    """``record_hash_spliced``'s text, field by field, for an envelope of str keys and scalar values.

    What the writer hashes on every append (ids, times, seq, flags): two ``json.dumps``
    of small dicts cost more than the rest of the record's hashing. None for anything
    else, which ``canonical_json`` encodes (and refuses) as before.
    """
    try:
        keys = sorted(envelope)
    except TypeError:
        return None
    parts: list[str] = []
    spliced = False
    for key in keys:
        if type(key) is not str:
            return None
        if key == "hash" or key == "payload":
            continue
        value = _scalar_json(envelope[key])
        if value is None:
            return None
        if not spliced and key > "payload":
            parts.append('"payload":' + payload_json)
            spliced = True
        parts.append(encode_basestring(key) + ":" + value)
    if not spliced:
        parts.append('"payload":' + payload_json)
    return "{" + ",".join(parts) + "}"


def verify_links(
    wires: Iterable[Mapping[str, Any]], prev_seq: int, prev_hash: str, terminal_id: str | None = None
) -> list[str]:
    """Check consecutive wire records against each other; return problems, one per line.

    ``prev_seq``/``prev_hash`` describe the record just before the first one
    (0 and GENESIS_HASH at the start of the chain, or a prune checkpoint).
    """
    problems: list[str] = []
    expected_seq, expected_prev = prev_seq + 1, prev_hash
    for wire in wires:
        seq = wire.get("seq")
        if seq != expected_seq:
            problems.append(f"seq {seq}: expected seq {expected_seq} (gap or duplicate)")
        if wire.get("prev_hash") != expected_prev:
            problems.append(f"seq {seq}: prev_hash does not match the hash of seq {expected_seq - 1}")
        if terminal_id is not None and wire.get("terminal_id") != terminal_id:
            problems.append(f"seq {seq}: terminal_id is not {terminal_id!r}")
        try:
            computed = record_hash(wire)
        except InvalidRequest:
            computed = ""
        if computed != wire.get("hash"):
            problems.append(f"seq {seq}: hash does not match the record's content")
        expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
        expected_prev = str(wire.get("hash"))
    return problems
