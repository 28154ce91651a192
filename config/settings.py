"""Load, override and validate the service's settings once, at start-up.

`app-config.yaml` gives the defaults; environment variables win. pydantic-settings
gathers both (the environment by the documented variable names below, each field
says which); the frozen pydantic dataclasses validate them, so every bad value is
found in one pass and reported as one `ConfigError` with one line per setting,
naming it and never showing a value. `dataclasses.replace()` on a section validates
the new values as well.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, SecretStr, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from pydantic.dataclasses import dataclass
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError, PydanticUndefined
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

CONFIG_FILE = Path(__file__).with_name("app-config.yaml")
ENVIRONMENTS = ("production", "development", "test")
# Where shoppers and SumUp reach a development or test instance when PUBLIC_URL is unset.
LOCAL_PUBLIC_URL = "http://127.0.0.1:8002"
Environment = Literal["production", "development", "test"]


class ConfigError(Exception):
    """Settings are missing or malformed; one line per problem, each naming its setting."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def report_config_error(error: ConfigError) -> None:
    """Every problem on a line of its own on stderr, before anything starts."""
    for problem in error.problems:
        print(f"cart: configuration error: {problem}", file=sys.stderr)


class Secret(SecretStr):
    """A string that never shows itself in logs, reprs or tracebacks."""

    def reveal(self) -> str:
        """The secret's value, for the one place that needs it."""
        return self.get_secret_value()


def setting(default: Any = PydanticUndefined, *, env: str | None = None, **options: Any) -> Any:
    """A settings field; `env` names the environment variable that sets it."""
    return Field(default, json_schema_extra={"env": env} if env else None, **options)


# --- value types: each rejects with a line that reads after the setting's name --------


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("setting", message)


def _http_url(value: str) -> str:
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _fail("must be an http(s) URL")
    return text


def _database_url(value: str) -> str:
    try:
        url = make_url(value)
    except ArgumentError:
        raise _fail("is not a URL (expected postgresql+asyncpg://user@host/db)") from None
    if url.drivername != "postgresql+asyncpg" or not url.database:
        raise _fail("must be postgresql+asyncpg://user@host/db with a database name")
    return value


def _redis_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise _fail("must be redis://host:port/db, rediss://… or unix:///path")
    return value


def _bind(value: str) -> str:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail("must be host:port, e.g. 0.0.0.0:8000")
    return value


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ValueError, ZoneInfoNotFoundError):
        raise _fail("must be an IANA time zone name such as Europe/London") from None
    return value


