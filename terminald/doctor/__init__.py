"""`terminald doctor`: check everything a counter needs, one line each, with the fix.

    OK    pcscd       socket /run/pcscd/pcscd.comm
    WARN  upstream    no upstream configured: every transaction stays pending
          fix: set [upstream] url in /etc/terminald/terminald.toml
    FAIL  printer     receipt (tcp://10.0.0.9:9100): paper out
          fix: load a new paper roll

It reads the hardware and files directly (it works while the daemon is
stopped) and changes nothing, except with `--print` (a test page). Every
probe has a timeout: a hung pcscd or printer gives a FAIL, not a hung doctor.
Exit code 1 when any line is FAIL.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from terminald.config import Config
from terminald.doctor.base import FAIL, OK, WARN, Check
from terminald.doctor.hardware import check_pcscd, check_printers, check_readers
from terminald.doctor.system import check_disk, check_permissions, check_spool, check_upstream

__all__ = [
    "FAIL",
    "OK",
    "WARN",
    "Check",
    "check_disk",
    "check_pcscd",
    "check_permissions",
    "check_printers",
    "check_readers",
    "check_spool",
    "check_upstream",
    "format_check",
    "run_checks",
    "run_doctor",
]


def run_checks(cfg: Config, print_page: bool = False) -> Iterable[Check]:
    yield Check(OK, "config", f"loaded from {cfg.source}; terminal {cfg.terminal.id}")
    # Looked up at call time, through this module, so each can be replaced (tests, a subset run).
    me = sys.modules[__name__]
    parts: list[Callable[[], list[Check]]] = [
        lambda: me.check_pcscd(), lambda: me.check_readers(cfg), lambda: me.check_printers(cfg, print_page),
        lambda: me.check_upstream(cfg), lambda: me.check_disk(cfg), lambda: me.check_spool(cfg),
        lambda: me.check_permissions(cfg)]
    for part in parts:
        try:
            yield from part()
        except Exception as exc:  # one broken probe must not hide the other lines
            yield Check(FAIL, "doctor", f"a check failed unexpectedly: {type(exc).__name__}",
                        "report this with `terminald doctor` output")


def format_check(check: Check, colour: bool = False) -> str:
    tag = f"{check.status:<5}"
    if colour:
        tag = {"OK": "\033[32m", "WARN": "\033[33m", "FAIL": "\033[1;31m"}[check.status] + tag + "\033[0m"
    line = f"{tag} {check.topic:<10} {check.detail}"
    if check.fix:
        line += f"\n{'':<5} {'fix:':<10} {check.fix}"
    return line


def run_doctor(cfg: Config, print_page: bool = False, *, out: TextIO | None = None) -> int:
    """Print every check; 1 when any is FAIL, else 0."""
    out = out or sys.stdout
    colour = out.isatty() and not os.environ.get("NO_COLOR")
    counts = {OK: 0, WARN: 0, FAIL: 0}
    for check in run_checks(cfg, print_page):
        counts[check.status] += 1
        print(format_check(check, colour), file=out, flush=True)
    print(f"\n{counts[OK]} OK, {counts[WARN]} WARN, {counts[FAIL]} FAIL", file=out)
    return 1 if counts[FAIL] else 0
