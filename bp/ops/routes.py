"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable

from quart import Blueprint, Response, current_app, request
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from services.metrics import database_gauges, metrics_response, process_metrics, render
from services.schema import branch_head

bp = Blueprint("ops", __name__, cli_group=None)
log = logging.getLogger(__name__)

READINESS_TIMEOUT_SECONDS = 2.0


class NotReady(Exception):
    """A part the app needs is there but not usable; the message says why."""


@bp.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


async def _check_database() -> None:
    """PostgreSQL answers and its cart tables are at the cart branch's head."""
    head = branch_head("cart")
    async with current_app.extensions["db_engine"].connect() as connection:
        try:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
        except DBAPIError as error:
            if getattr(error.orig, "sqlstate", None) == "42P01":  # undefined_table
                raise NotReady("not migrated (no alembic_version table)") from None
            raise
        versions = {row[0] for row in rows}
    if head not in versions:
        have = ", ".join(sorted(versions)) or "nothing"
        raise NotReady(f"cart branch at {have}, not at its head {head}: run the migrations")


async def _check_redis() -> None:
    await current_app.extensions["redis"].ping()


CHECKS: dict[str, Callable[[], Awaitable[None]]] = {
    "database": _check_database,
    "redis": _check_redis,
}


async def _run_check(name: str, check: Callable[[], Awaitable[None]]) -> str | None:
    """None when the part is fine, otherwise why not (never a secret: no URLs, no values)."""
    try:
        await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
    except NotReady as problem:
        reason = str(problem)
    except TimeoutError:
        reason = f"no answer within {READINESS_TIMEOUT_SECONDS:g}s"
    except Exception as error:
        reason = f"unreachable ({error.__class__.__name__})"
    else:
        return None
    log.warning("not ready", extra={"part": name, "reason": reason})
    return reason


@bp.get("/readyz")
async def readyz() -> tuple[dict[str, object], int]:
    """200 when PostgreSQL is at the cart branch head and Redis answers; else 503 naming
    the part that is down and why."""
    results = await asyncio.gather(*(_run_check(name, check) for name, check in CHECKS.items()))
    checks = {name: reason or "ok" for name, reason in zip(CHECKS, results, strict=True)}
    failed = {name: reason for name, reason in zip(CHECKS, results, strict=True) if reason}
    if failed:
        return {"status": "unavailable", "failed": failed, "checks": checks}, 503
    return {"status": "ready", "checks": checks}, 200


def _metrics_authorised() -> bool:
    settings = current_app.config["SETTINGS"]
    expected = (settings.metrics_token or settings.internal_api_token).reveal()
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        token.strip().encode(), expected.encode()
    )


@bp.get("/metrics")
async def metrics() -> Response | tuple[dict[str, str], int, dict[str, str]]:
    """Prometheus metrics of every worker plus gauges read from PostgreSQL (bearer token)."""
    if not _metrics_authorised():
        return (
            {"error": "Unauthorized", "message": "A valid bearer token is required."},
            401,
            {"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    gauges = await database_gauges(current_app.extensions["db_engine"])
    return metrics_response(process_metrics() + render(gauges))
