"""What every command group shares: the typer app class, `--config`, failing, the config, logging.

Imports here are only typer and the standard library: `terminald --help` loads every command
module, so what a command needs is imported inside it, when it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

if TYPE_CHECKING:
    from terminald.config import Config

__all__ = ["App", "ConfigOpt", "fail", "load", "setup_logging"]

F = TypeVar("F", bound=Callable[..., Any])

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config file.")]


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"terminald: {message}", err=True)
    raise typer.Exit(code)


def load(path: Path | None) -> Config:
    """The configuration (`--config`, else $TERMINALD_CONFIG, else the default file); exit 2 naming the bad key."""
    from terminald.config import load_config
    from terminald.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        fail(exc.detail, 2)


def setup_logging(cfg: Config) -> None:
    from terminald import logs

    # The terminal id looks like a card number to the log scrubber; it is not personal.
    logs.setup(cfg.logging.level, cfg.logging.format, keep=[cfg.terminal.id])


# -- help as typer's users know it ---------------------------------------------------------------------------
# This typer's help gives every parameter a type tag (`--csv <bool>`, `--config -c <path>`,
# `--help <bool>`). Shown instead as click and earlier typers did: a flag alone (`--csv`), an
# option with the kind of value it takes (`--config -c PATH`, `--limit INTEGER`, `--as
# [self_pay|voided]`), an argument's likewise (`dest PATH`).
_CLASSIC = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "bool": "BOOLEAN", "path": "PATH"}


def _classic_type(param: Any, ctx: Any, *, option: bool) -> str | None:
    if option and param.metavar is not None:  # an argument's metavar is its name, shown beside
        return str(param.metavar)
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return None
    inner = str(param.display_type(ctx)).removeprefix("<").removesuffix(">")
    if param.type_descriptor.is_choice:
        return f"[{inner}]"
    label = _CLASSIC.get(inner, inner.upper())
    return label if param.nargs == 1 else f"{label}..."


if hasattr(TyperOption, "display_type_rich") and hasattr(TyperOption, "display_type"):

    class _Option(TyperOption):
        def display_type_rich(self, ctx: Any) -> str | None:
            return _classic_type(self, ctx, option=True)

    class _Argument(TyperArgument):
        def display_type_rich(self, ctx: Any) -> str | None:
            return _classic_type(self, ctx, option=False)

    def _classic(params: list[Any]) -> list[Any]:
        for param in params:
            # typer builds its own parameter objects; only how they are shown changes.
            if type(param) is TyperOption:
                param.__class__ = _Option
            elif type(param) is TyperArgument:
                param.__class__ = _Argument
        return params

else:  # a typer that shows options the classic way already

    def _classic(params: list[Any]) -> list[Any]:
        return params


class Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _classic(list(super().get_params(ctx)))


class Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _classic(list(super().get_params(ctx)))


class App(typer.Typer):
    """`typer.Typer` with terminald's defaults: help when called bare, no completion install options,
    plain tracebacks, and the help above for every command added with `command()`."""

    def __init__(self, *, help: str) -> None:
        super().__init__(cls=Group, help=help, no_args_is_help=True, add_completion=False,
                         pretty_exceptions_enable=False)

    def command(self, name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
        kwargs.setdefault("cls", Command)
        decorator: Callable[[F], F] = super().command(name, **kwargs)
        return decorator
