"""`terminald …`: the command line (`terminald --help`; docs/operations.md and docs/install.md use it).

One module per command group, each with its commands' bodies:

    serve.py         serve, demo
    status.py        status, followups, doctor
    spool.py         spool list|show|check|export (read-only) · salvage · drain · restore
    mirror.py        mirror init-db|status · spool restore --from-mirror's body · fleet
    upstream.py      upstream resume · outages · reconcile
    card.py          card read
    printing.py      print test|retry
    transactions.py  transactions resolve
    token.py         token rotate
    sim.py           sim card|printer|central|nhsa
    client.py        the running daemon's API, for the commands that go through it
    base.py          the typer app class, --config, exit codes, logging

Exit codes: 0 ok, 1 failure, 2 usage (bad arguments or bad configuration).
Each command imports what it needs when it runs, so `terminald --help` and
`terminald status` stay quick on a slow counter PC.
"""

from __future__ import annotations

import sys

from terminald.cli import card, mirror, printing, serve, sim, spool, status, token, transactions, upstream
from terminald.cli.base import App

__all__ = ["app", "main"]

app = App(help="terminald: social-security cards, receipts and a durable outbox to central.")
app.command()(serve.serve)
app.command()(serve.demo)
app.command()(status.status)
app.command()(status.followups)
app.command()(status.doctor)
app.command()(upstream.outages)
app.command()(upstream.reconcile)
app.command("fleet")(mirror.fleet_command)
app.add_typer(spool.app, name="spool")
app.add_typer(card.app, name="card")
app.add_typer(printing.app, name="print")
app.add_typer(transactions.app, name="transactions")
app.add_typer(sim.app, name="sim")
app.add_typer(upstream.app, name="upstream")
app.add_typer(token.app, name="token")
app.add_typer(mirror.app, name="mirror")


def main() -> None:
    """The `terminald` console script (and `python -m terminald.cli`)."""
    try:
        app(prog_name="terminald")
    except KeyboardInterrupt:
        sys.exit(130)
