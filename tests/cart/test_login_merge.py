"""Signing in folds the anonymous cart into the user's once, and says what it did."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from models import Calendar, Order, Product, User
from tests.factories import make_calendar, make_entry, make_line, make_product, make_shop, make_user
from tests.shopper import add, csrf_token, login, page_text, post_form

WELCOME = "Welcome back! We added what you chose before signing in to your cart"


@dataclass
class Shop:
    user: User
    eggs_id: int
    honey_id: int
    calendar_id: int


@pytest.fixture
async def shop(db: AsyncSession) -> Shop:
    page, market = await make_shop(db, "farm")
    eggs = await make_product(db, market, price="3.00", title="Eggs")
    honey = await make_product(db, market, price="6.00", title="Honey")
    calendar = await make_calendar(db, page)
    return Shop(await make_user(db, "ada@example.coop"), eggs.id, honey.id, calendar.id)


async def anonymous_id(db: AsyncSession) -> str:
    value = await db.scalar(
        text("SELECT session_id FROM cart_items WHERE session_id IS NOT NULL LIMIT 1")
    )
    assert value
    return str(value)


async def live_lines(db: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        text(
            "SELECT user_id, session_id, product_id, quantity FROM cart_items "
            "WHERE deleted_at IS NULL ORDER BY product_id"
        )
    )
    return [tuple(row) for row in rows]


async def entry_owners(db: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        text("SELECT id, user_id, session_id, state FROM calendar_entries ORDER BY id")
    )
    return [tuple(row) for row in rows]


async def make_order(db: AsyncSession, *, session_id: str) -> Order:
    order = Order(
        session_id=session_id,
        currency="GBP",
        total_amount=Decimal("6.00"),
        description="An order placed before signing in",
        cart_fingerprint="f" * 64,
    )
    db.add(order)
    await db.commit()
    return order


async def sign_in_and_look(client: Client, email: str) -> str:
    """Sign in, then load the page the sign-in sends the shopper to."""
    response = await login(client, email)
    return await page_text(await client.get(response.headers["Location"]))


async def test_signing_in_moves_anonymous_lines_and_pending_entries_to_the_user(
    client: Client, db: AsyncSession, shop: Shop
) -> None:
    await add(client, shop.eggs_id, 2)
    anonymous = await anonymous_id(db)
    calendar = await db.get_one(Calendar, shop.calendar_id)
    entry = await make_entry(db, calendar, session_id=anonymous)
    page = await sign_in_and_look(client, shop.user.email)
    assert await live_lines(db) == [(shop.user.id, None, shop.eggs_id, 2)]
    assert await entry_owners(db) == [(entry.id, shop.user.id, None, "pending")]
    assert "Eggs" in page and entry.name in page


async def test_quantities_add_up_with_the_users_existing_line(
    client: Client, db: AsyncSession, shop: Shop
) -> None:
    eggs = await db.get_one(Product, shop.eggs_id)
    await make_line(db, eggs, quantity=3, user_id=shop.user.id)
    await add(client, shop.eggs_id, 2)
    await add(client, shop.honey_id, 1)
    await sign_in_and_look(client, shop.user.email)
    assert await live_lines(db) == [
        (shop.user.id, None, shop.eggs_id, 5),
        (shop.user.id, None, shop.honey_id, 1),
    ]


async def test_merged_quantity_is_capped_at_the_maximum_and_the_shopper_is_told(
    client: Client, db: AsyncSession, shop: Shop
) -> None:
    eggs = await db.get_one(Product, shop.eggs_id)
    await make_line(db, eggs, quantity=90, user_id=shop.user.id)
    await add(client, shop.eggs_id, 20)
    page = await sign_in_and_look(client, shop.user.email)
    assert await live_lines(db) == [(shop.user.id, None, shop.eggs_id, 99)]
    assert "Some quantities were capped at the maximum: Eggs." in page


async def test_shopper_is_told_on_the_next_page_what_was_merged_and_only_once(
    client: Client, db: AsyncSession, shop: Shop
) -> None:
    await add(client, shop.eggs_id, 2)
    calendar = await db.get_one(Calendar, shop.calendar_id)
    entry = await make_entry(db, calendar, session_id=await anonymous_id(db))
    await client.get("/cart/")  # shows (and so clears) the "added" message
    page = await sign_in_and_look(client, shop.user.email)
    assert f"{WELCOME}: 2 × Eggs, {entry.name}." in page
    assert WELCOME not in await page_text(await client.get("/cart/"))


async def test_signing_in_with_no_anonymous_cart_merges_nothing_and_says_nothing(
    client: Client, db: AsyncSession, shop: Shop
) -> None:
    eggs = await db.get_one(Product, shop.eggs_id)
    await make_line(db, eggs, quantity=3, user_id=shop.user.id)
    page = await sign_in_and_look(client, shop.user.email)
    assert WELCOME not in page
    assert await live_lines(db) == [(shop.user.id, None, shop.eggs_id, 3)]


async def test_anonymous_orders_become_the_users(
    client: Client, db: AsyncSession, shop: Shop
) -> None:
    await add(client, shop.eggs_id)
    order = await make_order(db, session_id=await anonymous_id(db))
    page = await sign_in_and_look(client, shop.user.email)
    owner = await db.scalar(text("SELECT user_id FROM orders WHERE id = :id"), {"id": order.id})
    assert owner == shop.user.id
    assert "1 earlier order(s) now show under your orders." in page


async def test_bookings_already_ordered_follow_the_user_but_are_not_called_added(
    client: Client, db: AsyncSession, shop: Shop
) -> None:
    await add(client, shop.eggs_id)
    anonymous = await anonymous_id(db)
    calendar = await db.get_one(Calendar, shop.calendar_id)
    ordered = await make_entry(db, calendar, session_id=anonymous, state="ordered")
    await make_order(db, session_id=anonymous)
    await client.get("/cart/")
    page = await sign_in_and_look(client, shop.user.email)
    assert await entry_owners(db) == [(ordered.id, shop.user.id, None, "ordered")]
    assert f"{WELCOME}: 1 × Eggs." in page
    assert ordered.name not in page


async def test_another_shoppers_anonymous_cart_is_left_alone(
    app: Quart, client: Client, db: AsyncSession, shop: Shop
) -> None:
    stranger = app.test_client()
    await add(stranger, shop.honey_id, 4)
    await add(client, shop.eggs_id, 1)
    await sign_in_and_look(client, shop.user.email)
    lines = await live_lines(db)
    assert (shop.user.id, None, shop.eggs_id, 1) in lines
    assert [line[2:] for line in lines if line[0] is None] == [(shop.honey_id, 4)]


# --- racing requests right after sign-in ----------------------------------------------


async def _anonymous_cart_with_everything(client: Client, db: AsyncSession, shop: Shop) -> str:
    """An anonymous cart with lines, an entry and an order, signed in; its CSRF token."""
    eggs = await db.get_one(Product, shop.eggs_id)
    await make_line(db, eggs, quantity=3, user_id=shop.user.id)
    await add(client, shop.eggs_id, 2)
    await add(client, shop.honey_id, 1)
    anonymous = await anonymous_id(db)
    calendar = await db.get_one(Calendar, shop.calendar_id)
    await make_entry(db, calendar, session_id=anonymous)
    await make_order(db, session_id=anonymous)
    token = await csrf_token(client)
    await login(client, shop.user.email)
    return token


async def _assert_merged_once(db: AsyncSession, shop: Shop, honey: int = 1) -> None:
    assert await live_lines(db) == [
        (shop.user.id, None, shop.eggs_id, 5),
        (shop.user.id, None, shop.honey_id, honey),
    ]
    [(_, user_id, session_id, state)] = await entry_owners(db)
    assert (user_id, session_id, state) == (shop.user.id, None, "pending")
    assert await db.scalar(text("SELECT user_id FROM orders")) == shop.user.id


async def test_racing_requests_over_http_right_after_sign_in_merge_exactly_once(
    client: Client, db: AsyncSession, shop: Shop, live_url: str, settings: Any
) -> None:
    await _anonymous_cart_with_everything(client, db, shop)
    assert client.cookie_jar is not None
    name = settings.session.cookie_name
    [cookie] = [c.value for c in client.cookie_jar if c.name == name]
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as browser:
        responses = await asyncio.gather(
            *(browser.get("/cart/", headers={"Cookie": f"{name}={cookie}"}) for _ in range(8))
        )
    assert [r.status_code for r in responses] == [200] * 8
    assert sum(WELCOME in r.text for r in responses) == 1
    await _assert_merged_once(db, shop)


async def test_racing_adds_and_page_views_right_after_sign_in_lose_nothing(
    client: Client, db: AsyncSession, shop: Shop
) -> None:
    # Taken before signing in (any request after it would run the merge); the token
    # stays valid because signing in renews the session's id, not its contents.
    token = await _anonymous_cart_with_everything(client, db, shop)
    adds = [
        post_form(client, f"/cart/add/{shop.honey_id}/", {"csrf_token": token}) for _ in range(4)
    ]
    views = [client.get("/cart/") for _ in range(4)]
    responses = await asyncio.gather(*adds, *views)
    assert sorted(r.status_code for r in responses) == [200] * 4 + [303] * 4
    await _assert_merged_once(db, shop, honey=5)


async def test_a_merge_run_by_a_siblings_summary_call_is_reported_on_the_next_cart_page(
    client: Client, db: AsyncSession, shop: Shop, live_url: str, settings: Any
) -> None:
    """After sign-in the blog or market app may ask for the badge before the cart is seen."""
    await add(client, shop.eggs_id, 2)
    await client.get("/cart/")
    await login(client, shop.user.email)
    assert client.cookie_jar is not None
    name = settings.session.cookie_name
    [cookie] = [c.value for c in client.cookie_jar if c.name == name]
    headers = {
        "Authorization": f"Bearer {settings.internal_api_token.reveal()}",
        "Cookie": f"{name}={cookie}",
    }
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as sibling:
        badge = (await sibling.get("/internal/cart/summary", headers=headers)).json()
    assert badge["count"] == 2
    assert await live_lines(db) == [(shop.user.id, None, shop.eggs_id, 2)]
    assert f"{WELCOME}: 2 × Eggs." in await page_text(await client.get("/cart/"))


async def test_a_merge_that_would_mix_currencies_keeps_the_other_currency_apart_and_says_so(
    client: Client, db: AsyncSession, shop: Shop, settings: Any
) -> None:
    eggs = await db.get_one(Product, shop.eggs_id)
    await make_line(db, eggs, quantity=1, user_id=shop.user.id)  # the user's cart is in GBP
    _, euro_market = await make_shop(db, "ferme")
    cheese = await make_product(db, euro_market, price="7.00", currency="EUR", title="Comté")
    await add(client, cheese.id, 2)
    anonymous = await anonymous_id(db)
    calendar = await db.get_one(Calendar, shop.calendar_id)
    tasting = await make_entry(db, calendar, session_id=anonymous, currency="EUR")

    page = await sign_in_and_look(client, shop.user.email)

    assert "We kept Comté" in page and "your cart is in GBP" in page
    assert tasting.name in page.split("We kept", 1)[1]
    lines = await live_lines(db)
    assert (shop.user.id, None, shop.eggs_id, 1) in lines
    assert (None, anonymous, cheese.id, 2) in lines  # kept, not lost
    assert await entry_owners(db) == [(tasting.id, None, anonymous, "pending")]
    summary = await client.get(
        "/internal/cart/summary",
        headers={"Authorization": f"Bearer {settings.internal_api_token.reveal()}"},
    )
    body = await summary.get_json()
    assert summary.status_code == 200 and (body["count"], body["currency"]) == (1, "GBP")