TimeZone = Annotated[str, AfterValidator(_time_zone)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
DatabaseUrl = Annotated[str, AfterValidator(_database_url)]
RedisUrl = Annotated[str, AfterValidator(_redis_url)]
Bind = Annotated[str, AfterValidator(_bind)]
Currency = Annotated[str, BeforeValidator(_upper), Field(pattern=r"^[A-Z]{3}$")]
LongSecret = Annotated[Secret, Field(min_length=16)]

FROZEN = ConfigDict(extra="forbid", str_strip_whitespace=True)


# --- the settings ------------------------------------------------------------------


@dataclass(frozen=True, config=FROZEN)
class SessionSettings:
    cookie_name: str = setting("coop_session")
    cookie_secure: bool = setting(False, env="SESSION_COOKIE_SECURE")
    cookie_samesite: Literal["Lax", "Strict", "None"] = setting(
        "Lax", env="SESSION_COOKIE_SAMESITE"
    )
    cookie_domain: str | None = setting(None, env="SESSION_COOKIE_DOMAIN")
    ttl_seconds: int = setting(1209600, env="SESSION_TTL_SECONDS", ge=60)
    redis_prefix: str = setting("session:")


@dataclass(frozen=True, config=FROZEN)
class SumUpSettings:
    base_url: HttpUrl = setting("https://api.sumup.com", env="SUMUP_BASE_URL")
    api_key: Secret | None = setting(None, env="SUMUP_API_KEY")
    merchant_code: str | None = setting(None, env="SUMUP_MERCHANT_CODE")
    checkout_prefix: str = setting(
        "RA", env="SUMUP_CHECKOUT_PREFIX", pattern=r"^[A-Za-z0-9]{1,16}$"
    )
    timeout_seconds: float = setting(10.0, env="SUMUP_TIMEOUT_SECONDS", ge=0.1)
    webhook_signing_secret: Secret | None = setting(None, env="SUMUP_WEBHOOK_SIGNING_SECRET")
    # How long SumUp keeps a hosted checkout payable; past it an open attempt is retired.
    checkout_lifetime_minutes: int = setting(30, env="SUMUP_CHECKOUT_LIFETIME_MINUTES", ge=1)


@dataclass(frozen=True, config=FROZEN)
class CartSettings:
    currency: Currency = setting("GBP")
    max_quantity_per_line: int = setting(99, env="CART_MAX_QUANTITY", ge=1)


@dataclass(frozen=True, config=FROZEN)
class OrderSettings:
    page_size: int = setting(20, env="ORDERS_PAGE_SIZE", ge=1)
    unpaid_expiry_minutes: int = setting(60, env="ORDERS_UNPAID_EXPIRY_MINUTES", ge=1)
    return_page_rechecks: int = setting(5, ge=0)
    # Money that lands on an order that can no longer take it goes back automatically.
    auto_refund: bool = setting(True, env="ORDERS_AUTO_REFUND")


@dataclass(frozen=True, config=FROZEN)
class EventSettings:
    stream: str = setting("coop:events", env="EVENTS_STREAM", min_length=1)
    stream_min_length: int = setting(100000, ge=1)
    relay_in_app: bool = setting(True, env="EVENTS_RELAY_IN_APP")
    relay_interval_seconds: float = setting(0.5, ge=0.01)
    relay_batch_size: int = setting(100, ge=1)


@dataclass(frozen=True, config=FROZEN)
class ReconcileSettings:
    in_app: bool = setting(True, env="RECONCILE_IN_APP")
    interval_seconds: float = setting(60.0, ge=1)
    batch_size: int = setting(50, ge=1)


@dataclass(frozen=True, config=FROZEN)
class ServerSettings:
    """How `python -m services.server` (the container's entrypoint) serves the app."""

    port: int = setting(8000, env="PORT", ge=1, le=65535)
    # host:port; unset means 0.0.0.0:PORT.
    bind: Bind | None = setting(None, env="BIND")
    workers: int = setting(2, env="WORKERS", ge=1, le=64)
    # How long requests in flight may take to finish after SIGTERM.
    graceful_timeout_seconds: float = setting(20.0, env="GRACEFUL_TIMEOUT", ge=0, le=300)

    @property
    def address(self) -> str:
        """The address to listen on."""
        return self.bind or f"0.0.0.0:{self.port}"


@dataclass(frozen=True, config=FROZEN)
class LogSettings:
    # json: one JSON object per line (production); console: aligned, coloured text.
    format: Literal["json", "console"] | None = setting(None, env="LOG_FORMAT")
    level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(_upper)] = (
        setting("INFO", env="LOG_LEVEL")
    )


# --- abuse limits: each a `limits` string ("60/minute", "10/second;300/hour"), kept in
# Redis under `redis_prefix`; SUMUP_STATUS_CHECK_SECONDS is how often one order may ask
# SumUp for its status from page loads (0 turns that throttle off).


def _rate_limit(value: str) -> str:
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise _fail("must be a rate like 60/minute or 10/second;300/hour") from None
    return value


RateLimit = Annotated[str, AfterValidator(_rate_limit)]


def _limit(default: str, name: str) -> Any:
    return setting(default, env=f"RATE_LIMIT_{name.upper()}")


@dataclass(frozen=True, config=FROZEN)
class RateLimitSettings:
    enabled: bool = setting(True, env="RATE_LIMITS_ENABLED")
    redis_prefix: str = setting("cart:")
    status_check_seconds: float = setting(5.0, env="SUMUP_STATUS_CHECK_SECONDS", ge=0)
    writes_per_session: RateLimit = _limit("60/minute", "writes_per_session")
    writes_per_ip: RateLimit = _limit("600/minute", "writes_per_ip")
    pay_per_session: RateLimit = _limit("10/minute", "pay_per_session")
    status_per_session: RateLimit = _limit("60/minute", "status_per_session")
    status_per_ip: RateLimit = _limit("600/minute", "status_per_ip")
    webhook_per_order: RateLimit = _limit("30/minute", "webhook_per_order")
    webhook_per_ip: RateLimit = _limit("1200/minute", "webhook_per_ip")
    internal_per_token: RateLimit = _limit("12000/minute", "internal_per_token")
    merge_per_user: RateLimit = _limit("30/minute", "merge_per_user")


