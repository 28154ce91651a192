"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response, current_app
from sqlalchemy import text

bp = Blueprint("ops", __name__, cli_group=None)
log = logging.getLogger(__name__)

READINESS_TIMEOUT_SECONDS = 2.0


@bp.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


async def _check_database() -> None:
    async with current_app.extensions["db_engine"].connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _check_redis() -> None:
    await current_app.extensions["redis"].ping()


@bp.get("/readyz")
async def readyz() -> tuple[dict[str, object], int]:
    """PostgreSQL and Redis both answer; otherwise 503 naming the one that failed."""
    checks = {"database": _check_database, "redis": _check_redis}
    failed: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check(), READINESS_TIMEOUT_SECONDS)
        except Exception as error:
            log.warning("readiness: %s failed: %s", name, error.__class__.__name__)
            failed[name] = error.__class__.__name__
    if failed:
        return {"status": "unavailable", "failed": failed}, 503
    return {"status": "ready"}, 200


@bp.get("/metrics")
async def metrics() -> Response:
    """Prometheus metrics of this process."""
    return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)
