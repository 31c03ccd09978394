"""Configuration: one frozen, validated object loaded once at start-up.

Where it comes from, lowest to highest priority: built-in defaults, the TOML
file (`--config`, else `$TERMINALD_CONFIG`, else `/etc/terminald/terminald.toml`
when it exists), then environment variables `TERMINALD_<SECTION>__<KEY>`.
Unknown keys and bad values raise `ConfigError` naming the key, so a typo in
the file stops the daemon instead of being silently ignored.

Paths left empty resolve under the state directory: `$STATE_DIRECTORY`
(systemd's `StateDirectory=`) or `./var`.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from terminald.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/terminald/terminald.toml")
ENV_PREFIX = "TERMINALD_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def state_dir() -> Path:
    """Where the spool, token and previews live when the config does not say."""
    first = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(first) if first else Path("var").resolve()


def _machine_terminal_id() -> str:
    # Stable across restarts and reinstalls of terminald, distinct per PC.
    for candidate in (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id")):
        try:
            raw = candidate.read_text().strip()
        except OSError:
            continue
        if raw:
            return "T" + hashlib.sha256(raw.encode()).hexdigest()[:8].upper()
    return "T0001"


class TerminalConfig(_Section):
    id: str = Field(default_factory=_machine_terminal_id, pattern=r"^[A-Za-z0-9._-]{1,32}$")
    institution_name: str = "示例大药房"
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except Exception as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class ApiConfig(_Section):
    listen: str = "127.0.0.1:8631"
    unix_socket: str = ""
    token_file: str = ""
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "[::1]")
    allowed_origins: tuple[str, ...] = ()
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # The status page's read-only token (default: `status-token` beside `token_file`).
    status_token_file: str = ""
    # The group that may use the API: it gets the token files (0640) and the Unix socket (0660);
    # "" or a group that does not exist leaves them with the daemon's own group.
    group: str = Field(default="terminald-api", pattern=r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$")

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value == "":
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError('expected "HOST:PORT", e.g. "127.0.0.1:8631", or "" to disable TCP')
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class SpoolConfig(_Section):
    path: str = ""
    retention_days: int = Field(default=400, ge=1)


class UpstreamConfig(_Section):
    url: str = ""
    # The adapter that speaks to central (terminald/upstream/adapters.py, ADAPTERS).
    protocol: Literal["v1", "nhsa"] = "v1"
    token_file: str = ""
    wait_s: float = Field(default=5, ge=0, le=30)
    batch_size: int = Field(default=200, ge=1, le=500)
    timeout_s: float = Field(default=10, gt=0, le=300)
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL, or empty for no upstream")
        return value.rstrip("/")


class NhsaConfig(_Section):
    """`[nhsa]`: the national platform (upstream.protocol = "nhsa", contracts/upstream-nhsa.md).

    Empty values are allowed while another protocol is used; with "nhsa" the institution's four
    fields are required and the profile must load (`Config._nhsa_complete`).
    """

    fixmedins_code: str = Field(default="", pattern=r"^([A-Za-z0-9]{12})?$")
    fixmedins_name: str = Field(default="", max_length=200)
    mdtrtarea_admvs: str = Field(default="", pattern=r"^([0-9]{6})?$")
    recer_sys_code: str = Field(default="", pattern=r"^[A-Za-z0-9_-]{0,10}$")
    # A packaged profile's name (national, mock, example-regional) or the path of a profile file.
    profile: str = Field(default="national", min_length=1)
    concurrency: int = Field(default=4, ge=1, le=64)
    reentry: Literal["auto", "patient_present"] = "auto"
    # The envelope's operator when a transaction names none: 1 staff, 2 self-service terminal,
    # 3 mobile terminal; opter/opter_name: the operator's (or terminal's) number and name.
    opter_type: Literal["1", "2", "3"] = "1"
    opter: str = Field(default="", max_length=30)
    opter_name: str = Field(default="", max_length=50)
    dev_no: str = Field(default="", max_length=100)
    dev_safe_info: str = Field(default="", max_length=2000)
    cainfo: str = Field(default="", max_length=1024)
    # 9001 sign-in's `mac` and `ip` (the counter PC's, as the office registered it); may stay empty.
    mac: str = Field(default="", max_length=40)
    ip: str = Field(default="", max_length=40)
    # Digits leading this terminal's 4-digit msgid counter: terminals of one fixmedins_code each
    # keep their own call log, so each needs a slot of its own ("07": counters 0701..0799).
    msgid_slot: str = Field(default="", pattern=r"^[0-9]{0,3}$")

    @field_validator("opter_type", mode="before")
    @classmethod
    def _type_as_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def missing(self) -> list[str]:
        """The keys upstream.protocol = "nhsa" needs that are empty."""
        required = ("fixmedins_code", "fixmedins_name", "mdtrtarea_admvs", "recer_sys_code")
        return [key for key in required if not getattr(self, key)]


class MirrorConfig(_Section):
    """`[mirror]`: the copy of every record on the hospital's PostgreSQL (docs/mirror.md).

    An empty `dsn` turns the mirror off (the default): the daemon then never imports psycopg.
    """

    dsn: str = ""
    # A file holding the role's password, so the secret stays out of the config and environment.
    password_file: str = ""
    # Unmirrored records older than this raise the `mirror_lag` alarm.
    lag_alarm_s: float = Field(default=300, gt=0)
    # The longest wait between two attempts to reach PostgreSQL (each a random wait below a
    # doubling bound, so a fleet that lost the server does not come back at once).
    retry_max_s: float = Field(default=30, ge=0.05, le=600)

    @field_validator("dsn")
    @classmethod
    def _postgres_dsn(cls, value: str) -> str:
        value = value.strip()
        if value and not value.startswith(("postgresql://", "postgres://")) and "=" not in value:
            raise ValueError('expected a "postgresql://..." URL or "key=value" connection string, or empty')
        return value


class OfflineConfig(_Section):
    max_tx_fen: int = Field(default=200_000, ge=0)
    max_total_fen: int = Field(default=5_000_000, ge=0)
    require_card_present: bool = True
    deadline_working_days: int = Field(default=10, ge=1)
    # Public holidays (not working days) and make-up working days (调休) for the re-entry and
    # refund deadlines, as the offices announce them each year: ["2026-10-01", ...].
    holidays: tuple[date, ...] = ()
    workdays: tuple[date, ...] = ()


class DowntimeWindow(_Section):
    start: datetime
    end: datetime
    reason: str = ""

    @model_validator(mode="after")
    def _ordered(self) -> DowntimeWindow:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a UTC offset, e.g. 2026-12-01T18:00:00+08:00")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class CardConfig(_Section):
    profile: str = "cn-ssc"
    readers: tuple[str, ...] = ()
    psam_reader: str = ""


class PrinterEntry(_Section):
    name: str = Field(default="receipt", pattern=r"^[A-Za-z0-9._-]{1,32}$")
    uri: str
    profile: str = "default"
    chinese: Literal["fs", "raw", "image"] = "fs"
    columns: Literal[32, 42, 48] = 48
    language: Literal["zh-CN", "en"] = "zh-CN"


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = "auto"


class _Sources(BaseSettings):
    """The settings object proper; `Config` is the frozen, resolved view."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        case_sensitive=False,
    )

    terminal: TerminalConfig = TerminalConfig()
    api: ApiConfig = ApiConfig()
    spool: SpoolConfig = SpoolConfig()
    upstream: UpstreamConfig = UpstreamConfig()
    nhsa: NhsaConfig = NhsaConfig()
    mirror: MirrorConfig = MirrorConfig()
    offline: OfflineConfig = OfflineConfig()
    downtime: tuple[DowntimeWindow, ...] = ()
    card: CardConfig = CardConfig()
    printers: tuple[PrinterEntry, ...] | None = None
    logging: LoggingConfig = LoggingConfig()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The TOML file arrives as init kwargs; env overrides it.
        return (env_settings, init_settings)


