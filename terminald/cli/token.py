"""`terminald token rotate [--status-page]`: a new API token, for when one leaked or staff changed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from terminald.cli.base import App, ConfigOpt, load

if TYPE_CHECKING:
    from terminald.config import Config

__all__ = ["app", "rotate_token"]

app = App(help="The API's bearer tokens.")


@app.command("rotate")
def token_rotate(
    config: ConfigOpt = None,
    status_page: Annotated[bool, typer.Option(
        "--status-page", help="The status page's read-only token instead of the POS's.")] = False,
) -> None:
    """Write a new random token (same mode and owner); the running daemon refuses the old one at once."""
    raise typer.Exit(rotate_token(load(config), status_page=status_page))


def rotate_token(cfg: Config, *, status_page: bool) -> int:
    """A new random token, written atomically with the old file's mode and owner; the running
    daemon refuses the old token from its next request."""
    import grp
    import pwd

    import httpx
    from rich.console import Console

    from terminald.cli.client import api_call
    from terminald.security import api_group_id
    from terminald.security import rotate_token as rotate

    console = Console()
    path = cfg.status_token_path if status_page else cfg.token_path
    which = "status-page token" if status_page else "API token (the POS's)"
    try:
        done = rotate(path, api_group_id(cfg.api.group))
    except FileNotFoundError:
        console.print(f"[red]no directory {path.parent}: start terminald once, or create it as "
                      f"docs/install.md says (systemd-tmpfiles --create terminald.conf)[/]")
        return 1
    except OSError as exc:
        console.print(f"[red]cannot write {path}: {exc.strerror or exc}[/]")
        return 1

    def name(lookup: Any, ident: int) -> str:
        try:
            return str(lookup(ident)[0])
        except KeyError:
            return str(ident)

    owner = f"{name(pwd.getpwuid, done.uid)}:{name(grp.getgrgid, done.gid)}"
    console.print(f"{'created' if done.created else 'new'} {which} in {path} "
                  f"(mode {done.mode:04o}, owner {owner})")
    # The daemon picks the file up on its next request: show that it did, when one runs here.
    try:
        response = api_call(cfg, "GET", "/v1/status", token=done.token)
    except httpx.HTTPError:
        console.print("terminald does not answer here: it reads the new token when it starts")
        return 0
    if response.status_code != 200:
        console.print(f"[red]the running daemon refuses the new token ({response.status_code}): can the "
                      f"terminald user read {path}?[/]")
        return 1
    console.print("the running daemon accepts the new token and refuses the old one; "
                  + ("update the status page's desktop shortcut (#token=...)" if status_page
                     else "the POS must read the token file again"))
    return 0
