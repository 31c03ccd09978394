"""`terminald print test|retry`: a test page on a printer, a reprint of a job whose outcome is unknown."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from terminald.cli.base import App, ConfigOpt, load

if TYPE_CHECKING:
    from terminald.config import Config

__all__ = ["app", "print_test_page", "retry_print_job"]

app = App(help="Printers.")


@app.command("test")
def print_test(
    config: ConfigOpt = None,
    printer: Annotated[str | None, typer.Option(help="Printer name (default: the first).")] = None,
) -> None:
    """Print a test page."""
    raise typer.Exit(print_test_page(load(config), printer))


@app.command("retry")
def print_retry(
    job: Annotated[str, typer.Argument(help="The print job (pj-…) whose outcome is unknown.")],
    config: ConfigOpt = None,
) -> None:
    """Print a job whose outcome is unknown again, marked as a reprint (through the running daemon)."""
    raise typer.Exit(retry_print_job(load(config), job))


def print_test_page(cfg: Config, printer_name: str | None) -> int:
    """A test page straight to the printer (no daemon needed); also `terminald doctor --print`."""
    from rich.console import Console

    from drivers.errors import DriverError
    from drivers.printers import Printer, PrinterConfig
    from terminald.receipts.templates import render_test_page

    console = Console()
    entries = {p.name: p for p in cfg.printer_entries}
    name = printer_name or next(iter(entries))
    if name not in entries:
        console.print(f"[red]no printer named {name!r}; configured: {', '.join(entries)}[/]")
        return 1
    entry = entries[name]
    printer = Printer(PrinterConfig(name=entry.name, uri=entry.uri, profile=entry.profile,
                                    chinese=entry.chinese, columns=entry.columns, language=entry.language))
    try:
        state = printer.status()
        data = render_test_page(institution=cfg.terminal.institution_name, terminal_id=cfg.terminal.id,
                                printer=name, columns=entry.columns, chinese=entry.chinese)
        printer.print_bytes(data, job_id="test-page")
    except DriverError as exc:
        console.print(f"[red]{exc.code}: {exc}[/]")
        return 1
    finally:
        printer.close()
    console.print(f"test page sent to {name} ({entry.uri}); printer status: {state}")
    return 0


def retry_print_job(cfg: Config, job_id: str) -> int:
    """`terminald print retry JOB`: print an `unknown` job again, as a reprint (POST /v1/print-jobs/{id}/retry)."""
    from urllib.parse import quote

    from rich.console import Console

    from terminald.cli.client import api_json

    body = api_json(cfg, "POST", f"/v1/print-jobs/{quote(job_id, safe='')}/retry")
    if body is None:
        return 1
    Console().print(f"print job {job_id} is printed again as {body['job_id']} on {body['printer']} "
                    f"({body['document']}, marked reprint)")
    return 0
