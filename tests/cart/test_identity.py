"""Who owns a cart: the signed-in user, or an anonymous id made on the first cart write."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.identity import (
    ANONYMOUS_KEY,
    USER_KEY,
    Identity,
    ensure_identity,
    identity_from_session,
    pending_merge,
)
from services.sessions import RedisSession
from tests.conftest import REDIS_PREFIX
from tests.factories import make_product, make_shop, make_user
from tests.shopper import add, csrf_token, login, page_text, post_form


async def stored_session(app: Quart, client: Client, redis: Redis) -> dict[str, Any] | None:
    """The session Redis holds for this client's cookie, or None when it has none."""
    assert client.cookie_jar is not None
    interface = app.session_interface
    name = app.config["SETTINGS"].session.cookie_name
    cookies = [cookie.value for cookie in client.cookie_jar if cookie.name == name]
    if not cookies:
        return None
    sid = interface.sid_from_cookie(cookies[0])  # type: ignore[attr-defined]
    raw = await redis.get(interface.key(sid))  # type: ignore[attr-defined]
    return None if raw is None else dict(json.loads(raw))


async def live_lines(db: AsyncSession) -> list[Any]:
    rows = await db.execute(
        text(
            "SELECT user_id, session_id, product_id, quantity FROM cart_items "
            "WHERE deleted_at IS NULL ORDER BY id"
        )
    )
    return list(rows)


# --- on the web ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/cart/", "/cart/farm/", "/internal/cart/summary"])
async def test_viewing_the_cart_creates_no_session(
    path: str, app: Quart, client: Client, db: AsyncSession, redis: Redis
) -> None:
    await make_shop(db, "farm")
    response = await client.get(path)
    assert response.status_code in (200, 401)
    assert "Set-Cookie" not in response.headers
    assert await stored_session(app, client, redis) is None


async def test_a_page_with_forms_stores_no_session_only_an_anchor_cookie(
    app: Quart, client: Client, redis: Redis
) -> None:
    await csrf_token(client, "/dev/login")  # the CSRF token is bound to the anchor cookie
    assert client.cookie_jar is not None
    assert [cookie.name for cookie in client.cookie_jar] == ["cart_anchor"]
    assert await stored_session(app, client, redis) is None
    assert [key async for key in redis.scan_iter(match=f"{REDIS_PREFIX}*")] == []


async def test_first_cart_write_creates_the_anonymous_id_and_later_writes_reuse_it(
    app: Quart, client: Client, db: AsyncSession, redis: Redis
) -> None:
    _, market = await make_shop(db)
    eggs = await make_product(db, market)
    honey = await make_product(db, market)
    await add(client, eggs.id)
    stored = await stored_session(app, client, redis)
    assert stored is not None
    anonymous_id = stored[ANONYMOUS_KEY]
    await add(client, honey.id)
    await add(client, eggs.id)
    assert (await stored_session(app, client, redis) or {})[ANONYMOUS_KEY] == anonymous_id
    assert [tuple(line) for line in await live_lines(db)] == [
        (None, anonymous_id, eggs.id, 2),
        (None, anonymous_id, honey.id, 1),
    ]


