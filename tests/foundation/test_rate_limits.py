"""Abuse limits in Redis: 429 with Retry-After and a page that says when (issue 11, case 3)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import pytest
from quart import Quart
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.webhook_tokens import webhook_token
from config import ConfigError, load_settings
from tests.conftest import REDIS_PREFIX
from tests.factories import make_product, make_shop, make_user
from tests.foundation.test_config import GOOD
from tests.orders.factories import make_order, place_order
from tests.shopper import add, csrf_token, page_text, post_form

Limited = Callable[..., Any]


@pytest.fixture
def limited(settings: Any) -> Limited:
    """An app whose limits are the given `RATE_LIMIT_*` fields (tiny, for the test)."""

    @asynccontextmanager
    async def start(**limits: Any) -> AsyncIterator[Quart]:
        from app import create_app

        app = create_app(replace(settings, rate_limits=replace(settings.rate_limits, **limits)))
        async with app.test_app():
            yield app

    return start


def _retry_after(response: Any) -> int:
    seconds = int(response.headers["Retry-After"])
    assert 1 <= seconds <= 60
    return seconds


async def _quantity(db: AsyncSession) -> int | None:
    value = await db.scalar(text("SELECT sum(quantity) FROM cart_items WHERE deleted_at IS NULL"))
    return None if value is None else int(value)


async def test_cart_writes_past_the_session_limit_are_429_with_a_page_saying_when(
    limited: Limited, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    async with limited(writes_per_session="3/minute") as app:
        client = app.test_client()
        token = await csrf_token(client)
        for _ in range(3):
            assert (await add(client, product.id, csrf_token=token)).status_code == 303
        response = await add(client, product.id, csrf_token=token)
        assert response.status_code == 429
        seconds = _retry_after(response)
        page = await page_text(response)
        assert "Too many requests" in page
        assert re.search(rf"try again in {seconds} seconds?\.", page)
        response = await post_form(
            client, f"/cart/add/{product.id}/", {"csrf_token": token}, json=True
        )
        assert response.status_code == 429
        body = await response.get_json()
        assert body["status"] == 429 and body["retry_after"] == _retry_after(response)
    assert await _quantity(db) == 3  # the refused adds changed nothing


async def test_writes_from_one_address_are_limited_across_sessions(
    limited: Limited, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    here = {"client": ("203.0.113.7", 5000)}
    elsewhere = {"client": ("198.51.100.9", 5000)}
    async with limited(writes_per_ip="2/minute") as app:
        statuses = []
        for _ in range(3):
            client = app.test_client()
            token = await csrf_token(client)
            response = await client.post(
                f"/cart/add/{product.id}/",
                form={"csrf_token": token},
                headers={"Accept": "text/html"},
                scope_base=here,
            )
            statuses.append(response.status_code)
        assert statuses == [303, 303, 429]
        client = app.test_client()
        token = await csrf_token(client)
        response = await client.post(
            f"/cart/add/{product.id}/", form={"csrf_token": token}, scope_base=elsewhere
        )
        assert response.status_code == 303


async def test_return_page_and_recheck_share_a_session_limit(
    limited: Limited, db: AsyncSession, sandbox_control: Any
) -> None:
    await sandbox_control.reset()
    async with limited(status_per_session="2/minute") as app:
        client = app.test_client()
        order = (await place_order(client, db)).order
        assert (await client.get(f"/cart/checkout/return/{order.id}/")).status_code == 200
        recheck = await post_form(client, f"/orders/{order.id}/recheck/")
        assert recheck.status_code == 303
        response = await client.get(f"/cart/checkout/return/{order.id}/")
        assert response.status_code == 429
        _retry_after(response)
        assert (await post_form(client, f"/orders/{order.id}/recheck/")).status_code == 429


async def test_pay_again_is_limited_per_session(
    limited: Limited, db: AsyncSession, sandbox_control: Any
) -> None:
    await sandbox_control.reset()
    async with limited(pay_per_session="1/minute") as app:
        client = app.test_client()
        order = (await place_order(client, db)).order
        assert (await post_form(client, f"/orders/{order.id}/pay/")).status_code == 303
        response = await post_form(client, f"/orders/{order.id}/pay/")
        assert response.status_code == 429
        assert "try again in" in await page_text(response)


async def test_the_webhook_is_limited_per_order_and_forged_posts_do_not_use_it_up(
    limited: Limited, db: AsyncSession
) -> None:
    order = await make_order(db, session_id="someone")
    other = await make_order(db, session_id="someone")
    async with limited(webhook_per_order="2/minute") as app:
        client = app.test_client()
        secret = app.config["SECRET_KEY"]
        body = {"event_type": "SOMETHING_ELSE"}
        for _ in range(5):
            forged = await client.post(
                f"/cart/checkout/webhook/{order.id}/?token=forged", json=body
            )
            assert forged.status_code == 404
        url = f"/cart/checkout/webhook/{order.id}/?token={webhook_token(secret, order.id)}"
        assert [(await client.post(url, json=body)).status_code for _ in range(2)] == [204, 204]
        response = await client.post(url, json=body)
        assert response.status_code == 429
        assert (await response.get_json())["retry_after"] == _retry_after(response)
        url = f"/cart/checkout/webhook/{other.id}/?token={webhook_token(secret, other.id)}"
        assert (await client.post(url, json=body)).status_code == 204


async def test_the_webhook_is_limited_per_address(limited: Limited, db: AsyncSession) -> None:
    order = await make_order(db, session_id="someone")
    async with limited(webhook_per_ip="3/minute") as app:
        client = app.test_client()
        url = f"/cart/checkout/webhook/{order.id}/?token=forged"
        statuses = [(await client.post(url, json={})).status_code for _ in range(4)]
        assert statuses == [404, 404, 404, 429]


async def test_the_internal_api_is_limited_per_token_and_wrong_tokens_are_not_counted(
    limited: Limited, settings: Any
) -> None:
    async with limited(internal_per_token="2/minute") as app:
        client = app.test_client()
        for _ in range(3):
            wrong = await client.get(
                "/internal/cart/summary", headers={"Authorization": "Bearer wrong"}
            )
            assert wrong.status_code == 401
        bearer = {"Authorization": f"Bearer {settings.internal_api_token.reveal()}"}
        statuses = [
            (await client.get("/internal/cart/summary", headers=bearer)).status_code
            for _ in range(3)
        ]
        assert statuses == [200, 200, 429]
        response = await client.get("/internal/cart/summary", headers=bearer)
        assert response.mimetype == "application/json"
        assert (await response.get_json())["error"] == "Too many requests"


async def test_login_merges_are_limited_per_user(
    limited: Limited, db: AsyncSession, redis: Redis, settings: Any
) -> None:
    user = await make_user(db)
    async with limited(merge_per_user="1/minute") as app:
        interface = app.session_interface
        key = interface.key("merge-test-session")
        pending = json.dumps({"uid": user.id, "cart_sid": "an-anonymous-cart"})
        await redis.set(key, pending, ex=600)
        client = app.test_client()
        cookie = interface.signer.sign("merge-test-session").decode()
        client.set_cookie("localhost", settings.session.cookie_name, cookie)
        assert (await client.get("/cart/")).status_code == 200
        await redis.set(key, pending, ex=600)  # another anonymous cart waits to be merged
        response = await client.get("/cart/")
        assert response.status_code == 429
        _retry_after(response)


async def test_limits_can_be_turned_off(limited: Limited, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    async with limited(enabled=False, writes_per_session="1/minute") as app:
        client = app.test_client()
        token = await csrf_token(client)
        statuses = [(await add(client, product.id, csrf_token=token)).status_code for _ in range(3)]
    assert statuses == [303, 303, 303]


async def test_the_limits_keys_expire_in_redis(
    limited: Limited, db: AsyncSession, redis: Redis
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    async with limited() as app:
        client = app.test_client()
        await add(client, product.id, csrf_token=await csrf_token(client))
    keys = [key async for key in redis.scan_iter(match=f"{REDIS_PREFIX}limits*")]
    assert keys
    ttls = [await redis.ttl(key) for key in keys]
    assert all(0 < ttl <= 60 for ttl in ttls)


# --- settings ----------------------------------------------------------------------


def test_limits_come_from_the_environment() -> None:
    settings = load_settings(
        {**GOOD, "RATE_LIMIT_WRITES_PER_IP": "5/second;100/hour", "RATE_LIMITS_ENABLED": "no"}
    )
    assert settings.rate_limits.writes_per_ip == "5/second;100/hour"
    assert settings.rate_limits.enabled is False
    assert settings.rate_limits.writes_per_session == "60/minute"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RATE_LIMIT_WRITES_PER_SESSION", "lots"),
        ("RATE_LIMIT_WEBHOOK_PER_ORDER", "10 per fortnight"),
        ("SUMUP_STATUS_CHECK_SECONDS", "soon"),
        ("RATE_LIMITS_ENABLED", "perhaps"),
    ],
)
def test_a_malformed_limit_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({**GOOD, name: value})
