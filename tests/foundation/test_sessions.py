"""Server-side sessions: a signed random id in the cookie, the data in Redis."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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


# --- saved as changes, merged with what Redis holds (issue 11, case 7) ---------------


@pytest.fixture
async def changes_app(settings: Any) -> Any:
    """Routes that read the session, wait to be released, then change one key."""
    import asyncio

    from app import create_app

    app: Quart = create_app(settings)
    release = asyncio.Event()
    app.config["RELEASE"] = release

    @app.get("/t/write")
    async def write() -> str:
        session["basket"] = "full"
        return "ok"

    @app.get("/internal/t/read")
    async def read_for_a_sibling() -> str:
        return str(session.get("basket", "none"))

    @app.get("/t/slow-write")
    async def slow_write() -> str:
        assert "uid" not in session  # read before the other app's login landed
        await release.wait()
        session["basket"] = "changed"
        return "ok"

    @app.get("/t/refused-write")
    async def refused_write() -> tuple[str, int]:
        session["basket"] = "refused"
        return "no", 422

    @app.get("/t/read")
    async def read() -> str:
        return str(session.get("basket", "none"))

    async with app.test_app() as test_app:
        yield test_app


async def _stored(redis: Redis) -> dict[str, Any]:
    [key] = await _session_keys(redis)
    raw = await redis.get(key)
    assert raw is not None
    data: dict[str, Any] = json.loads(raw)
    return data


async def test_a_request_overlapping_a_login_in_another_app_keeps_the_login(
    changes_app: Any, redis: Redis
) -> None:
    import asyncio

    client = changes_app.test_client()
    await client.get("/t/write")
    slow = asyncio.create_task(client.get("/t/slow-write"))
    await asyncio.sleep(0.2)  # the slow request has read the session by now
    [key] = await _session_keys(redis)
    # The blog app signs the shopper in meanwhile: it writes the whole session.
    await redis.set(key, json.dumps({"basket": "full", "uid": 7}), keepttl=True)
    changes_app.app.config["RELEASE"].set()
    assert (await slow).status_code == 200
    assert await _stored(redis) == {"basket": "changed", "uid": 7}


async def test_a_key_removed_elsewhere_is_not_written_back_by_a_request_that_left_it_alone(
    changes_app: Any, redis: Redis
) -> None:
    client = changes_app.test_client()
    await client.get("/t/write")
    [key] = await _session_keys(redis)
    await redis.set(key, json.dumps({"basket": "full", "uid": 7}), keepttl=True)
    await client.get("/t/write")
    # Another app signs the shopper out by removing uid; our next write must not revive it.
    await redis.set(key, json.dumps({"basket": "full"}), keepttl=True)
    await client.get("/t/write")
    assert await _stored(redis) == {"basket": "full"}


async def test_a_refused_request_writes_nothing_to_the_session(
    changes_app: Any, redis: Redis
) -> None:
    client = changes_app.test_client()
    assert (await client.get("/t/refused-write")).status_code == 422
    assert await _session_keys(redis) == []
    await client.get("/t/write")
    await client.get("/t/refused-write")
    assert await _stored(redis) == {"basket": "full"}


async def test_the_stored_format_is_compact_json_a_sibling_app_reads(
    changes_app: Any, redis: Redis, settings: Any
) -> None:
    from itsdangerous import Signer

    client = changes_app.test_client()
    response = await client.get("/t/write")
    [key] = await _session_keys(redis)
    assert await redis.get(key) == b'{"basket":"full"}'
    cookie = response.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
    sid = Signer(settings.secret_key.reveal(), salt="coop-session").unsign(cookie).decode()
    assert key.decode().endswith(sid)


async def test_the_ttl_slides_when_the_session_is_used_without_a_write(
    changes_app: Any, redis: Redis, settings: Any
) -> None:
    client = changes_app.test_client()
    await client.get("/t/write")
    [key] = await _session_keys(redis)
    await redis.expire(key, 120)  # as if it had not been used for most of its life
    _time_passes(changes_app.app, seconds=changes_app.app.session_interface.refresh_seconds)
    response = await client.get("/t/read")
    assert await response.get_data(as_text=True) == "full"
    assert await redis.ttl(key) > settings.session.ttl_seconds - 60
    assert f"Max-Age={settings.session.ttl_seconds}" in response.headers["Set-Cookie"]


def _time_passes(app: Quart, *, seconds: float) -> None:
    """As if `seconds` had passed for the worker's refresh schedule."""
    from services.sessions import RedisSessionInterface

    interface = app.session_interface
    assert isinstance(interface, RedisSessionInterface)
    schedule = interface.schedule
    clock = schedule.clock
    schedule.clock = lambda: clock() + seconds


@asynccontextmanager
async def _commands_on(redis: Redis, key: bytes) -> AsyncIterator[list[str]]:
    """The names of the commands Redis ran on `key` inside the block (by MONITOR, so
    other clients of the same server do not count)."""
    seen: list[str] = []
    marker = f"end-{uuid.uuid4().hex}"
    async with redis.monitor() as monitor:
        yield seen
        await redis.echo(marker)
        async for info in monitor.listen():
            words = info["command"].split()
            if words == ["ECHO", marker]:
                break
            if key.decode() in words[1:]:
                seen.append(words[0].upper())


