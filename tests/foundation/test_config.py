"""Settings: environment wins over the file; bad values name the setting, never a secret."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "DATABASE_URL_ASYNC": "postgresql+asyncpg://postgres@127.0.0.1/cart",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECRET_KEY": "s" * 32,
    "INTERNAL_API_TOKEN": "t" * 32,
}


def test_environment_overrides_the_yaml_defaults() -> None:
    settings = load_settings({**GOOD, "CART_MAX_QUANTITY": "12", "SUMUP_BASE_URL": "http://x:1"})
    assert settings.cart.max_quantity_per_line == 12
    assert settings.sumup.base_url == "http://x:1"
    assert settings.orders.page_size == 20


@pytest.mark.parametrize(
    ("name", "value", "named"),
    [
        ("DATABASE_URL_ASYNC", "nonsense", "DATABASE_URL_ASYNC"),
        ("DATABASE_URL_ASYNC", "mysql://u@h/db", "DATABASE_URL_ASYNC"),
        ("REDIS_URL", "http://localhost", "REDIS_URL"),
        ("SECRET_KEY", "short", "SECRET_KEY"),
        ("CART_MAX_QUANTITY", "many", "CART_MAX_QUANTITY"),
        ("CART_MAX_QUANTITY", "0", "CART_MAX_QUANTITY"),
        ("SESSION_COOKIE_SECURE", "maybe", "SESSION_COOKIE_SECURE"),
        ("APP_ENV", "staging", "APP_ENV"),
        ("PUBLIC_URL", "not a url", "PUBLIC_URL"),
    ],
)
def test_malformed_setting_is_named(name: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings({**GOOD, name: value})


@pytest.mark.parametrize("missing", ["DATABASE_URL_ASYNC", "REDIS_URL", "SECRET_KEY"])
def test_missing_setting_is_named(missing: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ConfigError, match=missing):
        load_settings(env)


def test_api_key_without_merchant_code_is_refused() -> None:
    with pytest.raises(ConfigError, match="SUMUP_MERCHANT_CODE"):
        load_settings({**GOOD, "SUMUP_API_KEY": "sup_sk_live_secret"})


def test_secrets_never_show_in_reprs() -> None:
    settings = load_settings({**GOOD, "SUMUP_API_KEY": "sup_sk_hush", "SUMUP_MERCHANT_CODE": "M1"})
    shown = repr(settings) + str(settings)
    for secret in ("sup_sk_hush", "s" * 32, "t" * 32, "postgres@127.0.0.1"):
        assert secret not in shown


def test_nonsense_database_url_stops_the_app_with_one_line() -> None:
    env = {**os.environ, **GOOD, "DATABASE_URL_ASYNC": "nonsense"}
    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        "cart: configuration error: DATABASE_URL_ASYNC is not a URL "
        "(expected postgresql+asyncpg://user@host/db)"
    ]
    assert "s" * 32 not in result.stderr


def test_run_command_with_a_nonsense_database_url_stops_before_starting_anything() -> None:
    env = {**os.environ, "DATABASE_URL_ASYNC": "nonsense"}
    result = subprocess.run(
        [sys.executable, "-m", "sandbox.devserver", "--data-dir", str(ROOT / ".data" / "unused")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "cart: configuration error: DATABASE_URL_ASYNC is not a URL "
        "(expected postgresql+asyncpg://user@host/db)"
    ]
    assert not (ROOT / ".data" / "unused" / "postgres").exists()
