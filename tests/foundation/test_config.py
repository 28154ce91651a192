"""Settings: environment wins over the file; every bad value is named at once, never shown."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_settings
from config.settings import settings_reference

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "APP_ENV": "test",
    "DATABASE_URL_ASYNC": "postgresql+asyncpg://postgres@127.0.0.1/cart",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "SECRET_KEY": "s" * 32,
    "INTERNAL_API_TOKEN": "t" * 32,
}
PRODUCTION = {
    **GOOD,
    "APP_ENV": "production",
    "PUBLIC_URL": "https://shop.example.org",
    "SUMUP_API_KEY": "sup_sk_live_hush",
    "SUMUP_MERCHANT_CODE": "MLIVE01",
    "SESSION_COOKIE_SECURE": "true",
}


def test_environment_overrides_the_yaml_defaults() -> None:
    settings = load_settings({**GOOD, "CART_MAX_QUANTITY": "12", "SUMUP_BASE_URL": "http://x:1"})
    assert settings.cart.max_quantity_per_line == 12
    assert settings.sumup.base_url == "http://x:1"
    assert settings.orders.page_size == 20


def test_an_empty_variable_counts_as_unset() -> None:
    settings = load_settings({**GOOD, "CART_MAX_QUANTITY": "", "SESSION_COOKIE_DOMAIN": " "})
    assert settings.cart.max_quantity_per_line == 99
    assert settings.session.cookie_domain is None


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
        ("PORT", "70000", "PORT"),
        ("BIND", "nowhere", "BIND"),
        ("WORKERS", "0", "WORKERS"),
        ("LOG_FORMAT", "xml", "LOG_FORMAT"),
        ("METRICS_TOKEN", "short", "METRICS_TOKEN"),
    ],
)
def test_malformed_setting_is_named(name: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings({**GOOD, name: value})


@pytest.mark.parametrize("missing", ["DATABASE_URL_ASYNC", "REDIS_URL", "SECRET_KEY"])
def test_missing_setting_is_named(missing: str) -> None:
    env = {k: v for k, v in GOOD.items() if k != missing}
    with pytest.raises(ConfigError, match=f"{missing} is not set"):
        load_settings(env)


def test_every_bad_setting_is_reported_at_once_one_line_each() -> None:
    bad = {
        "APP_ENV": "test",
        "SECRET_KEY": "tiny-secret",
        "CART_MAX_QUANTITY": "lots",
        "SESSION_TTL_SECONDS": "5",
        "PORT": "0",
        "SUMUP_API_KEY": "sup_sk_live_hush",
    }
    with pytest.raises(ConfigError) as raised:
        load_settings(bad)
    assert raised.value.problems == [
        "DATABASE_URL_ASYNC is not set",
        "REDIS_URL is not set",
        "SECRET_KEY must be at least 16 characters long",
        "INTERNAL_API_TOKEN is not set",
        "SESSION_TTL_SECONDS must be at least 60",
        "CART_MAX_QUANTITY must be a whole number",
        "PORT must be at least 1",
        "SUMUP_MERCHANT_CODE must be set when SUMUP_API_KEY is",
    ]
    assert str(raised.value).count("\n") == len(raised.value.problems) - 1
    assert "tiny-secret" not in str(raised.value)
    assert "sup_sk_live_hush" not in str(raised.value)


def test_a_typo_in_the_file_is_named(tmp_path: Path) -> None:
    config_file = tmp_path / "app-config.yaml"
    config_file.write_text("orders:\n  page_sise: 5\n")
    with pytest.raises(
        ConfigError, match=r"orders\.page_sise \(app-config.yaml\) is not a setting"
    ):
        load_settings(GOOD, config_file)


def test_api_key_without_merchant_code_is_refused() -> None:
    with pytest.raises(ConfigError, match="SUMUP_MERCHANT_CODE"):
        load_settings({**GOOD, "SUMUP_API_KEY": "sup_sk_live_secret"})


def test_production_loads_with_public_url_sumup_credentials_and_a_secure_cookie() -> None:
    settings = load_settings(PRODUCTION)
    assert settings.env == "production"
    assert settings.public_url == "https://shop.example.org"
    assert settings.session.cookie_secure is True
    assert settings.sumup.api_key is not None and settings.sumup.api_key.reveal() == (
        "sup_sk_live_hush"
    )
    assert settings.log_format == "json"
    assert not settings.dev_routes_enabled


def test_production_refuses_without_public_url_sumup_credentials_or_a_secure_cookie() -> None:
    bare = {k: v for k, v in PRODUCTION.items() if k not in ("PUBLIC_URL", "SUMUP_API_KEY")}
    bare.pop("SUMUP_MERCHANT_CODE")
    bare["SESSION_COOKIE_SECURE"] = "false"
    with pytest.raises(ConfigError) as raised:
        load_settings(bare)
    assert raised.value.problems == [
        "PUBLIC_URL must be set in production (webhook and return URLs)",
        "SUMUP_API_KEY must be set in production",
        "SUMUP_MERCHANT_CODE must be set in production",
        "SESSION_COOKIE_SECURE must be true in production (HTTPS-only cookie)",
    ]


def test_development_has_a_local_public_url_and_readable_logs() -> None:
    settings = load_settings({**GOOD, "APP_ENV": "development"})
    assert settings.public_url == "http://127.0.0.1:8002"
    assert settings.log_format == "console"
    assert load_settings({**GOOD, "LOG_FORMAT": "json"}).log_format == "json"


def test_port_sets_the_address_unless_bind_is_given() -> None:
    assert load_settings(GOOD).server.address == "0.0.0.0:8000"
    assert load_settings({**GOOD, "PORT": "9100"}).server.address == "0.0.0.0:9100"
    assert load_settings({**GOOD, "BIND": "127.0.0.1:9200"}).server.address == "127.0.0.1:9200"


def test_replacing_a_value_validates_it() -> None:
    settings = load_settings(GOOD)
    assert dataclasses.replace(settings.cart, max_quantity_per_line=5).max_quantity_per_line == 5
    with pytest.raises(ValueError, match="max_quantity_per_line"):
        dataclasses.replace(settings.cart, max_quantity_per_line=0)


def test_secrets_never_show_in_reprs() -> None:
    settings = load_settings({**GOOD, "SUMUP_API_KEY": "sup_sk_hush", "SUMUP_MERCHANT_CODE": "M1"})
    shown = repr(settings) + str(settings)
    for secret in ("sup_sk_hush", "s" * 32, "t" * 32, "postgres@127.0.0.1"):
        assert secret not in shown


def test_the_reference_marks_the_secrets() -> None:
    secrets = {name for name, _, secret in settings_reference() if secret}
    assert secrets == {
        "SECRET_KEY",
        "INTERNAL_API_TOKEN",
        "METRICS_TOKEN",
        "SUMUP_API_KEY",
        "SUMUP_WEBHOOK_SIGNING_SECRET",
    }


def test_the_readme_documents_every_environment_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    reference = readme[readme.index("## Configuration reference") :]
    missing = [name for name, _, _ in settings_reference() if f"`{name}`" not in reference]
    assert missing == []


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


def test_production_app_without_its_settings_names_each_missing_one_on_its_own_line() -> None:
    env = {**os.environ, **GOOD, "APP_ENV": "production"}
    for name in ("PUBLIC_URL", "SUMUP_API_KEY", "SUMUP_MERCHANT_CODE", "SESSION_COOKIE_SECURE"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", "import app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "cart: configuration error: PUBLIC_URL must be set in production (webhook and return URLs)",
        "cart: configuration error: SUMUP_API_KEY must be set in production",
        "cart: configuration error: SUMUP_MERCHANT_CODE must be set in production",
        "cart: configuration error: SESSION_COOKIE_SECURE must be true in production "
        "(HTTPS-only cookie)",
    ]


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