async def test_a_refused_write_creates_no_cart(
    app: Quart, client: Client, db: AsyncSession, redis: Redis
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    response = await add(client, product.id, "0")
    assert response.status_code == 303  # back to the line, with the message
    assert ANONYMOUS_KEY not in (await stored_session(app, client, redis) or {})
    assert await live_lines(db) == []


async def test_signed_in_shopper_writes_to_the_users_cart(
    app: Quart, client: Client, db: AsyncSession, redis: Redis
) -> None:
    user = await make_user(db)
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await login(client, user.email)
    await add(client, product.id, 2)
    assert [tuple(line) for line in await live_lines(db)] == [(user.id, None, product.id, 2)]
    stored = await stored_session(app, client, redis)
    assert stored is not None
    assert stored[USER_KEY] == user.id and ANONYMOUS_KEY not in stored


async def test_two_anonymous_shoppers_have_separate_carts(
    app: Quart, client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    eggs = await make_product(db, market, title="Eggs")
    honey = await make_product(db, market, title="Honey")
    other = app.test_client()
    await add(client, eggs.id)
    await add(other, honey.id)
    mine = await page_text(await client.get("/cart/"))
    theirs = await page_text(await other.get("/cart/"))
    assert "Eggs" in mine and "Honey" not in mine
    assert "Honey" in theirs and "Eggs" not in theirs


async def test_signing_out_leaves_the_users_cart_for_the_next_sign_in(
    client: Client, db: AsyncSession
) -> None:
    user = await make_user(db)
    _, market = await make_shop(db)
    product = await make_product(db, market, title="Honey")
    await login(client, user.email)
    await add(client, product.id, 2)
    response = await post_form(client, "/dev/logout")
    assert response.status_code == 303
    assert "Your cart is empty." in await page_text(await client.get("/cart/"))
    await login(client, user.email)
    assert "Honey" in await page_text(await client.get("/cart/"))


# --- racing writes ------------------------------------------------------------------


async def _concurrent_adds(
    client: Client, product_id: int, times: int, *, json: bool = False
) -> list[int]:
    token = await csrf_token(client)
    form = {"quantity": 1, "csrf_token": token}
    responses = await asyncio.gather(
        *(post_form(client, f"/cart/add/{product_id}/", form, json=json) for _ in range(times))
    )
    return sorted(response.status_code for response in responses)


async def test_ten_concurrent_adds_to_a_cart_make_one_line_of_ten_more(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await add(client, product.id)
    assert await _concurrent_adds(client, product.id, 10) == [303] * 10
    [line] = await live_lines(db)
    assert line.quantity == 11


async def test_ten_concurrent_first_adds_in_one_session_land_in_one_cart(
    client: Client, db: AsyncSession
) -> None:
    """A double (or tenfold) click on the first "add" must not split the cart."""
    _, market = await make_shop(db)
    product = await make_product(db, market)
    assert await _concurrent_adds(client, product.id, 10) == [303] * 10
    [line] = await live_lines(db)
    assert line.quantity == 10
    assert 'data-testid="cart-badge">10<' in await page_text(await client.get("/cart/"))


async def test_concurrent_adds_past_the_maximum_stop_at_the_maximum(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await add(client, product.id, 95)
    assert await _concurrent_adds(client, product.id, 10, json=True) == [200] * 4 + [422] * 6
    [line] = await live_lines(db)
    assert line.quantity == 99


async def test_concurrent_first_adds_in_two_currencies_leave_one_currency_in_the_cart(
    client: Client, db: AsyncSession
) -> None:
    # The owner's lock orders the adds: the one that reads the cart second sees the first.
    _, market = await make_shop(db)
    pounds = await make_product(db, market, currency="GBP")
    euros = await make_product(db, market, currency="EUR")
    token = await csrf_token(client)
    form = {"quantity": 1, "csrf_token": token}
    responses = await asyncio.gather(
        *(
            post_form(client, f"/cart/add/{product.id}/", form, json=True)
            for product in (pounds, euros) * 5
        )
    )
    statuses = [response.status_code for response in responses]
    lines = await live_lines(db)
    assert len({line.product_id for line in lines}) == 1
    assert sorted(statuses) == [200] * 5 + [422] * 5
    assert lines[0].quantity == 5


async def test_racing_updates_of_one_line_end_as_one_of_them(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await add(client, product.id)
    token = await csrf_token(client)
    responses = await asyncio.gather(
        *(
            post_form(
                client,
                f"/cart/update/{product.id}/",
                {"quantity": quantity, "csrf_token": token},
                json=True,
            )
            for quantity in range(1, 11)
        )
    )
    assert [response.status_code for response in responses] == [200] * 10
    [line] = await live_lines(db)
    summaries = [(await response.get_json())["summary"]["count"] for response in responses]
    # Each answer saw its own write, and the line holds one of them, whole.
    assert summaries == list(range(1, 11))
    assert line.quantity in range(1, 11)


# --- the identity functions ----------------------------------------------------------


@pytest.mark.parametrize(
    ("stored", "identity"),
    [
        ({}, None),
        ({USER_KEY: 7}, Identity(user_id=7)),
        ({USER_KEY: "7"}, Identity(user_id=7)),
        ({USER_KEY: 7, ANONYMOUS_KEY: "abc"}, Identity(user_id=7)),
        ({ANONYMOUS_KEY: "abc"}, Identity(session_id="abc")),
        ({USER_KEY: True, ANONYMOUS_KEY: "abc"}, Identity(session_id="abc")),
        ({USER_KEY: 0}, None),
        ({USER_KEY: -3}, None),
        ({USER_KEY: "seven"}, None),
        ({USER_KEY: None, ANONYMOUS_KEY: ""}, None),
        ({ANONYMOUS_KEY: 12}, None),
    ],
)
def test_identity_comes_from_uid_first_then_the_anonymous_id(
    stored: dict[str, Any], identity: Identity | None
) -> None:
    assert identity_from_session(stored) == identity


def test_ensure_identity_creates_the_anonymous_id_once() -> None:
    stored: dict[str, Any] = {}
    first = ensure_identity(stored)
    assert first.session_id and first.user_id is None
    assert ensure_identity(stored) == first
    assert stored == {ANONYMOUS_KEY: first.session_id}


def test_ensure_identity_of_a_signed_in_session_adds_nothing() -> None:
    stored: dict[str, Any] = {USER_KEY: 3}
    assert ensure_identity(stored) == Identity(user_id=3)
    assert stored == {USER_KEY: 3}


def test_anonymous_ids_of_one_session_agree_and_of_two_sessions_differ() -> None:
    one, same, two = (
        RedisSession(sid="sid-one"),
        RedisSession(sid="sid-one"),
        RedisSession(sid="sid-two"),
    )
    assert ensure_identity(one) == ensure_identity(same)
    assert ensure_identity(one) != ensure_identity(two)
    assert "sid-one" not in (ensure_identity(one).session_id or "")


def test_new_sessions_get_unguessable_anonymous_ids() -> None:
    ids = {ensure_identity(RedisSession(sid=None)).session_id for _ in range(50)}
    assert len(ids) == 50


@pytest.mark.parametrize(
    ("stored", "merge"),
    [
        ({USER_KEY: 7, ANONYMOUS_KEY: "abc"}, (7, "abc")),
        ({USER_KEY: 7}, None),
        ({ANONYMOUS_KEY: "abc"}, None),
        ({USER_KEY: 7, ANONYMOUS_KEY: ""}, None),
    ],
)
def test_a_merge_is_pending_when_a_user_still_holds_an_anonymous_cart(
    stored: dict[str, Any], merge: tuple[int, str] | None
) -> None:
    assert pending_merge(stored) == merge


@pytest.mark.parametrize("columns", [{}, {"user_id": 1, "session_id": "abc"}])
def test_an_identity_is_a_user_or_a_session_never_both_nor_neither(
    columns: dict[str, Any],
) -> None:
    with pytest.raises(ValueError, match="not both"):
        Identity(**columns)
