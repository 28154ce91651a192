"""Orders placed before signing in: the login merge hands them to the user, and paying
one takes out of the cart exactly what it bought, never the user's own lines.

Everything goes through the app's routes and the SumUp sandbox: an anonymous shopper
checks out, pays (or leaves the hosted page open), signs in, and pays afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.clear_cart_for_order import clear_cart_for_order
from bp.cart.services.order_queries import CLAIMED_LABEL, load_order
from models import Calendar, Order, Product, User
from tests.factories import make_calendar, make_entry, make_line, make_product, make_shop, make_user
from tests.orders.factories import checkout_id
from tests.shopper import add, login, page_text, post_form


@dataclass
class Shop:
    user: User
    eggs: Product
    honey: Product
    calendar: Calendar


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


@pytest.fixture
async def shop(db: AsyncSession) -> Shop:
    page, market = await make_shop(db, "farm")
    eggs = await make_product(db, market, price="3.00", title="Eggs")
    honey = await make_product(db, market, price="6.00", title="Honey")
    calendar = await make_calendar(db, page)
    return Shop(await make_user(db, "ada@example.coop"), eggs, honey, calendar)


async def live_lines(db: AsyncSession) -> list[tuple[Any, ...]]:
    rows = await db.execute(
        text(
            "SELECT user_id, session_id IS NOT NULL, product_id, quantity FROM cart_items "
            "WHERE deleted_at IS NULL ORDER BY user_id NULLS LAST, product_id"
        )
    )
    return [tuple(row) for row in rows]


async def anonymous_id(db: AsyncSession) -> str:
    value = await db.scalar(
        text("SELECT session_id FROM cart_items WHERE session_id IS NOT NULL LIMIT 1")
    )
    assert value
    return str(value)


async def checkout(client: Client, db: AsyncSession) -> Order:
    """Check the whole cart out (the shopper is sent to SumUp's page); the new order."""
    response = await post_form(client, "/cart/checkout/")
    assert response.status_code == 303, await response.get_data(as_text=True)
    order = await db.scalar(
        select(Order).order_by(Order.id.desc()).execution_options(populate_existing=True)
    )
    assert order is not None
    return order


async def pay(db: AsyncSession, sandbox_control: Any, order: Order) -> Order:
    """Pay on SumUp's page (the sandbox then calls the webhook); the order afterwards."""
    await sandbox_control.pay(await checkout_id(db, order))
    paid = await db.scalar(
        select(Order).where(Order.id == order.id).execution_options(populate_existing=True)
    )
    assert paid is not None and paid.status == "paid", paid and paid.status
    return paid


async def sign_in(client: Client, email: str) -> None:
    """Sign in and load the next page (the first request after sign-in merges)."""
    await login(client, email)
    assert (await client.get("/cart/")).status_code == 200


# --- paid before signing in -----------------------------------------------------------


async def test_an_order_paid_before_signing_in_takes_nothing_from_the_users_cart(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    await make_line(db, shop.eggs, quantity=6, user_id=shop.user.id)
    await add(client, shop.eggs.id, 1)
    order = await checkout(client, db)
    await pay(db, sandbox_control, order)
    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 6)]

    await sign_in(client, shop.user.email)

    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 6)]
    owner = await db.scalar(text("SELECT user_id FROM orders WHERE id = :id"), {"id": order.id})
    assert owner == shop.user.id


async def test_a_booking_paid_before_signing_in_stays_paid_and_the_users_own_stays_pending(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    own = await make_entry(db, shop.calendar, user_id=shop.user.id)
    await add(client, shop.eggs.id, 1)
    booked = await make_entry(db, shop.calendar, session_id=await anonymous_id(db))
    order = await checkout(client, db)
    await pay(db, sandbox_control, order)

    await sign_in(client, shop.user.email)

    rows = await db.execute(
        text("SELECT id, user_id, state, order_id FROM calendar_entries ORDER BY id")
    )
    assert [tuple(row) for row in rows] == [
        (own.id, shop.user.id, "pending", None),
        (booked.id, shop.user.id, "provisional", order.id),
    ]


# --- claimed unpaid, paid after signing in --------------------------------------------


async def test_an_order_claimed_unpaid_then_paid_takes_out_what_it_brought_to_the_merge(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    await make_line(db, shop.eggs, quantity=3, user_id=shop.user.id)
    await add(client, shop.eggs.id, 2)
    order = await checkout(client, db)  # the hosted page is left open
    await sign_in(client, shop.user.email)
    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 5)]

    await pay(db, sandbox_control, order)  # paid from the old tab

    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 3)]


async def test_a_line_raised_after_checkout_keeps_the_rise_when_the_claimed_order_is_paid(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    await make_line(db, shop.eggs, quantity=3, user_id=shop.user.id)
    await add(client, shop.eggs.id, 2)
    order = await checkout(client, db)
    await add(client, shop.eggs.id, 1)  # 3 in the anonymous cart, 2 of them ordered
    await sign_in(client, shop.user.email)
    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 6)]

    await pay(db, sandbox_control, order)

    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 4)]


