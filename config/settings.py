"""Load, override and validate the service's settings once, at start-up.

`app-config.yaml` gives the defaults; environment variables win. Every problem is
reported as a `ConfigError` whose message names the setting in one line and never
contains a secret's value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

CONFIG_FILE = Path(__file__).with_name("app-config.yaml")
ENVIRONMENTS = ("production", "development", "test")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


class Secret:
    """A string that never shows itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret's value, for the one place that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True)
class SessionSettings:
    cookie_name: str
    cookie_secure: bool
    cookie_samesite: str
    cookie_domain: str | None
    ttl_seconds: int
    redis_prefix: str


@dataclass(frozen=True)
class SumUpSettings:
    base_url: str
    api_key: Secret | None
    merchant_code: str | None
    checkout_prefix: str
    timeout_seconds: float
    webhook_signing_secret: Secret | None
    # How long SumUp keeps a hosted checkout payable; past it an open attempt is retired.
    checkout_lifetime_minutes: int = 30


@dataclass(frozen=True)
class CartSettings:
    currency: str
    max_quantity_per_line: int


@dataclass(frozen=True)
class OrderSettings:
    page_size: int
    unpaid_expiry_minutes: int
    return_page_rechecks: int
    # Money that lands on an order that can no longer take it goes back automatically.
    auto_refund: bool = True


@dataclass(frozen=True)
class EventSettings:
    stream: str
    stream_min_length: int
    relay_in_app: bool
    relay_interval_seconds: float
    relay_batch_size: int


@dataclass(frozen=True)
class ReconcileSettings:
    in_app: bool
    interval_seconds: float
    batch_size: int


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str = field(repr=False)
    redis_url: str = field(repr=False)
    secret_key: Secret
    internal_api_token: Secret
    public_url: str
    app_urls: Mapping[str, str]
    session: SessionSettings
    sumup: SumUpSettings
    cart: CartSettings
    orders: OrderSettings
    events: EventSettings
    reconcile: ReconcileSettings
    db_pool_size: int = 20
    # --- database timeouts (services/db.py), added with the perf/reliability work ---
    db_statement_timeout_ms: int = 30_000
    db_idle_in_transaction_timeout_ms: int = 60_000

    @property
    def dev_routes_enabled(self) -> bool:
        """The `/dev/*` stand-ins exist only outside production."""
        return self.env in ("development", "test")


# --- parsing helpers: each names the setting it rejects --------------------------


def _bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be true or false")


def _int(name: str, value: Any, *, minimum: int = 0) -> int:
    try:
        number = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return number


def _float(name: str, value: Any, *, minimum: float = 0.0) -> float:
    try:
        number = float(str(value).strip())
    except ValueError:
        raise ConfigError(f"{name} must be a number") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return number


def _http_url(name: str, value: Any) -> str:
    text = str(value or "").strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http(s) URL")
    return text


def _currency(name: str, value: Any) -> str:
    text = str(value or "").strip().upper()
    if not re.fullmatch(r"[A-Z]{3}", text):
        raise ConfigError(f"{name} must be a three-letter ISO 4217 currency code")
    return text


def _database_url(value: str | None) -> str:
    if not value:
        raise ConfigError("DATABASE_URL_ASYNC is not set (postgresql+asyncpg://user@host/db)")
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(
            "DATABASE_URL_ASYNC is not a URL (expected postgresql+asyncpg://user@host/db)"
        ) from None
    if url.drivername != "postgresql+asyncpg" or not url.database:
        raise ConfigError(
            "DATABASE_URL_ASYNC must be postgresql+asyncpg://user@host/db with a database name"
        )
    return value


def _redis_url(value: str | None) -> str:
    if not value:
        raise ConfigError("REDIS_URL is not set (redis://host:6379/0 or unix:///path.sock)")
    parts = urlsplit(value)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ConfigError("REDIS_URL must be redis://host:port/db, rediss://… or unix:///path")
    return value


def _secret(name: str, value: str | None, *, min_length: int) -> Secret:
    if not value:
        raise ConfigError(f"{name} is not set")
    if len(value) < min_length:
        raise ConfigError(f"{name} must be at least {min_length} characters long")
    return Secret(value)


