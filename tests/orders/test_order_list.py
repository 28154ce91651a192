"""`GET /orders/`: the shopper's own orders, newest first, in stable keyset pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from app import create_app
from models import User
from services.formatting import TimeFormatter
from tests.factories import make_calendar, make_entry, make_page, make_user
from tests.orders.factories import (
    latest_order,
    listed_ids,
    make_order,
    older_link,
    order_rows,
    place_order,
)
from tests.shopper import login, page_text


@pytest.fixture
async def small_pages(settings: Any) -> AsyncIterator[Client]:
    """A shopper of an app that lists three orders a page."""
    app = create_app(replace(settings, orders=replace(settings.orders, page_size=3)))
    async with app.test_app() as test_app:
        yield test_app.test_client()


async def _signed_in(client: Client, db: AsyncSession) -> User:
    user = await make_user(db)
    await login(client, user.email)
    return user


async def _orders_page(client: Client, path: str = "/orders/") -> str:
    response = await client.get(path)
    assert response.status_code == 200, path
    return await page_text(response)


async def test_each_row_shows_number_date_page_item_count_total_and_status(
    client: Client, db: AsyncSession
) -> None:
    user = await _signed_in(client, db)
    page = await make_page(db, "farm", title="Farm Shop")
    order = await make_order(db, user_id=user.id, status="paid", page=page, quantities=(2, 1))
    await make_entry(
        db, await make_calendar(db, page), user_id=user.id, state="provisional"
    )  # not this order's
    entry = await make_entry(db, await make_calendar(db, page), user_id=user.id)
    entry.state, entry.order_id = "provisional", order.id
    await db.commit()
    whole_cart = await make_order(db, user_id=user.id, unit_price="12.00")

    rows = order_rows(await _orders_page(client))

    placed = TimeFormatter(ZoneInfo("Europe/London")).datetime(order.created_at)
    assert placed.endswith(("GMT", "BST"))  # in the coop's zone, and saying so
    assert rows == [
        (
            whole_cart.id,
            ["RA-000002", rows[0][1][1], "Whole cart", "1", "£12.00", "Awaiting payment"],
        ),
        (order.id, ["RA-000001", placed, "Farm Shop", "4", "£7.50", "Paid"]),
    ]


async def test_orders_are_listed_newest_first(client: Client, db: AsyncSession) -> None:
    user = await _signed_in(client, db)
    ids = [(await make_order(db, user_id=user.id)).id for _ in range(4)]
    assert listed_ids(await _orders_page(client)) == ids[::-1]


async def test_pages_of_the_configured_size_follow_older_orders_links_to_the_oldest(
    small_pages: Client, db: AsyncSession
) -> None:
    user = await _signed_in(small_pages, db)
    ids = [(await make_order(db, user_id=user.id)).id for _ in range(7)]

    first = await _orders_page(small_pages)
    assert listed_ids(first) == ids[6:3:-1]
    assert older_link(first) == f"/orders/?before={ids[4]}"
    second = await _orders_page(small_pages, f"/orders/?before={ids[4]}")
    assert listed_ids(second) == ids[3:0:-1]
    assert "Newest orders" in second
    third = await _orders_page(small_pages, f"/orders/?before={ids[1]}")
    assert listed_ids(third) == [ids[0]]
    assert older_link(third) is None


async def test_default_page_size_is_twenty(client: Client, db: AsyncSession) -> None:
    user = await _signed_in(client, db)
    ids = [(await make_order(db, user_id=user.id)).id for _ in range(21)]
    first = await _orders_page(client)
    assert listed_ids(first) == ids[:0:-1]
    link = older_link(first)
    assert link is not None
    assert listed_ids(await _orders_page(client, link)) == [ids[0]]


async def test_orders_placed_between_pages_neither_shift_nor_repeat_the_next_page(
    small_pages: Client, db: AsyncSession
) -> None:
    user = await _signed_in(small_pages, db)
    ids = [(await make_order(db, user_id=user.id)).id for _ in range(6)]
    first = await _orders_page(small_pages)
    link = older_link(first)
    assert link is not None

    newer = [(await make_order(db, user_id=user.id)).id for _ in range(2)]

    second = await _orders_page(small_pages, link)
    assert listed_ids(second) == ids[2::-1]
    assert older_link(second) is None
    assert listed_ids(await _orders_page(small_pages)) == [*newer[::-1], ids[5]]


async def test_status_filter_lists_only_that_status_and_keeps_it_across_pages(
    small_pages: Client, db: AsyncSession
) -> None:
    user = await _signed_in(small_pages, db)
    paid = []
    for n in range(8):
        order = await make_order(db, user_id=user.id, status="paid" if n % 2 else "pending")
        if order.status == "paid":
            paid.append(order.id)

    first = await _orders_page(small_pages, "/orders/?status=paid")
    assert listed_ids(first) == paid[:0:-1]
    link = older_link(first)
    assert link is not None and "status=paid" in link
    assert listed_ids(await _orders_page(small_pages, link)) == [paid[0]]
    pending = await _orders_page(small_pages, "/orders/?status=cancelled")
    assert listed_ids(pending) == [] and "No orders match." in pending


@pytest.mark.parametrize("query", ["RA-000012", "12", "ra-12", " 000012 "])
async def test_search_by_order_number_finds_that_order(
    client: Client, db: AsyncSession, query: str
) -> None:
    user = await _signed_in(client, db)
    for _ in range(13):
        await make_order(db, user_id=user.id)
    html = await _orders_page(client, f"/orders/?q={query}")
    assert listed_ids(html) == [12]


async def test_search_for_another_shoppers_order_number_finds_nothing(
    client: Client, db: AsyncSession
) -> None:
    someone = await make_user(db)
    theirs = await make_order(db, user_id=someone.id)
    user = await _signed_in(client, db)
    await make_order(db, user_id=user.id)
    for query in (theirs.number, "not-a-number"):
        html = await _orders_page(client, f"/orders/?q={query}")
        assert listed_ids(html) == [] and "No orders match." in html


async def test_unknown_status_is_a_422_page(client: Client, db: AsyncSession) -> None:
    await _signed_in(client, db)
    response = await client.get("/orders/?status=lost")
    assert response.status_code == 422
    assert "no order status called" in await page_text(response)


@pytest.mark.parametrize(
    "before",
    [
        "abc",
        "-1",
        "1.5",
        "²",
        "٣",
        "9223372036854775808",  # one past bigint
        pytest.param("9" * 5000, id="5000-digits"),  # past Python's int() digit limit
    ],
)
async def test_malformed_or_impossible_before_is_a_422_page_never_a_500(
    client: Client, db: AsyncSession, before: str
) -> None:
    user = await _signed_in(client, db)
    await make_order(db, user_id=user.id)
    response = await client.get("/orders/", query_string={"before": before})
    assert response.status_code == 422, before
    assert "That page of orders does not exist." in await page_text(response)


async def test_only_the_shoppers_own_orders_are_listed(client: Client, db: AsyncSession) -> None:
    someone = await make_user(db)
    await make_order(db, user_id=someone.id)
    await make_order(db, session_id="another-anonymous-session")
    user = await _signed_in(client, db)
    mine = await make_order(db, user_id=user.id)
    assert listed_ids(await _orders_page(client)) == [mine.id]


async def test_shopper_without_a_cart_sees_that_there_are_no_orders(
    client: Client, db: AsyncSession
) -> None:
    await make_order(db, session_id="another-anonymous-session")
    html = await _orders_page(client)
    assert listed_ids(html) == [] and "You have no orders yet." in html


async def test_orders_placed_anonymously_are_listed_after_signing_in_that_session(
    client: Client, db: AsyncSession
) -> None:
    await place_order(client, db)
    order = await latest_order(db)
    assert listed_ids(await _orders_page(client)) == [order.id]
    someone = await make_user(db)
    their_own = await make_order(db, user_id=someone.id)

    await login(client, someone.email)

    assert listed_ids(await _orders_page(client)) == [their_own.id, order.id]
    detail = await client.get(f"/orders/{order.id}/")
    assert detail.status_code == 200
