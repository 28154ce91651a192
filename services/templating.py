"""Template globals every page uses (filters for money and times: services/formatting)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from quart import Quart, current_app, g, request

from services.csrf import csrf_token

PAGE_TEMPLATES = "page_templates"

# An id no route will see, built into a URL in place of the real one (within `<id:…>`'s range).
_ID_MARKER = 2_147_483_519


@dataclass(frozen=True)
class UrlForEach:
    """One endpoint's URL for any id, from one `url_for`: `update_url(12)` is
    `url_for("cart_global.update", product_id=12)`.

    A cart page names the same few actions for every line; building each with
    `url_for` was a large part of the page (bench/README.md).
    """

    head: str
    tail: str

    def __call__(self, value: int) -> str:
        return f"{self.head}{int(value)}{self.tail}"


def url_for_each(build: Callable[..., str], endpoint: str, argument: str) -> UrlForEach:
    """The URL of `endpoint` around its one id `argument`, built once by `build` (`url_for`)."""
    url = build(endpoint, **{argument: _ID_MARKER})
    head, marker, tail = url.partition(str(_ID_MARKER))
    if not marker or str(_ID_MARKER) in tail:
        raise ValueError(f"{endpoint}'s URL does not carry {argument} once: {url}")
    return UrlForEach(head, tail)


async def render_page(template_name: str, **context: Any) -> str:
    """`render_template` for a page whose templates await nothing: rendered without
    Jinja's async mode.

    Quart compiles every template as coroutines: each call and macro of a page goes
    through `auto_await`, each block and loop through an async generator. The pages
    await nothing while rendering (the handler and the context processors, awaited here
    as Quart awaits them, fetch everything first), so that was pure cost (bench/README.md).
    """
    app: Any = current_app
    await app.update_template_context(context)
    template = app.extensions[PAGE_TEMPLATES].get_template(template_name)
    page: str = template.render(context)
    return page


def init_templates(app: Quart) -> None:
    """Template globals every page uses, and the templates `render_page` renders."""
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

    # The routes only change with a deploy; a URL's path only with where the app is mounted.
    shapes: dict[tuple[str, str, str], UrlForEach] = {}

    def each_url(endpoint: str, argument: str) -> UrlForEach:
        """`url_for_each(endpoint, argument)`, built once per mount point."""
        key = (request.root_path, endpoint, argument)
        shape = shapes.get(key)
        if shape is None:
            shape = shapes[key] = url_for_each(build_url, endpoint, argument)
        return shape

    app.jinja_env.globals["url_for"] = url_for
    app.jinja_env.globals["url_for_each"] = each_url
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["new_idempotency_key"] = lambda: secrets.token_urlsafe(18)
    # The same loader, globals and filters (shared, so those added later are there too),
    # compiled for plain calls: its own caches, since its templates compile differently.
    app.extensions[PAGE_TEMPLATES] = app.jinja_env.overlay(
        enable_async=False, cache_size=400, bytecode_cache=None
    )