def _optional(value: Any) -> Any:
    return None if value in (None, "") else value


# --- loading -----------------------------------------------------------------------


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path.name} cannot be read: {error.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path.name} must hold a mapping")
    return data


def _pick(env: Mapping[str, str], name: str, default: Any) -> Any:
    value = env.get(name)
    return default if value is None or value == "" else value


def load_settings(
    env: Mapping[str, str] | None = None,
    config_file: Path = CONFIG_FILE,
    **overrides: Any,
) -> Settings:
    """Build validated settings from the YAML file and the environment."""
    env = os.environ if env is None else env
    raw = _read_yaml(config_file)

    def section(name: str) -> dict[str, Any]:
        value = raw.get(name) or {}
        if not isinstance(value, dict):
            raise ConfigError(f"{config_file.name}: '{name}' must be a mapping")
        return value

    sess, sumup, cart, orders, events, rec = (
        section(n) for n in ("session", "sumup", "cart", "orders", "events", "reconcile")
    )
    app_env = str(_pick(env, "APP_ENV", raw.get("env", "production"))).strip().lower()
    if app_env not in ENVIRONMENTS:
        raise ConfigError(f"APP_ENV must be one of {', '.join(ENVIRONMENTS)}")

    app_urls = {
        name: _http_url(f"app_urls.{name}", url)
        for name, url in (section("app_urls") or {}).items()
    }
    samesite = str(_pick(env, "SESSION_COOKIE_SAMESITE", sess.get("cookie_samesite", "Lax")))
    if samesite not in ("Lax", "Strict", "None"):
        raise ConfigError("SESSION_COOKIE_SAMESITE must be Lax, Strict or None")

    api_key = _optional(_pick(env, "SUMUP_API_KEY", None))
    signing = _optional(_pick(env, "SUMUP_WEBHOOK_SIGNING_SECRET", None))
    prefix = str(_pick(env, "SUMUP_CHECKOUT_PREFIX", sumup.get("checkout_prefix", "RA")))
    if not re.fullmatch(r"[A-Za-z0-9]{1,16}", prefix):
        raise ConfigError("SUMUP_CHECKOUT_PREFIX must be 1 to 16 letters or digits")

    parsers: dict[str, Callable[[], Any]] = {
        "env": lambda: app_env,
        "database_url": lambda: _database_url(env.get("DATABASE_URL_ASYNC")),
        "redis_url": lambda: _redis_url(env.get("REDIS_URL")),
        "secret_key": lambda: _secret("SECRET_KEY", env.get("SECRET_KEY"), min_length=16),
        "internal_api_token": lambda: _secret(
            "INTERNAL_API_TOKEN", env.get("INTERNAL_API_TOKEN"), min_length=16
        ),
        "public_url": lambda: _http_url(
            "PUBLIC_URL", _pick(env, "PUBLIC_URL", raw.get("public_url"))
        ),
        "app_urls": lambda: app_urls,
        "session": lambda: SessionSettings(
            cookie_name=str(sess.get("cookie_name", "coop_session")),
            cookie_secure=_bool(
                "SESSION_COOKIE_SECURE",
                _pick(env, "SESSION_COOKIE_SECURE", sess.get("cookie_secure", False)),
            ),
            cookie_samesite=samesite,
            cookie_domain=_optional(_pick(env, "SESSION_COOKIE_DOMAIN", sess.get("cookie_domain"))),
            ttl_seconds=_int(
                "SESSION_TTL_SECONDS",
                _pick(env, "SESSION_TTL_SECONDS", sess.get("ttl_seconds", 1209600)),
                minimum=60,
            ),
            redis_prefix=str(sess.get("redis_prefix", "session:")),
        ),
        "sumup": lambda: SumUpSettings(
            base_url=_http_url(
                "SUMUP_BASE_URL", _pick(env, "SUMUP_BASE_URL", sumup.get("base_url"))
            ),
            api_key=Secret(api_key) if api_key else None,
            merchant_code=_optional(_pick(env, "SUMUP_MERCHANT_CODE", sumup.get("merchant_code"))),
            checkout_prefix=prefix,
            timeout_seconds=_float(
                "SUMUP_TIMEOUT_SECONDS",
                _pick(env, "SUMUP_TIMEOUT_SECONDS", sumup.get("timeout_seconds", 10)),
                minimum=0.1,
            ),
            webhook_signing_secret=Secret(signing) if signing else None,
            checkout_lifetime_minutes=_int(
                "SUMUP_CHECKOUT_LIFETIME_MINUTES",
                _pick(
                    env,
                    "SUMUP_CHECKOUT_LIFETIME_MINUTES",
                    sumup.get("checkout_lifetime_minutes", 30),
                ),
                minimum=1,
            ),
        ),
        "cart": lambda: CartSettings(
            currency=_currency("cart.currency", cart.get("currency", "GBP")),
            max_quantity_per_line=_int(
                "CART_MAX_QUANTITY",
                _pick(env, "CART_MAX_QUANTITY", cart.get("max_quantity_per_line", 99)),
                minimum=1,
            ),
        ),
        "orders": lambda: OrderSettings(
            page_size=_int(
                "ORDERS_PAGE_SIZE",
                _pick(env, "ORDERS_PAGE_SIZE", orders.get("page_size", 20)),
                minimum=1,
            ),
            unpaid_expiry_minutes=_int(
                "ORDERS_UNPAID_EXPIRY_MINUTES",
                _pick(
                    env,
                    "ORDERS_UNPAID_EXPIRY_MINUTES",
                    orders.get("unpaid_expiry_minutes", 60),
                ),
                minimum=1,
            ),
            return_page_rechecks=_int(
                "orders.return_page_rechecks",
                orders.get("return_page_rechecks", 5),
                minimum=0,
            ),
            auto_refund=_bool(
                "ORDERS_AUTO_REFUND",
                _pick(env, "ORDERS_AUTO_REFUND", orders.get("auto_refund", True)),
            ),
        ),
        "events": lambda: EventSettings(
            stream=str(_pick(env, "EVENTS_STREAM", events.get("stream", "coop:events"))),
            stream_min_length=_int(
                "events.stream_min_length", events.get("stream_min_length", 100000), minimum=1
            ),
            relay_in_app=_bool(
                "EVENTS_RELAY_IN_APP",
                _pick(env, "EVENTS_RELAY_IN_APP", events.get("relay_in_app", True)),
            ),
            relay_interval_seconds=_float(
                "events.relay_interval_seconds",
                events.get("relay_interval_seconds", 0.5),
                minimum=0.01,
            ),
            relay_batch_size=_int(
                "events.relay_batch_size", events.get("relay_batch_size", 100), minimum=1
            ),
        ),
        "db_pool_size": lambda: _int(
            "DB_POOL_SIZE", _pick(env, "DB_POOL_SIZE", raw.get("db_pool_size", 20)), minimum=1
        ),
        "reconcile": lambda: ReconcileSettings(
            in_app=_bool(
                "RECONCILE_IN_APP", _pick(env, "RECONCILE_IN_APP", rec.get("in_app", False))
            ),
            interval_seconds=_float(
                "reconcile.interval_seconds", rec.get("interval_seconds", 60), minimum=1
            ),
            batch_size=_int("reconcile.batch_size", rec.get("batch_size", 50), minimum=1),
        ),
    }
    # --- database timeouts: one statement, and a transaction left open, are bounded ---
    parsers["db_statement_timeout_ms"] = lambda: _int(
        "DB_STATEMENT_TIMEOUT_MS", _pick(env, "DB_STATEMENT_TIMEOUT_MS", 30_000), minimum=100
    )
    parsers["db_idle_in_transaction_timeout_ms"] = lambda: _int(
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS",
        _pick(env, "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS", 60_000),
        minimum=100,
    )
    # --- end of database timeouts ---
    values = {
        name: overrides[name] if name in overrides else parse() for name, parse in parsers.items()
    }
    settings = Settings(**values)
    if settings.sumup.api_key and not settings.sumup.merchant_code:
        raise ConfigError("SUMUP_MERCHANT_CODE must be set when SUMUP_API_KEY is")
    return settings