@dataclass(frozen=True, config=FROZEN)
class Settings:
    database_url: DatabaseUrl = setting(env="DATABASE_URL_ASYNC", repr=False)
    redis_url: RedisUrl = setting(env="REDIS_URL", repr=False)
    secret_key: LongSecret = setting(env="SECRET_KEY")
    internal_api_token: LongSecret = setting(env="INTERNAL_API_TOKEN")
    public_url: HttpUrl = setting(LOCAL_PUBLIC_URL, env="PUBLIC_URL")
    env: Annotated[Environment, BeforeValidator(_lower)] = setting("production", env="APP_ENV")
    app_urls: dict[str, HttpUrl] = setting(default_factory=dict)
    session: SessionSettings = setting(default_factory=SessionSettings)
    sumup: SumUpSettings = setting(default_factory=SumUpSettings)
    cart: CartSettings = setting(default_factory=CartSettings)
    orders: OrderSettings = setting(default_factory=OrderSettings)
    events: EventSettings = setting(default_factory=EventSettings)
    reconcile: ReconcileSettings = setting(default_factory=ReconcileSettings)
    server: ServerSettings = setting(default_factory=ServerSettings)
    rate_limits: RateLimitSettings = setting(default_factory=RateLimitSettings)
    # Shopper pages show times in the coop's zone.
    time_zone: TimeZone = setting("Europe/London", env="TIME_ZONE")
    log: LogSettings = setting(default_factory=LogSettings)
    db_pool_size: int = setting(20, env="DB_POOL_SIZE", ge=1)
    # A statement running longer, or a transaction idle longer, is ended by PostgreSQL:
    # one stuck transaction cannot hold back every other (services/db.py). The idle limit
    # is above SumUp's timeout, which a checkout or refund may wait on inside one.
    db_statement_timeout_ms: int = setting(30_000, env="DB_STATEMENT_TIMEOUT_MS", ge=0)
    db_idle_in_transaction_timeout_ms: int = setting(
        60_000, env="DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", ge=0
    )
    # Bearer token for /metrics; unset: INTERNAL_API_TOKEN is accepted there.
    metrics_token: LongSecret | None = setting(None, env="METRICS_TOKEN")

    @property
    def dev_routes_enabled(self) -> bool:
        """The `/dev/*` stand-ins exist only outside production."""
        return self.env in ("development", "test")

    @property
    def log_format(self) -> Literal["json", "console"]:
        """JSON lines in production unless told otherwise, readable text elsewhere."""
        return self.log.format or ("json" if self.env == "production" else "console")


# --- where each setting comes from ----------------------------------------------------


def _section_type(info: FieldInfo) -> type | None:
    annotation = info.annotation
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation if dataclasses.is_dataclass(annotation) else None


def _env_name(info: FieldInfo) -> str | None:
    extra = info.json_schema_extra
    return extra.get("env") if isinstance(extra, dict) else None  # type: ignore[return-value]


def settings_fields(
    cls: type = Settings, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str | None, FieldInfo]]:
    """Every leaf setting: its path in `Settings`, its environment variable, its field."""
    for name, info in cls.__pydantic_fields__.items():  # type: ignore[attr-defined]
        section = _section_type(info)
        if section is not None:
            yield from settings_fields(section, (*path, name))
        else:
            yield (*path, name), _env_name(info), info


ENV_NAMES: dict[tuple[str, ...], str] = {
    path: env for path, env, _ in settings_fields() if env is not None
}


class EnvironmentSource(PydanticBaseSettingsSource):
    """The documented environment variables of a mapping, nested as in `Settings`.

    Empty values count as unset, so `FOO=` in an env file falls back to the default.
    """

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ does the work for every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for path, name in ENV_NAMES.items():
            value = self.env.get(name)
            if value is None or value.strip() == "":
                continue
            target = values
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        return values