async def test_a_session_in_use_is_read_without_its_ttl_until_a_refresh_can_be_due(
    changes_app: Any, redis: Redis, settings: Any
) -> None:
    """One GET per request: after a write the worker knows no refresh is due for
    `refresh_seconds`, so it does not ask Redis for the TTL again before then."""
    client = changes_app.test_client()
    await client.get("/t/write")
    [key] = await _session_keys(redis)
    async with _commands_on(redis, key) as commands:
        for _ in range(20):
            response = await client.get("/t/read")
            assert await response.get_data(as_text=True) == "full"
            assert "Set-Cookie" not in response.headers
    assert commands == ["GET"] * 20
    # Once a refresh may be due, the TTL is read again, and refreshed if it has to be.
    await redis.expire(key, 120)
    _time_passes(changes_app.app, seconds=changes_app.app.session_interface.refresh_seconds)
    async with _commands_on(redis, key) as commands:
        response = await client.get("/t/read")
    assert commands == ["GET", "TTL", "EXPIRE"]
    assert await redis.ttl(key) > settings.session.ttl_seconds - 60
    assert f"Max-Age={settings.session.ttl_seconds}" in response.headers["Set-Cookie"]


async def test_a_sibling_asking_on_a_shoppers_behalf_never_slides_the_session(
    changes_app: Any, redis: Redis, settings: Any
) -> None:
    """The internal API reads the forwarded session with one GET, even when a refresh
    is due: its Set-Cookie would reach the sibling app, not the browser. The shopper's
    own next page slides it."""
    client = changes_app.test_client()
    await client.get("/t/write")
    [key] = await _session_keys(redis)
    await redis.expire(key, 120)
    _time_passes(changes_app.app, seconds=changes_app.app.session_interface.refresh_seconds)
    async with _commands_on(redis, key) as commands:
        response = await client.get("/internal/t/read")
    assert await response.get_data(as_text=True) == "full"
    assert commands == ["GET"] and "Set-Cookie" not in response.headers
    assert await redis.ttl(key) <= 120
    response = await client.get("/t/read")
    assert await redis.ttl(key) > settings.session.ttl_seconds - 60
    assert "Set-Cookie" in response.headers


async def test_a_session_deleted_elsewhere_is_gone_at_once(changes_app: Any, redis: Redis) -> None:
    """What the worker remembers is when to read the TTL, never the session: a logout
    by a sibling app (the key deleted) shows on the very next request."""
    client = changes_app.test_client()
    await client.get("/t/write")
    [key] = await _session_keys(redis)
    await redis.delete(key)
    assert await (await client.get("/t/read")).get_data(as_text=True) == "none"
    await redis.set(key, json.dumps({"basket": "from the blog"}))  # no expiry: kept as is
    assert await (await client.get("/t/read")).get_data(as_text=True) == "from the blog"


def test_the_refresh_schedule_is_bounded_and_forgets_safely() -> None:
    from services.sessions import RefreshSchedule

    now = [1000.0]
    schedule = RefreshSchedule(limit=3, clock=lambda: now[0])
    assert schedule.due("a")
    schedule.not_due_for("a", 60)
    assert not schedule.due("a")
    now[0] += 60
    assert schedule.due("a")
    for sid in "bcd":  # the fourth entry empties the full table first
        schedule.not_due_for(sid, 60)
    assert schedule.due("a") and schedule.due("b") and not schedule.due("d")
    schedule.not_due_for("d", 0)  # already due: nothing kept
    assert schedule.due("d")
    schedule.not_due_for("c", 60)
    schedule.forget("c")
    assert schedule.due("c")


async def test_a_fresh_session_read_again_is_not_rewritten(changes_app: Any, redis: Redis) -> None:
    client = changes_app.test_client()
    await client.get("/t/write")
    response = await client.get("/t/read")
    assert "Set-Cookie" not in response.headers


async def test_a_flood_of_refused_posts_stores_no_session(
    app: Quart, db: Any, redis: Redis
) -> None:
    """Issue 11, case 2: 900 refused cookieless POSTs in 5 s made 907 keys in Redis."""
    from tests.factories import make_product, make_shop
    from tests.shopper import csrf_token

    _, market = await make_shop(db)
    product = await make_product(db, market)
    statuses = []
    for n in range(150):
        response = await app.test_client().post(f"/cart/add/{product.id}/", form={"n": str(n)})
        statuses.append(response.status_code)
    browser = app.test_client()
    token = await csrf_token(browser)
    for path, quantity in [(f"/cart/add/{product.id}/", "abc"), ("/cart/add/999999/", "1")]:
        for _ in range(50):
            response = await browser.post(path, form={"csrf_token": token, "quantity": quantity})
            statuses.append(response.status_code)
    assert set(statuses) <= {400, 404, 422, 429} and statuses.count(400) == 150
    assert await _session_keys(redis) == []
    # What is left are the rate limits' counters: one per address and browser, expiring.
    assert len([key async for key in redis.scan_iter(match=f"{REDIS_PREFIX}*")]) <= 3
