"""App-wide cart hooks: the login merge, and the navigation and badge in every page."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from asyncpg import InterfaceError, PostgresError
from flask.templating import _default_template_ctx_processor as flask_default_processor
from quart import Quart, current_app, flash, g, request, session
from sqlalchemy.exc import SQLAlchemyError

from bp.cart.responses import current_identity, settings
from bp.cart.services.identity import ANONYMOUS_KEY, pending_merge
from bp.cart.services.merge_carts import merge_anonymous_cart
from bp.cart.services.page_cart import CartView
from bp.cart.services.summary import get_page_header
from services.db import db_connection, note_database_failed
from services.errors import CartError
from services.navigation import get_navigation_tree
from services.page_messages import PageMessages
from services.rate_limits import enforce
from services.templating import UrlForEach

log = logging.getLogger(__name__)
NO_SESSION_PATHS = ("/healthz", "/readyz", "/metrics")


async def merge_after_login() -> None:
    """Fold the anonymous cart into the user's on the first request after sign-in.

    It commits in its own transaction, so an error later in the request cannot
    undo the merge after the anonymous id has left the session.
    """
    if request.path.startswith(NO_SESSION_PATHS):
        return
    ids = pending_merge(session)
    if ids is None:
        return
    user_id, anonymous_id = ids
    await enforce("merge")
    async with current_app.extensions["db_sessionmaker"]() as db, db.begin():
        report = await merge_anonymous_cart(
            db,
            user_id=user_id,
            anonymous_id=anonymous_id,
            max_quantity=settings().cart.max_quantity_per_line,
        )
    session.pop(ANONYMOUS_KEY, None)
    if not report.is_empty:
        log.info("merged anonymous cart into user %s", user_id)
        await flash(report.message(), "success")


@dataclass(frozen=True)
class LineForms:
    """What the forms of every line of a cart page share, made once per page by
    templates/cart/_cart.html (the CSRF token, `next`, the actions' URLs, the messages to
    show beside lines): a frozen dataclass rather than a Jinja namespace, whose every
    attribute read, about ten per line, went through Python code."""

    csrf: str
    next: str
    update_url: UrlForEach
    remove_url: UrlForEach
    remove_entry_url: UrlForEach
    update_quantities: str
    max_quantity: int
    messages: PageMessages


def show_badge_of(view: CartView) -> None:
    """The badge of this request's page counts `view`, the whole cart the page read:
    `cart_context` then has no need to read the summary again."""
    g.cart_view = view


async def cart_context() -> dict[str, Any]:
    """Site navigation and the cart badge for the base template."""
    config = settings()
    view: CartView | None = g.get("cart_view")
    blog_url = config.app_urls.get("blog", "")
    try:
        connection = await db_connection()
        if view is not None:
            badge = view.summary()
            navigation = await get_navigation_tree(connection, blog_url=blog_url)
        else:
            badge, navigation = await get_page_header(
                connection,
                current_identity(),
                default_currency=config.cart.currency,
                blog_url=blog_url,
            )
    except CartError:
        return {"cart_badge": None, "navigation": []}  # a mixed cart: no badge, said elsewhere
    except (SQLAlchemyError, PostgresError, InterfaceError, ConnectionRefusedError) as error:
        # An error page must still render when the database is the problem.
        log.warning("cart badge or navigation unavailable", exc_info=True)
        note_database_failed(error)
        return {"cart_badge": None, "navigation": []}
    return {"cart_badge": badge, "navigation": navigation}


def drop_flask_default_context_processors(app: Quart) -> None:
    """Remove the sync no-op context processor each blueprint inherits from Flask.

    Flask's `Scaffold` gives every blueprint its own `_default_template_ctx_processor`;
    under Quart it finds no Flask context and adds nothing (Quart's own, app-wide one
    provides `g`, `request` and `session`), but being sync it is run in a thread on
    every render: a thread hop per page for nothing (bench/README.md).
    """
    for name, processors in app.template_context_processors.items():
        if name is not None:
            processors[:] = [p for p in processors if p is not flask_default_processor]


def init_cart_context(app: Quart) -> None:
    """The login merge before each request; navigation and badge in every page."""
    app.before_request(merge_after_login)
    app.context_processor(cart_context)
    app.jinja_env.globals["line_forms"] = LineForms

    @app.before_serving
    async def _lean_templates() -> None:
        # Blueprints are registered after this function runs, before serving starts.
        drop_flask_default_context_processors(app)