class Config(_Sources):
    source: str = "built-in defaults"

    @model_validator(mode="after")
    def _nhsa_complete(self) -> Config:
        if self.upstream.protocol != "nhsa":
            return self
        missing = self.nhsa.missing()
        if missing:
            raise ValueError(
                ", ".join(f"nhsa.{key}" for key in missing) + ': required when upstream.protocol = "nhsa"'
            )
        from terminald.upstream.nhsa.profiles import load_profile

        try:
            load_profile(self.nhsa.profile)
        except ConfigError as exc:
            raise ValueError(exc.detail) from exc
        return self

    @property
    def state_dir(self) -> Path:
        return state_dir()

    @property
    def spool_path(self) -> Path:
        return Path(self.spool.path) if self.spool.path else self.state_dir / "spool.db"

    @property
    def token_path(self) -> Path:
        return Path(self.api.token_file) if self.api.token_file else self.state_dir / "api-token"

    @property
    def status_token_path(self) -> Path:
        if self.api.status_token_file:
            return Path(self.api.status_token_file)
        return self.token_path.with_name("status-token")

    @property
    def receipts_dir(self) -> Path:
        return self.state_dir / "receipts"

    @property
    def printer_entries(self) -> tuple[PrinterEntry, ...]:
        """Configured printers, or the embedded default: PNG previews in the state dir."""
        if self.printers is not None:
            return self.printers
        return (PrinterEntry(name="receipt", uri=f"preview://{self.receipts_dir}"),)


def _env_keys_unknown() -> list[str]:
    """Env vars that look like ours but name no key: a typo must not pass silently."""
    sections = {name: field for name, field in Config.model_fields.items() if name != "source"}
    unknown = []
    for var in os.environ:
        if not var.upper().startswith(ENV_PREFIX) or var.upper() in {"TERMINALD_CONFIG"}:
            continue
        parts = var[len(ENV_PREFIX) :].lower().split("__")
        section = sections.get(parts[0])
        if section is None:
            unknown.append(var)
            continue
        annotation = section.annotation
        if len(parts) == 2 and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if parts[1] not in annotation.model_fields:
                unknown.append(var)
        elif len(parts) > 2:
            unknown.append(var)
    return unknown


def _format_validation(exc: ValidationError, origin: str) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            lines.append(f"{key}: unknown key")
        else:
            lines.append(f"{key}: {err['msg']}")
    return f"invalid configuration ({origin}):\n  " + "\n  ".join(lines)


def config_path(explicit: str | Path | None = None) -> Path | None:
    if explicit:
        return Path(explicit)
    env = os.environ.get("TERMINALD_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Read, merge and validate the configuration once; raise ConfigError naming the key."""
    chosen = config_path(path)
    data: dict[str, Any] = {}
    origin = "built-in defaults"
    if chosen is not None:
        try:
            data = tomllib.loads(chosen.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {chosen} does not exist") from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {chosen} cannot be read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {chosen} is not valid TOML: {exc}") from exc
        origin = str(chosen)
    unknown_env = _env_keys_unknown()
    if unknown_env:
        raise ConfigError(
            "invalid configuration (environment):\n  "
            + "\n  ".join(f"{v}: unknown key" for v in sorted(unknown_env))
        )
    for key, value in overrides.items():
        data[key] = value
    try:
        return Config(**data, source=origin)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, origin)) from exc
