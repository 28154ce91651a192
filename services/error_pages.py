"""Error answers: a page or JSON, as the caller prefers, one handler per kind.

Answering an error must not fail in turn: when the page cannot be rendered (the
database or Redis is the problem the page is about), a plain page is sent instead.
"""

from __future__ import annotations

import logging
from html import escape
from typing import Any

from quart import Quart, g, render_template, request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from services.errors import ServiceError
from services.sessions import SessionStoreUnavailable

log = logging.getLogger(__name__)

# Machine callers: the sibling apps' APIs and SumUp's notifications.
JSON_PATHS = ("/internal/", "/cart/checkout/webhook/", "/cart/checkout/events/")
TEMPLATES = {404: "errors/404.html", 429: "errors/429.html", 503: "errors/503.html"}
PLAIN_PAGE = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
    "</head><body><h1>{title}</h1><p>{message}</p></body></html>"
)


def wants_json() -> bool:
    """Whether the caller asked for JSON rather than a page."""
    if request.path.startswith(JSON_PATHS):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


async def _rollback() -> None:
    db = g.get("db")
    if db is None:
        return
    try:
        # The page below runs queries; a failed transaction must not poison them.
        await db.rollback()
    except Exception:
        log.warning("rollback before an error page failed", exc_info=True)


async def error_response(
    status: int, title: str, message: str, *, retry_after: int | None = None
) -> tuple[Any, int, dict[str, str]]:
    """A JSON error or an error page, as the caller prefers."""
    await _rollback()
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
    if wants_json():
        body: dict[str, Any] = {"error": title, "message": message, "status": status}
        if retry_after is not None:
            body["retry_after"] = retry_after
        return body, status, headers
    template = TEMPLATES.get(status, "errors/error.html")
    try:
        page = await render_template(
            template, status=status, title=title, message=message, retry_after=retry_after
        )
    except Exception:
        log.warning("error page %s could not be rendered; sent plain", status, exc_info=True)
        page = PLAIN_PAGE.format(title=escape(title), message=escape(message))
    return page, status, headers


def init_error_handlers(app: Quart) -> None:
    """One handler per kind of error, so routes never build error answers themselves."""

    @app.errorhandler(ServiceError)
    async def _service_error(error: ServiceError) -> tuple[Any, int, dict[str, str]]:
        return await error_response(
            error.status_code,
            error.title,
            error.message,
            retry_after=getattr(error, "retry_after", None),
        )

    @app.errorhandler(RedisError)
    async def _redis_down(error: RedisError) -> tuple[Any, int, dict[str, str]]:
        log.warning("Redis failed on %s %s: %s", request.method, request.path, error)
        unavailable = SessionStoreUnavailable()
        return await _service_error(unavailable)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> tuple[Any, int, dict[str, str]]:
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
    async def _unexpected(error: Exception) -> tuple[Any, int, dict[str, str]]:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return await error_response(
            500, "Something went wrong", "Something went wrong on our side. Please try again."
        )
