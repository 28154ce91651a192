"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from quart.typing import TestClientProtocol as Client


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
    from dataclasses import replace

    from app import create_app

    broken = create_app(replace(settings, redis_url="redis://127.0.0.1:1/0"))
    async with broken.test_app() as test_app:
        response = await test_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert set((await response.get_json())["failed"]) == {"redis"}


async def test_readyz_names_the_database_when_it_does_not_answer(settings: Any) -> None:
    from dataclasses import replace

    from app import create_app

    broken = create_app(
        replace(settings, database_url="postgresql+asyncpg://postgres@127.0.0.1:1/none")
    )
    async with broken.test_app() as test_app:
        response = await test_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert set((await response.get_json())["failed"]) == {"database"}


async def test_metrics_are_exposed_for_prometheus(client: Client) -> None:
    await client.get("/healthz")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "cart_http_requests_total" in (await response.get_data(as_text=True))
