"""`terminald sim card|printer|central|nhsa`: one simulator by itself (for tests and demos)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from terminald.cli.base import App

__all__ = ["app"]

app = App(help="Run one simulator by itself (for tests and demos).")


@app.command("card")
def sim_card(
    card: Annotated[str, typer.Option("--card", help="Card description (TOML) or a shipped name, e.g. ssc2.")],
    slot: Annotated[int, typer.Option(help="vpcd slot: 0 or 1.")] = 0,
) -> None:
    """Emulate a card behind pcscd's vpcd driver."""
    from terminald.sim.card import run

    run(card, slot)


@app.command("printer")
def sim_printer(
    host: str = "127.0.0.1",
    port: int = 9100,
    pty: Annotated[bool, typer.Option(help="Also open a pty serial port.")] = False,
    out: Annotated[Path | None, typer.Option(help="Directory for received jobs (.bin, .txt, .png).")] = None,
    state: Annotated[str, typer.Option(help="online, near_end, paper_out, cover_open or silent.")] = "online",
) -> None:
    """Emulate an ESC/POS receipt printer."""
    from terminald.sim.printer import run

    run(host=host, port=port, pty=pty, out=out, state=state)


@app.command("central")
def sim_central(
    host: str = "127.0.0.1",
    port: int = 8640,
    db: Annotated[Path, typer.Option(help="Where central keeps what it accepts.")] = Path("var/central.db"),
    token: Annotated[str | None, typer.Option(help="Bearer token central requires (default: none).")] = None,
    down: Annotated[bool, typer.Option(help="Start refusing connections.")] = False,
    latency_ms: Annotated[float, typer.Option(help="Added latency per request.")] = 0,
    error_rate: Annotated[float, typer.Option(help="Share of requests answered 503.")] = 0,
    reset_rate: Annotated[float, typer.Option(help="Share of requests reset before handling.")] = 0,
    drop_after_commit_rate: Annotated[float, typer.Option(help="Share of batches committed, then reset.")] = 0,
    garbage_rate: Annotated[float, typer.Option(help="Share of answers replaced by garbage.")] = 0,
    throttle_rate: Annotated[float, typer.Option(help="Share of requests answered 429.")] = 0,
    retry_after_s: Annotated[int, typer.Option(help="Retry-After of the 429 answers.")] = 1,
) -> None:
    """Run the central medical-insurance system simulator (faults also via POST /_control)."""
    from terminald.sim.central import run

    db.parent.mkdir(parents=True, exist_ok=True)
    run(host=host, port=port, db=db, token=token, down=down, latency_ms=latency_ms, error_rate=error_rate,
        reset_rate=reset_rate, drop_after_commit_rate=drop_after_commit_rate, garbage_rate=garbage_rate,
        throttle_rate=throttle_rate, retry_after_s=retry_after_s)


@app.command("nhsa")
def sim_nhsa(
    host: str = "127.0.0.1",
    port: int = 8650,
    db: Annotated[Path, typer.Option(help="Where the platform keeps its books and call log.")] = Path("var/nhsa.db"),
    down: Annotated[bool, typer.Option(help="Start refusing connections.")] = False,
    latency_ms: Annotated[float, typer.Option(help="Added latency per call.")] = 0,
    error_rate: Annotated[float, typer.Option(help="Share of calls answered HTTP 503.")] = 0,
    reset_rate: Annotated[float, typer.Option(help="Share of calls reset before handling.")] = 0,
    drop_after_commit_rate: Annotated[float, typer.Option(help="Share of calls committed, then reset.")] = 0,
    garbage_rate: Annotated[float, typer.Option(help="Share of answers replaced by garbage.")] = 0,
    busy_rate: Annotated[float, typer.Option(help="Share of calls answered -1 系统繁忙.")] = 0,
    seed: Annotated[int | None, typer.Option(help="Seed of the fault dice.")] = None,
    amounts_as: Annotated[str, typer.Option(help="Amounts in answers: number or string.")] = "number",
    synthetic_persons: Annotated[int, typer.Option(help="Made-up card holders S00000001… to add.")] = 0,
) -> None:
    """Run the national medical-security platform simulator (faults also via POST /_control)."""
    from terminald.sim.nhsa import run

    db.parent.mkdir(parents=True, exist_ok=True)
    controls = {"down": down, "latency_ms": latency_ms, "error_rate": error_rate, "reset_rate": reset_rate,
                "drop_after_commit_rate": drop_after_commit_rate, "garbage_rate": garbage_rate,
                "busy_rate": busy_rate, "amounts_as": amounts_as}
    controls = {k: v for k, v in controls.items() if v not in (0, False)}
    run(host=host, port=port, db=db, synthetic_persons=synthetic_persons, **controls,
        **({} if seed is None else {"seed": seed}))
