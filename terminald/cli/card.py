"""`terminald card read`: the card reader, directly (not through the daemon)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from terminald.cli.base import App, ConfigOpt, load

if TYPE_CHECKING:
    from terminald.config import Config

__all__ = ["app", "read_card"]

app = App(help="Card readers.")


@app.command("read")
def card_read(
    config: ConfigOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Show identity numbers and names unmasked.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for a card.")] = 10.0,
    reader: Annotated[str | None, typer.Option(help="Reader name.")] = None,
) -> None:
    """Read the card once and print it (masked unless --full)."""
    raise typer.Exit(read_card(load(config), full=full, timeout_s=timeout, reader=reader))


def read_card(cfg: Config, *, full: bool, timeout_s: float, reader: str | None) -> int:
    from rich.console import Console
    from rich.table import Table

    from drivers.cards import CardService
    from drivers.errors import DriverError
    from terminald.privacy import mask_card, mask_name, mask_ssn

    console = Console()
    service = CardService(profile=cfg.card.profile, readers=cfg.card.readers, psam_reader=cfg.card.psam_reader)
    service.start()
    try:
        read = service.read(reader, timeout_s)
    except DriverError as exc:
        console.print(f"[red]{exc.code}: {exc}[/]")
        return 1
    finally:
        service.stop()
    card = read.card.as_dict()
    if not full:
        card["ssn"] = mask_ssn(card.get("ssn"))
        card["name"] = mask_name(card.get("name"))
        card["card_number"] = mask_card(card.get("card_number"))
    table = Table("field", "value", title=f"{read.reader}  ATR {read.atr}")
    for key, value in card.items():
        table.add_row(key, value or "")
    console.print(table)
    return 0
