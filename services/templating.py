"""Template globals every page uses (filters for money and times: services/formatting)."""

from __future__ import annotations

import secrets

from quart import Quart

from services.csrf import csrf_token


def init_templates(app: Quart) -> None:
    """Template globals every page uses."""
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["new_idempotency_key"] = lambda: secrets.token_urlsafe(18)
