"""`terminald serve` (the daemon) and `terminald demo` (a whole outage day with every simulator)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from terminald.cli.base import ConfigOpt, fail, load, setup_logging

__all__ = ["demo", "serve"]


def serve(config: ConfigOpt = None) -> None:
    """Run the daemon (systemd Type=notify, watchdog)."""
    cfg = load(config)
    setup_logging(cfg)
    from terminald.server import serve as run

    try:
        run(cfg)
    except OSError as exc:
        fail(f"cannot listen on {cfg.api.listen or cfg.api.unix_socket}: {exc.strerror}")


class DemoProtocol(StrEnum):
    v1 = "v1"
    nhsa = "nhsa"


def demo(
    keep: Annotated[bool, typer.Option(help="Keep the demo's state directory.")] = False,
    protocol: Annotated[DemoProtocol, typer.Option(
        help="The upstream to play against: our central (v1) or the national platform's simulator (nhsa).",
    )] = DemoProtocol.v1,
    mirror: Annotated[bool, typer.Option(
        help="Also copy the day's records to a PostgreSQL primary + synchronous standby the demo starts "
             "(when PostgreSQL can run here): the mirror's lag, a primary outage, the fleet table.",
    )] = False,
) -> None:
    """Play a whole outage day with every simulator and print what happened."""
    from terminald.sim.demos import run_demo

    raise typer.Exit(run_demo(keep=keep, protocol=protocol.value, mirror=mirror))
