"""Error answers: a page or JSON, as the caller prefers, one handler per kind."""

from __future__ import annotations

import logging
from typing import Any

from quart import Quart, g, render_template, request
from werkzeug.exceptions import HTTPException

from services.errors import ServiceError

log = logging.getLogger(__name__)


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
