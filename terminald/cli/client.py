"""Talking to the running daemon: its API, with the POS's token, over TCP or the Unix socket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

    from terminald.config import Config

__all__ = ["api_call", "api_json", "problem_text"]


def api_call(cfg: Config, method: str, path: str, body: Any = None, timeout_s: float = 5.0, *,
             token: str | None = None) -> httpx.Response:
    """One call to the running daemon's API, with its token (or `token`), over TCP or the Unix socket.

    Raises FileNotFoundError when there is no token file, httpx.HTTPError when the daemon does not answer.
    """
    import httpx

    if token is None:
        token = cfg.token_path.read_text(encoding="ascii").strip()
    headers = {"Authorization": f"Bearer {token}"}
    if cfg.api.listen:
        host = cfg.api.host
        host = f"[{host}]" if ":" in host else host
        with httpx.Client(base_url=f"http://{host}:{cfg.api.port}", timeout=timeout_s) as client:
            return client.request(method, path, headers=headers, json=body)
    transport = httpx.HTTPTransport(uds=cfg.api.unix_socket)
    with httpx.Client(transport=transport, base_url="http://localhost", timeout=timeout_s) as client:
        return client.request(method, path, headers=headers, json=body)


def problem_text(response: httpx.Response) -> str:
    """What the daemon's refusal says: its problem's `code: detail`, else the start of its body."""
    try:
        problem = response.json()
        return f"{problem.get('code')}: {problem.get('detail')}"
    except (ValueError, AttributeError):
        return response.text[:200]


def api_json(cfg: Config, method: str, path: str, body: Any = None, timeout_s: float = 5.0) -> Any:
    """The answer's JSON, or None after printing why the daemon could not give it (its problem's
    `code: detail`, or that it does not answer)."""
    import httpx
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    try:
        response = api_call(cfg, method, path, body, timeout_s)
    except FileNotFoundError:
        console.print(f"[red]no API token at {cfg.token_path}: is terminald running here?[/]")
        return None
    except httpx.HTTPError as exc:
        console.print(f"[red]terminald does not answer on {cfg.api.listen or cfg.api.unix_socket}: {exc}[/]")
        return None
    if response.status_code >= 300:
        console.print(f"[red]terminald answered {response.status_code}: {escape(problem_text(response))}[/]")
        return None
    return response.json()
