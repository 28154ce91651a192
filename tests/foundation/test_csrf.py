"""CSRF: a signed double submit bound to the browser's anchor cookie, no server session."""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from services import csrf
from tests.conftest import REDIS_PREFIX
from tests.factories import make_product, make_shop, make_user
from tests.shopper import add, csrf_token, login, page_text, post_form

REFUSED = "security token was missing or out of date"


async def _keys(redis: Redis) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=f"{REDIS_PREFIX}session:*")]


async def _lines(db: AsyncSession) -> int:
    return int(await db.scalar(text("SELECT count(*) FROM cart_items")) or 0)


async def test_a_form_page_gives_a_token_without_storing_a_session(
    client: Client, redis: Redis
) -> None:
    response = await client.get("/dev/login")
    assert "cart_anchor=" in response.headers["Set-Cookie"]
    assert "HttpOnly" in response.headers["Set-Cookie"]
    assert await _keys(redis) == []


async def test_the_token_of_a_visitor_without_a_session_lets_the_first_add_through(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    token = await csrf_token(client)
    response = await add(client, product.id, csrf_token=token)
    assert response.status_code == 303
    assert await _lines(db) == 1


async def test_a_token_from_another_browser_is_refused(
    app: Quart, client: Client, db: AsyncSession, redis: Redis
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    theirs = await csrf_token(app.test_client())
    await csrf_token(client)  # this browser has its own anchor
    response = await add(client, product.id, csrf_token=theirs)
    assert response.status_code == 400
    assert REFUSED in await page_text(response)
    assert await _lines(db) == 0 and await _keys(redis) == []


async def test_a_token_posted_without_the_anchor_cookie_is_refused(
    app: Quart, client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    token = await csrf_token(client)
    cookieless = app.test_client()
    response = await add(cookieless, product.id, csrf_token=token)
    assert response.status_code == 400
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize("token", ["", "x", "a.b.c", "é" * 10, "0" * 5000])
async def test_malformed_tokens_are_refused(token: str, client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await csrf_token(client)
    response = await add(client, product.id, csrf_token=token)
    assert response.status_code in (400, 422)
    assert await _lines(db) == 0


async def test_a_token_older_than_twelve_hours_is_refused(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    with mock.patch("itsdangerous.timed.time.time", return_value=time.time() - 13 * 3600):
        token = await csrf_token(client)
    response = await add(client, product.id, csrf_token=token)
    assert response.status_code == 400
    assert REFUSED in await page_text(response)


async def test_a_posted_form_is_checked_without_signing_a_new_token(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    token = await csrf_token(client)
    with mock.patch.object(csrf, "csrf_token", wraps=csrf.csrf_token) as minted:
        response = await client.post(
            f"/cart/add/{product.id}/",
            form={"csrf_token": token},
            headers={"Accept": "application/json"},
        )
    assert response.status_code == 200
    assert minted.call_count == 0  # validating needs the posted token only
    assert await _lines(db) == 1


async def test_forms_on_screen_stay_valid_after_signing_in(
    client: Client, db: AsyncSession
) -> None:
    user = await make_user(db)
    _, market = await make_shop(db)
    product = await make_product(db, market)
    token = await csrf_token(client)
    await login(client, user.email)
    response = await add(client, product.id, csrf_token=token)
    assert response.status_code == 303


async def test_a_forged_anchor_cookie_is_ignored(
    client: Client, db: AsyncSession, settings: Any
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    client.set_cookie("localhost", "cart_anchor", "chosen-by-the-attacker")
    token = await csrf_token(client)  # a new, signed anchor replaces it
    assert (await add(client, product.id, csrf_token=token)).status_code == 303


async def test_behind_https_the_anchor_cookie_is_host_only_and_secure(settings: Any) -> None:
    from dataclasses import replace

    from app import create_app

    secure = replace(settings, session=replace(settings.session, cookie_secure=True))
    async with create_app(secure).test_app() as test_app:
        response = await test_app.test_client().get("/dev/login")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-cart_anchor=")
    assert "Secure" in cookie and "Domain" not in cookie and "Path=/" in cookie


async def test_every_state_changing_form_refuses_a_post_without_a_token(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await add(client, product.id)
    paths = [
        f"/cart/add/{product.id}/",
        f"/cart/update/{product.id}/",
        f"/cart/remove/{product.id}/",
        "/cart/entries/1/remove/",
        "/cart/checkout/",
        "/cart/farm/checkout/",
        "/orders/1/pay/",
        "/orders/1/recheck/",
        "/orders/1/cancel/",
        "/dev/login",
        "/dev/logout",
    ]
    for path in paths:
        response = await post_form(client, path, {"quantity": "1"}, token=False)
        assert response.status_code in (400, 404), path
        if response.status_code == 400:
            assert REFUSED in await page_text(response), path
    assert await _lines(db) == 1
