"""Preview transport: no printer, each job becomes files. The embedded default.

URI grammar: ``preview:///ABSOLUTE/DIRECTORY`` (no options)

Each job writes ``<job>.bin`` (the exact ESC/POS bytes) and ``<job>.png`` (the
receipt as the printer would print it). The directory is created if missing.
It answers status queries like a printer that is always ready.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from drivers.errors import PrinterConfigError, PrinterUnavailable

from .base import parse_options, split_uri

__all__ = ["PreviewTransport"]

GRAMMAR = "preview:///ABSOLUTE/DIRECTORY"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class PreviewTransport:
    def __init__(self, uri: str) -> None:
        parts = split_uri(uri, "preview", GRAMMAR)
        if parts.netloc or not parts.path.startswith("/"):
            raise PrinterConfigError(f"bad printer URI {uri!r}; expected {GRAMMAR}")
        parse_options(parts, {}, GRAMMAR)
        self.uri = uri
        self.directory = Path(parts.path)

    def _ready(self) -> Path:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PrinterUnavailable(f"cannot create {self.directory}: {exc.strerror}") from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise PrinterUnavailable(f"{self.directory} is not writable")
        return self.directory

    def path_for(self, job_id: str) -> Path:
        """Where the job's files go (``.bin``/``.png`` suffixes added)."""
        name = _UNSAFE.sub("_", job_id).lstrip(".")[:100] or time.strftime("job-%Y%m%d-%H%M%S")
        return self.directory / name

    def write(self, data: bytes, *, job_id: str = "") -> None:
        self._ready()
        base = self.path_for(job_id or f"job-{time.time_ns()}")
        try:
            _atomic_write(base.with_name(base.name + ".bin"), data)
        except OSError as exc:
            raise PrinterUnavailable(f"cannot write to {self.directory}: {exc.strerror}") from exc
        from ..decode import decode
        from ..render import render_png

        try:
            _atomic_write(base.with_name(base.name + ".png"), render_png(decode(data)))
        except OSError as exc:
            # Retrying rewrites the same two files, so "nothing sent" holds.
            raise PrinterUnavailable(f"cannot write the preview image: {exc.strerror}") from exc

    def query(self, request: bytes, timeout_s: float) -> bytes | None:
        self._ready()
        if len(request) == 3 and request[:2] == b"\x10\x04":
            return b"\x12"
        return None

    def close(self) -> None:
        """Nothing is held between calls."""
