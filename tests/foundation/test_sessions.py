"""Server-side sessions: a signed random id in the cookie, the data in Redis."""

from __future__ import annotations

from typing import Any

import pytest
from quart import Quart, session
from redis.asyncio import Redis

from tests.conftest import REDIS_PREFIX


@pytest.fixture
async def session_app(settings: Any) -> Any:
    from app import create_app

    app: Quart = create_app(settings)

    @app.get("/t/write")
    async def write() -> str:
        session["basket"] = "full"
        return "ok"

    @app.get("/t/read")
    async def read() -> str:
        return str(session.get("basket", "none"))

    @app.get("/t/clear")
    async def clear() -> str:
        session.clear()
        return "ok"

    async with app.test_app() as test_app:
        yield test_app


async def _session_keys(redis: Redis) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"{REDIS_PREFIX}session:*")]


async def test_session_lives_in_redis_behind_a_signed_cookie(
    session_app: Any, redis: Redis, settings: Any
) -> None:
    client = session_app.test_client()
    response = await client.get("/t/write")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{settings.session.cookie_name}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "full" not in cookie
    keys = await _session_keys(redis)
    assert len(keys) == 1
    assert 0 < await redis.ttl(keys[0]) <= settings.session.ttl_seconds
    assert await (await client.get("/t/read")).get_data(as_text=True) == "full"


async def test_browsing_without_writing_creates_no_session(session_app: Any, redis: Redis) -> None:
    response = await session_app.test_client().get("/t/read")
    assert "Set-Cookie" not in response.headers
    assert await _session_keys(redis) == []


async def test_forged_cookie_starts_an_empty_session(session_app: Any, settings: Any) -> None:
    client = session_app.test_client()
    await client.get("/t/write")
    client.set_cookie("localhost", settings.session.cookie_name, "someone-elses-id.forged")
    assert await (await client.get("/t/read")).get_data(as_text=True) == "none"


async def test_clearing_the_session_deletes_it_from_redis(session_app: Any, redis: Redis) -> None:
    client = session_app.test_client()
    await client.get("/t/write")
    await client.get("/t/clear")
    assert await _session_keys(redis) == []


async def test_secure_flag_follows_the_setting(settings: Any) -> None:
    from dataclasses import replace

    from app import create_app

    app = create_app(replace(settings, session=replace(settings.session, cookie_secure=True)))

    @app.get("/t/write")
    async def write() -> str:
        session["x"] = 1
        return "ok"

    async with app.test_app() as test_app:
        response = await test_app.test_client().get("/t/write")
    assert "Secure" in response.headers["Set-Cookie"]
