"""`terminald demo`: which day is played (demo.py's `V1Day`, demo_nhsa.py's `NhsaDay`), with the
PostgreSQL mirror (demo_mirror.py) or without. Its own module so that the days and the mirror
import demo.py's shared parts, and demo.py imports none of them.
"""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape

from terminald.sim.demo import Mirror, NoMirror, V1Day, console, play_day

__all__ = ["run_demo"]


def run_demo(keep: bool = False, protocol: str = "v1", mirror: bool = False) -> int:
    """Play the outage day against central `v1` or the national platform (`nhsa`), with the
    PostgreSQL mirror when `mirror` and PostgreSQL can run here; the exit code."""
    start = _start_mirror if mirror else None
    if protocol == "nhsa":
        from terminald.sim.demo_nhsa import NhsaDay

        return play_day(NhsaDay(), keep, start)
    if protocol != "v1":
        raise ValueError(f"no demo for upstream protocol {protocol!r}")
    return play_day(V1Day(), keep, start)


def _start_mirror(work: Path) -> Mirror:
    from terminald.sim.demo_mirror import start_mirror

    started = start_mirror(work)
    if isinstance(started, str):
        console.print(f"[yellow]--mirror: PostgreSQL cannot run here: {escape(started)}; the day is played without "
                      "the mirror[/]", soft_wrap=True)
        return NoMirror()
    return started
