"""Template globals every page uses (filters for money and times: services/formatting)."""

from __future__ import annotations

import secrets
from typing import Any

from quart import Quart, g

from services.csrf import csrf_token


def init_templates(app: Quart) -> None:
    """Template globals every page uses."""
    build_url = app.url_for

    def url_for(endpoint: str, **values: Any) -> str:
        """`url_for`, each URL built once per request: a cart page asks for the same
        few (a line's update and remove actions) hundreds of times."""
        built: dict[tuple[str, frozenset[tuple[str, Any]]], str] | None = g.get("urls_built")
        if built is None:
            built = g.urls_built = {}
        try:
            key = (endpoint, frozenset(values.items()))
            url = built.get(key)
        except TypeError:  # a value that cannot be a key (a list): build it each time
            return build_url(endpoint, **values)
        if url is None:
            url = built[key] = build_url(endpoint, **values)
        return url

    app.jinja_env.globals["url_for"] = url_for
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["new_idempotency_key"] = lambda: secrets.token_urlsafe(18)
