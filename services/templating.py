"""Template globals every page uses (filters for money and times: services/formatting)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape
from quart import Quart, g

from services.csrf import csrf_token

# An id no route will see, built into a URL in place of the real one (within `<id:…>`'s range).
_ID_MARKER = 2_147_483_519


@dataclass(frozen=True)
class UrlForEach:
    """One endpoint's URL for any id, from one `url_for`: `update_url(12)` is
    `url_for("cart_global.update", product_id=12)`, already escaped for HTML.

    A cart page names the same few actions for every line; building each with
    `url_for` was a large part of the page (bench/README.md).
    """

    head: Markup
    tail: Markup

    def __call__(self, value: int) -> Markup:
        return self.head + str(int(value)) + self.tail


def url_for_each(build: Callable[..., str], endpoint: str, argument: str) -> UrlForEach:
    """The URL of `endpoint` around its one id `argument`, built once by `build` (`url_for`)."""
    url = build(endpoint, **{argument: _ID_MARKER})
    head, marker, tail = url.partition(str(_ID_MARKER))
    if not marker or str(_ID_MARKER) in tail:
        raise ValueError(f"{endpoint}'s URL does not carry {argument} once: {url}")
    return UrlForEach(escape(head), escape(tail))


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
    app.jinja_env.globals["url_for_each"] = lambda endpoint, argument: url_for_each(
        url_for, endpoint, argument
    )
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["new_idempotency_key"] = lambda: secrets.token_urlsafe(18)
