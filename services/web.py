"""The web layer's shared parts: templates, CSRF-protected forms, error answers."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

from babel.numbers import format_currency
from quart import Quart, current_app, g, render_template, request, session
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map
from wtforms import Form
from wtforms.csrf.session import SessionCSRF

from services.errors import ServiceError

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Form)
CSRF_TIME_LIMIT = timedelta(hours=12)


class CsrfError(ServiceError):
    """The form's CSRF token is missing, wrong or stale."""

    status_code = 400
    title = "This form has expired"


class CsrfForm(Form):
    """Base of every state-changing form: a session-bound CSRF token."""

    class Meta:
        csrf = True
        csrf_class = SessionCSRF
        csrf_time_limit = CSRF_TIME_LIMIT


def _form_meta() -> dict[str, Any]:
    return {"csrf_secret": current_app.config["SECRET_KEY"].encode(), "csrf_context": session}


async def bind_form(form_class: type[F]) -> F:
    """The posted form, CSRF checked; raises `CsrfError` on a bad token."""
    form = form_class(await request.form, meta=_form_meta())
    form.validate()
    if "csrf_token" in form.errors:
        raise CsrfError(
            "Please reload the page and try again: "
            "the form's security token was missing or out of date."
        )
    return form


def csrf_token() -> str:
    """The CSRF token for hand-written forms in a template, made once per request."""
    token: str | None = g.get("csrf_token")
    if token is None:
        token = CsrfForm(meta=_form_meta()).csrf_token.current_token
        g.csrf_token = token
    return token


def format_money(amount: Decimal | None, currency: str = "GBP") -> str:
    """Money for people: `£12.50`."""
    if amount is None:
        return "—"
    return format_currency(amount, currency, locale="en_GB")


def safe_next(target: str | None, *, allowed_origins: Iterable[str]) -> str | None:
    """`target` when it stays on this site (a path, or one of the coop's apps), else None."""
    if not target or "\\" in target or any(ord(char) < 32 for char in target):
        return None
    parts = urlsplit(target)
    if not parts.scheme and not parts.netloc:
        return target if target.startswith("/") and not target.startswith("//") else None
    origin = f"{parts.scheme}://{parts.netloc}"
    return target if origin in set(allowed_origins) else None


def wants_json() -> bool:
    """Whether the caller asked for JSON rather than a page."""
    if request.path.startswith("/internal/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


async def error_response(status: int, title: str, message: str) -> tuple[Any, int]:
    """A JSON error or an error page, as the caller prefers."""
    db = g.get("db")
    if db is not None:
        # The page below runs queries; a failed transaction must not poison them.
        await db.rollback()
    if wants_json():
        return {"error": title, "message": message, "status": status}, status
    template = "errors/404.html" if status == 404 else "errors/error.html"
    page = await render_template(template, status=status, title=title, message=message)
    return page, status


class RowIdConverter(IntegerConverter):
    """A positive id that fits PostgreSQL's `integer`; anything else is a plain 404."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, min=1, max=2**31 - 1)


class BigRowIdConverter(IntegerConverter):
    """A positive id that fits PostgreSQL's `bigint` (orders)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        super().__init__(url_map, min=1, max=2**63 - 1)


def init_url_converters(app: Quart) -> None:
    """`<id:…>` and `<bigid:…>` route ids, so an absurd id never reaches the database."""
    app.url_map.converters["id"] = RowIdConverter
    app.url_map.converters["bigid"] = BigRowIdConverter


def init_templates(app: Quart) -> None:
    """Template filters and globals every page uses."""
    app.jinja_env.filters["money"] = format_money
    app.jinja_env.globals["csrf_token"] = csrf_token
    app.jinja_env.globals["new_idempotency_key"] = lambda: secrets.token_urlsafe(18)


def init_error_handlers(app: Quart) -> None:
    """One handler per kind of error, so routes never build error answers themselves."""

    @app.errorhandler(ServiceError)
    async def _service_error(error: ServiceError) -> tuple[Any, int]:
        return await error_response(error.status_code, error.title, error.message)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> tuple[Any, int]:
        status = error.code or 500
        messages = {
            400: "The request could not be understood.",
            404: "There is nothing here.",
            405: "This address does not accept that kind of request.",
            413: "The request was too large.",
        }
        message = messages.get(status, error.description or "")
        return await error_response(status, error.name, message)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> tuple[Any, int]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return await error_response(
            500, "Something went wrong", "Something went wrong on our side. Please try again."
        )