class _GatheredSettings(BaseSettings):
    """pydantic-settings merges the sources, first one winning; the dataclasses validate."""

    model_config = SettingsConfigDict(extra="allow")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path.name} cannot be read: {error.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a mapping")
    return data


def _gather(env: Mapping[str, str], config_file: Path) -> dict[str, Any]:
    _read_yaml(config_file)  # a clear line for an unreadable file, before the source reads it
    sources = (
        EnvironmentSource(_GatheredSettings, env),
        YamlConfigSettingsSource(_GatheredSettings, yaml_file=config_file),
    )
    gathered = _GatheredSettings(_build_sources=(sources, {}))  # type: ignore[call-arg]
    return dict(gathered.model_extra or {})


# --- problems, one line each -----------------------------------------------------------

_PHRASES = {
    "missing": "is not set",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "string_pattern_mismatch": "has characters or a length it may not have",
    "extra_forbidden": "is not a setting (a typo in the file?)",
    "unexpected_keyword_argument": "is not a setting (a typo in the file?)",
    "dict_type": "must be a mapping",
    "dataclass_type": "must be a mapping",
}


def _setting_name(loc: tuple[int | str, ...], config_file: Path) -> str:
    path = tuple(str(part) for part in loc)
    if path in ENV_NAMES:
        return ENV_NAMES[path]
    return f"{'.'.join(path)} ({config_file.name})"


def _phrase(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "setting":
        return error["msg"]
    if kind in ("greater_than_equal", "greater_than"):
        return f"must be at least {ctx.get('ge', ctx.get('gt'))}"
    if kind in ("less_than_equal", "less_than"):
        return f"must be at most {ctx.get('le', ctx.get('lt'))}"
    if kind in ("too_short", "string_too_short"):
        return f"must be at least {ctx.get('min_length')} characters long"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    return _PHRASES.get(kind, error["msg"][:1].lower() + error["msg"][1:])


def _problems(error: PydanticValidationError, config_file: Path) -> list[str]:
    # include_input=False: a rejected value may be a secret.
    lines = []
    for detail in error.errors(include_input=False, include_url=False):
        lines.append(f"{_setting_name(detail['loc'], config_file)} {_phrase(detail)}")
    return list(dict.fromkeys(lines))


def _section(raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name)
    return value if isinstance(value, dict) else {}


def _policy_problems(raw: Mapping[str, Any], env_name: str) -> list[str]:
    """Rules across settings; production refuses what would only fail later."""
    sumup, session = _section(raw, "sumup"), _section(raw, "session")
    has_key, has_code = bool(sumup.get("api_key")), bool(sumup.get("merchant_code"))
    if env_name != "production":
        return ["SUMUP_MERCHANT_CODE must be set when SUMUP_API_KEY is"] * (
            has_key and not has_code
        )
    problems = []
    if not raw.get("public_url"):
        problems.append("PUBLIC_URL must be set in production (webhook and return URLs)")
    if not has_key:
        problems.append("SUMUP_API_KEY must be set in production")
    if not has_code:
        problems.append("SUMUP_MERCHANT_CODE must be set in production")
    if str(session.get("cookie_secure", False)).strip().lower() not in ("1", "true", "yes", "on"):
        problems.append("SESSION_COOKIE_SECURE must be true in production (HTTPS-only cookie)")
    return problems


_SETTINGS = TypeAdapter(Settings)


def load_settings(
    env: Mapping[str, str] | None = None, config_file: Path = CONFIG_FILE
) -> Settings:
    """Build validated settings from the YAML file and the environment (env wins)."""
    env = os.environ if env is None else env
    raw = _gather(env, config_file)
    env_name = str(raw.get("env") or "production").strip().lower()
    problems = _policy_problems(raw, env_name)
    try:
        settings = _SETTINGS.validate_python(raw)
    except PydanticValidationError as error:
        problems = _problems(error, config_file) + problems
    if problems:
        raise ConfigError(problems)
    return settings


def settings_reference() -> list[tuple[str, str, bool]]:
    """(environment variable, default, is it a secret) for every variable, for the README."""
    rows = []
    for _path, env_name, info in settings_fields():
        if env_name is None:
            continue
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        rows.append((env_name, "" if default is None else str(default), _is_secret(info)))
    return rows


def _is_secret(info: FieldInfo) -> bool:
    def mentions_secret(annotation: Any) -> bool:
        if isinstance(annotation, type) and issubclass(annotation, Secret):
            return True
        return any(mentions_secret(arg) for arg in get_args(annotation))

    return mentions_secret(info.annotation)
