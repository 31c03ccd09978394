"""The transport contract and the URI helpers every transport shares.

A transport moves bytes to one printer. It is opened lazily (constructing one
never touches hardware), reconnects by itself on the next call after a
failure, and reports failures only as `PrinterUnavailable` (nothing sent) or
`PrintInterrupted` (maybe partly sent).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import SplitResult, parse_qsl, urlsplit

from drivers.errors import PrinterConfigError

__all__ = ["Transport", "parse_options", "positive_float", "split_uri"]

T = TypeVar("T")


@runtime_checkable
class Transport(Protocol):
    uri: str

    def write(self, data: bytes, *, job_id: str = "") -> None:
        """Send one job's bytes. `job_id` names the job where a transport
        keeps per-job output (preview); others ignore it."""

    def query(self, request: bytes, timeout_s: float) -> bytes | None:
        """Send a real-time request (DLE EOT n) and return what came back
        within `timeout_s`, or None. Raises PrinterUnavailable when the
        printer cannot be reached at all."""

    def close(self) -> None:
        """Release the device or connection; the transport stays usable."""


def split_uri(uri: str, scheme: str, grammar: str) -> SplitResult:
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise PrinterConfigError(f"bad printer URI {uri!r}; expected {grammar}") from exc
    if parts.scheme != scheme:
        raise PrinterConfigError(f"bad printer URI {uri!r}; expected {grammar}")
    if parts.fragment:
        raise PrinterConfigError(f"printer URI {uri!r} has a fragment; expected {grammar}")
    return parts


def parse_options(
    parts: SplitResult,
    allowed: Mapping[str, Callable[[str], T]],
    grammar: str,
) -> dict[str, T]:
    """Query options, each converted by its parser; an unknown or repeated
    option, or a value its parser refuses, is an error that restates the grammar."""
    out: dict[str, T] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise PrinterConfigError(f"bad options {parts.query!r}; expected {grammar}") from exc
    for key, value in pairs:
        if key not in allowed:
            raise PrinterConfigError(f"unknown option {key!r}; expected {grammar}")
        if key in out:
            raise PrinterConfigError(f"option {key!r} given twice; expected {grammar}")
        try:
            out[key] = allowed[key](value)
        except (ValueError, TypeError) as exc:
            raise PrinterConfigError(f"bad value {value!r} for {key!r}; expected {grammar}") from exc
    return out


def positive_float(value: str) -> float:
    f = float(value)
    if not 0 < f <= 3600:
        raise ValueError(value)
    return f
