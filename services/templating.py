"""Template filters and globals every page uses."""

from __future__ import annotations

import secrets
from decimal import Decimal

from babel.numbers import format_currency
from quart import Quart

from services.csrf import csrf_token


def format_money(amount: Decimal | None, currency: str = "GBP") -> str:
    """Money for people: `£12.50`."""
    if amount is None:
        return "—"
    return format_currency(amount, currency, locale="en_GB")


def init_templates(app: Quart) -> None:
    """Template filters and globals every page uses."""
    app.jinja_env.filters["money"] = format_money
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["new_idempotency_key"] = lambda: secrets.token_urlsafe(18)
