"""`terminald transactions resolve ID --as self_pay|voided`: staff settle a rejection (through the daemon)."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from terminald.cli.base import App, ConfigOpt, load

if TYPE_CHECKING:
    from terminald.config import Config

__all__ = ["Resolution", "app", "resolve"]

app = App(help="Transactions: what staff do with a rejection.")


class Resolution(StrEnum):
    """What happened to a sale central rejected (the API's `resolution`)."""

    self_pay = "self_pay"  # the patient paid the whole amount themselves
    voided = "voided"  # the sale did not happen


@app.command("resolve")
def transactions_resolve(
    record: Annotated[str, typer.Argument(metavar="ID", help="The rejected transaction's id.")],
    resolution: Annotated[Resolution, typer.Option(
        "--as", help="self_pay: the patient paid it all themselves; voided: the sale is cancelled (an outage "
                     "sale then owes the patient all they paid: see terminald followups).")],
    note: Annotated[str | None, typer.Option("--note", help="Kept with the record (at most 500 characters).")]
    = None,
    config: ConfigOpt = None,
) -> None:
    """Resolve a rejected transaction, as the status page does (POST /v1/transactions/{id}/resolve)."""
    raise typer.Exit(resolve(load(config), record, resolution.value, note))


def resolve(cfg: Config, record_id: str, resolution: str, note: str | None = None) -> int:
    """0 and what was done; 1 with the daemon's problem (`code: detail`) or why it did not answer."""
    from urllib.parse import quote

    from rich.console import Console

    from terminald.cli.client import api_json

    body = api_json(cfg, "POST", f"/v1/transactions/{quote(record_id, safe='')}/resolve",
                    {"resolution": resolution, "note": note})
    if body is None:
        return 1
    console = Console()
    done = body.get("resolution") or {}
    rejection = body.get("rejection") or {}
    why = f" (rejected: {rejection['code']})" if rejection.get("code") else ""
    console.print(f"transaction {body['id']} (seq {body['seq']}){why} resolved as "
                  f"{done.get('resolution', resolution)}; status {body['status']}", markup=False, highlight=False)
    if done.get("note"):
        console.print(f"note: {done['note']}", markup=False, highlight=False)
    return 0