async def test_a_claimed_order_whose_line_was_removed_leaves_the_users_own_line_alone(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    await make_line(db, shop.eggs, quantity=3, user_id=shop.user.id)
    await add(client, shop.eggs.id, 2)
    await add(client, shop.honey.id, 1)
    order = await checkout(client, db)
    await post_form(client, f"/cart/remove/{shop.eggs.id}/")  # the order still holds 2
    await sign_in(client, shop.user.email)
    assert await live_lines(db) == [
        (shop.user.id, False, shop.eggs.id, 3),
        (shop.user.id, False, shop.honey.id, 1),
    ]

    await pay(db, sandbox_control, order)

    # The user's 3 eggs were never part of the order: they stay; the honey it bought goes.
    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 3)]


async def test_a_claimed_order_whose_line_was_lowered_takes_out_only_what_was_merged(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    await make_line(db, shop.eggs, quantity=3, user_id=shop.user.id)
    await add(client, shop.eggs.id, 2)
    order = await checkout(client, db)
    await post_form(client, f"/cart/update/{shop.eggs.id}/", {"quantity": 1})
    await sign_in(client, shop.user.email)
    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 4)]

    await pay(db, sandbox_control, order)

    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 3)]


async def test_a_claimed_order_merged_at_the_cap_takes_out_only_what_the_cap_let_in(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    await make_line(db, shop.eggs, quantity=97, user_id=shop.user.id)
    await add(client, shop.eggs.id, 5)
    order = await checkout(client, db)
    await sign_in(client, shop.user.email)
    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 99)]  # capped

    await pay(db, sandbox_control, order)

    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 97)]


async def test_a_booking_claimed_unpaid_is_paid_for_the_user_and_the_users_own_stays_pending(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    own = await make_entry(db, shop.calendar, user_id=shop.user.id)
    await add(client, shop.eggs.id, 1)
    booked = await make_entry(db, shop.calendar, session_id=await anonymous_id(db))
    order = await checkout(client, db)
    await sign_in(client, shop.user.email)

    await pay(db, sandbox_control, order)

    rows = await db.execute(
        text("SELECT id, user_id, state, order_id FROM calendar_entries ORDER BY id")
    )
    assert [tuple(row) for row in rows] == [
        (own.id, shop.user.id, "pending", None),
        (booked.id, shop.user.id, "provisional", order.id),
    ]
    assert await live_lines(db) == []


async def test_a_claimed_order_of_a_line_kept_apart_takes_it_from_the_anonymous_cart(
    client: Client, db: AsyncSession, shop: Shop
) -> None:
    await make_line(db, shop.eggs, quantity=1, user_id=shop.user.id)  # the user's cart: GBP
    _, euro_market = await make_shop(db, "ferme")
    cheese = await make_product(db, euro_market, price="7.00", currency="EUR", title="Comté")
    await add(client, cheese.id, 2)
    # The sandbox's merchants are British and refuse EUR (502): the order stays unpaid.
    assert (await post_form(client, "/cart/checkout/")).status_code == 502
    order_id = await db.scalar(select(Order.id))
    assert order_id is not None
    await sign_in(client, shop.user.email)
    assert await live_lines(db) == [
        (shop.user.id, False, shop.eggs.id, 1),
        (None, True, cheese.id, 2),  # kept apart: one cart, one currency
    ]

    # What a verified payment does to the cart (a sandbox checkout cannot be in EUR).
    await clear_cart_for_order(db, await load_order(db, order_id))
    await db.commit()

    assert await live_lines(db) == [(shop.user.id, False, shop.eggs.id, 1)]


# --- the order's history --------------------------------------------------------------


def history(html: str) -> list[str]:
    match = re.search(r'<ul data-testid="order-history">(.*?)</ul>', html, re.S)
    assert match, "no history on the page"
    return [item.split(": ", 1)[1] for item in re.findall(r"<li>(.*?)</li>", match.group(1))]


async def test_the_order_page_says_when_a_sign_in_moved_a_paid_order_to_the_account(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    await add(client, shop.eggs.id, 1)
    order = await pay(db, sandbox_control, await checkout(client, db))
    await sign_in(client, shop.user.email)

    page = await page_text(await client.get(f"/orders/{order.id}/"))

    assert history(page) == ["Order placed", "Paid", CLAIMED_LABEL]
    claimed = await db.scalar(
        select(Order.claimed_by_user_at)
        .where(Order.id == order.id)
        .execution_options(populate_existing=True)
    )
    assert claimed is not None and order.paid_at is not None and claimed > order.paid_at


async def test_the_order_page_of_an_order_claimed_unpaid_shows_the_move_before_the_payment(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    await add(client, shop.eggs.id, 1)
    order = await checkout(client, db)
    await sign_in(client, shop.user.email)
    await pay(db, sandbox_control, order)

    page = await page_text(await client.get(f"/orders/{order.id}/"))

    assert history(page) == ["Order placed", CLAIMED_LABEL, "Paid"]


async def test_an_order_placed_signed_in_has_no_move_in_its_history(
    client: Client, db: AsyncSession, shop: Shop, sandbox_control: Any
) -> None:
    await login(client, shop.user.email)
    await add(client, shop.eggs.id, 1)
    order = await pay(db, sandbox_control, await checkout(client, db))

    page = await page_text(await client.get(f"/orders/{order.id}/"))

    assert history(page) == ["Order placed", "Paid"]
