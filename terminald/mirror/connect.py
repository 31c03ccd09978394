"""Connecting to the mirror: libpq's connection string, with the mirror's defaults filled in.

The DSN is libpq's (``postgresql://t0001@pg1,pg2/terminald?...`` or ``host=pg1,pg2 ...``):
several hosts are tried in order, and ``target_session_attrs=read-write`` (added when the DSN
does not say otherwise) skips a standby, so after a failover (Patroni, repmgr, ``pg_ctl
promote``) the next connect finds the promoted server by itself. TCP keepalives and a connect
timeout are added too, so a server that vanishes without a reset (power cut, cable) is noticed
in seconds rather than after the kernel's two hours. Whatever the DSN sets itself wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from terminald.mirror.errors import MirrorMisconfigured, MirrorUnavailable

__all__ = ["DEFAULTS", "async_connect", "conninfo", "read_password", "server_of", "sync_connect"]

DEFAULTS: dict[str, str] = {
    "target_session_attrs": "read-write",
    "connect_timeout": "5",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
}


def conninfo(dsn: str, *, password: str | None = None, application_name: str | None = None) -> str:
    """``dsn`` with the mirror's defaults for whatever it leaves unset; MirrorError if malformed."""
    try:
        given: dict[str, Any] = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise MirrorMisconfigured(f"mirror dsn is not a valid libpq connection string: {exc}") from exc
    params: dict[str, Any] = {**DEFAULTS, **given}
    if password is not None and "password" not in given:
        params["password"] = password
    if application_name is not None and "application_name" not in given:
        params["application_name"] = application_name
    return make_conninfo("", **params)


def read_password(path: str | Path) -> str:
    """The first line of a password file (``[mirror] password_file``); MirrorError if unreadable."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise MirrorMisconfigured(f"mirror password_file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:  # GBK, a binary file, the wrong file named
        raise MirrorMisconfigured(f"mirror password_file {path} is not UTF-8 text (byte {exc.start}): save it as "
                          "UTF-8") from exc
    return text.splitlines()[0].strip() if text.strip() else ""


async def async_connect(info: str) -> psycopg.AsyncConnection[Any]:
    """An autocommit async connection (transactions are explicit); MirrorUnavailable if none,
    MirrorMisconfigured if libpq refuses a setting of the DSN."""
    try:
        return await psycopg.AsyncConnection.connect(info, autocommit=True)
    except psycopg.OperationalError as exc:
        raise MirrorUnavailable(f"no read-write mirror server answered: {_first_line(exc)}") from exc
    except psycopg.ProgrammingError as exc:  # e.g. connect_timeout=abc: no retry will change it
        raise MirrorMisconfigured(f"mirror dsn: {_first_line(exc)}") from exc


def sync_connect(info: str) -> psycopg.Connection[Any]:
    """The same, blocking: for the commands IT runs (init-db, restore)."""
    try:
        return psycopg.connect(info, autocommit=True)
    except psycopg.OperationalError as exc:
        raise MirrorUnavailable(f"no read-write mirror server answered: {_first_line(exc)}") from exc
    except psycopg.ProgrammingError as exc:
        raise MirrorMisconfigured(f"mirror dsn: {_first_line(exc)}") from exc


def server_of(conn: psycopg.AsyncConnection[Any] | psycopg.Connection[Any]) -> str:
    """host:port of the server ``conn`` reached."""
    return f"{conn.info.host}:{conn.info.port}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
