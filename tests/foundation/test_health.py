"""Liveness and readiness."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
from alembic import command
from quart.typing import TestClientProtocol as Client
from sqlalchemy.engine import make_url

from config.settings import Secret
from sandbox.embedded import asyncpg_dsn
from services.schema import alembic_config, branch_head, upgrade


@asynccontextmanager
async def empty_database() -> AsyncIterator[str]:
    base = os.environ["CART_TEST_BASE_DATABASE_URL"]
    name = f"cart_ready_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(**asyncpg_dsn(base, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_healthz_answers_while_the_process_is_up(client: Client) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert await response.get_json() == {"status": "ok"}


async def test_readyz_is_ready_when_database_and_redis_answer(
    client: Client,
) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "ready"


async def test_readyz_names_redis_when_it_does_not_answer(settings: Any) -> None:
    from app import create_app

    broken = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    async with broken.test_app() as test_app:
        response = await test_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert set((await response.get_json())["failed"]) == {"redis"}


async def test_readyz_names_the_database_when_it_does_not_answer(settings: Any) -> None:
    from app import create_app

    broken = create_app(
        replace(settings, database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none")
    )
    async with broken.test_app() as test_app:
        response = await test_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert set((await response.get_json())["failed"]) == {"database"}


async def test_readyz_says_every_part_is_fine(client: Client) -> None:
    body = await (await client.get("/readyz")).get_json()
    assert body["checks"] == {"database": "ok", "redis": "ok"}


async def _readyz_on(settings: Any, database_url: str) -> tuple[int, dict[str, Any]]:
    from app import create_app

    app = create_app(replace(settings, database_url=database_url))
    async with app.test_app() as test_app:
        response = await test_app.test_client().get("/readyz")
        return response.status_code, await response.get_json()


async def test_readyz_is_not_ready_on_a_database_that_was_never_migrated(settings: Any) -> None:
    async with empty_database() as url:
        status, body = await _readyz_on(settings, url)
    assert status == 503
    assert body["failed"] == {"database": "not migrated (no alembic_version table)"}


async def test_readyz_is_not_ready_until_the_cart_branch_is_at_its_head(settings: Any) -> None:
    async with empty_database() as url:
        await asyncio.to_thread(command.upgrade, alembic_config(url), "c0001")
        status, body = await _readyz_on(settings, url)
        await asyncio.to_thread(upgrade, url, ("cart",))
        ready, _ = await _readyz_on(settings, url)
    assert status == 503
    assert set(body["failed"]) == {"database"}
    assert f"not at its head {branch_head('cart')}" in body["failed"]["database"]
    assert body["checks"]["redis"] == "ok"
    assert ready == 200


async def test_metrics_need_a_bearer_token(client: Client) -> None:
    assert (await client.get("/metrics")).status_code == 401
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")


async def test_metrics_are_exposed_for_prometheus_with_the_token(
    client: Client, settings: Any
) -> None:
    await client.get("/healthz")
    token = settings.internal_api_token.reveal()
    response = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    text = await response.get_data(as_text=True)
    assert 'cart_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert "cart_metrics_database_up 1.0" in text


async def test_a_metrics_token_replaces_the_internal_token_there(settings: Any) -> None:
    from app import create_app

    metrics_token = "m" * 24
    app = create_app(replace(settings, metrics_token=Secret(metrics_token)))
    internal = settings.internal_api_token.reveal()
    async with app.test_app() as test_app:
        client = test_app.test_client()
        refused = await client.get("/metrics", headers={"Authorization": f"Bearer {internal}"})
        allowed = await client.get("/metrics", headers={"Authorization": f"Bearer {metrics_token}"})
    assert refused.status_code == 401
    assert allowed.status_code == 200
