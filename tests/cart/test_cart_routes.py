"""Adding, updating and removing lines; the overview and the page cart."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import CartItem
from tests.factories import (
    make_calendar,
    make_entry,
    make_page_config,
    make_product,
    make_shop,
)
from tests.shopper import add, page_text, post_form


async def _live_lines(db: AsyncSession) -> list[CartItem]:
    query = select(CartItem).where(CartItem.deleted_at.is_(None)).order_by(CartItem.id)
    return list(await db.scalars(query.execution_options(populate_existing=True)))


async def test_add_defaults_to_one_and_redirects_to_the_line_in_the_cart(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market, price="4.50")
    response = await add(client, product.id, quantity="")
    assert response.status_code == 303
    assert response.headers["Location"] == f"/cart/#line-{product.id}"
    [line] = await _live_lines(db)
    assert (line.product_id, line.quantity, line.market_place_id) == (product.id, 1, market.id)
    assert line.session_id and line.user_id is None


async def test_adding_twice_adds_to_the_same_line(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await add(client, product.id, 2)
    await add(client, product.id, 3)
    [line] = await _live_lines(db)
    assert line.quantity == 5


async def test_add_answers_json_with_the_new_summary(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market, price="4.50", special="4.00")
    response = await post_form(client, f"/cart/add/{product.id}/", {"quantity": 3}, json=True)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["summary"] == {
        "count": 3,
        "total": "12.00",
        "currency": "GBP",
        "product_count": 3,
        "entry_count": 0,
    }


async def test_next_on_this_site_is_followed_to_the_line(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    response = await add(client, product.id, next="/dev/shop")
    assert response.headers["Location"] == f"/dev/shop#line-{product.id}"


async def test_next_to_a_sibling_app_is_followed(
    client: Client, db: AsyncSession, settings: object
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    market_url = settings.app_urls["market"] + "/hill-farm/"  # type: ignore[attr-defined]
    response = await add(client, product.id, next=market_url)
    assert response.headers["Location"] == market_url


async def test_update_sets_quantity_and_zero_removes(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await add(client, product.id, 2)
    response = await post_form(client, f"/cart/update/{product.id}/", {"quantity": 7})
    assert response.status_code == 303
    [line] = await _live_lines(db)
    assert line.quantity == 7
    await post_form(client, f"/cart/update/{product.id}/", {"quantity": 0})
    assert await _live_lines(db) == []


async def test_remove_takes_the_line_out(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await add(client, product.id, 2)
    response = await post_form(client, f"/cart/remove/{product.id}/", json=True)
    assert response.status_code == 200
    assert (await response.get_json())["summary"]["count"] == 0
    assert await _live_lines(db) == []


async def test_overview_groups_lines_and_entries_by_page(client: Client, db: AsyncSession) -> None:
    farm, farm_market = await make_shop(db, "farm")
    cafe, cafe_market = await make_shop(db, "cafe")
    eggs = await make_product(db, farm_market, price="3.20", title="Eggs")
    honey = await make_product(db, farm_market, price="7.50", special="6.00", title="Honey")
    coffee = await make_product(db, cafe_market, price="9.00", title="Coffee")
    await add(client, eggs.id, 2)
    await add(client, honey.id, 1)
    await add(client, coffee.id, 1)
    line = (await _live_lines(db))[0]
    calendar = await make_calendar(db, cafe)
    await make_entry(db, calendar, session_id=line.session_id, cost="35.00")
    page = await page_text(await client.get("/cart/"))
    assert page.count('data-testid="page-group"') == 2
    assert "Eggs" in page and "Honey" in page and "Coffee" in page and "Workshop" in page
    assert "£12.40" in page  # farm: 2 × 3.20 + 6.00 (special price)
    assert "£44.00" in page  # cafe: 9.00 + 35.00
    assert "£56.40" in page  # grand total
    assert f'href="/cart/{farm.slug}/"' in page


async def test_page_cart_shows_only_that_page(client: Client, db: AsyncSession) -> None:
    farm, farm_market = await make_shop(db, "farm")
    _, cafe_market = await make_shop(db, "cafe")
    await add(client, (await make_product(db, farm_market, title="Eggs")).id)
    await add(client, (await make_product(db, cafe_market, title="Coffee")).id)
    await client.get("/cart/")  # shows (and so clears) the flash messages
    page = await page_text(await client.get(f"/cart/{farm.slug}/"))
    assert "Eggs" in page and "Coffee" not in page


async def test_empty_cart_says_so(client: Client) -> None:
    response = await client.get("/cart/")
    assert response.status_code == 200
    assert "Your cart is empty." in await page_text(response)


async def test_remove_pending_entry(client: Client, db: AsyncSession) -> None:
    page, market = await make_shop(db)
    await add(client, (await make_product(db, market)).id)
    [line] = await _live_lines(db)
    entry = await make_entry(db, await make_calendar(db, page), session_id=line.session_id)
    response = await post_form(client, f"/cart/entries/{entry.id}/remove/")
    assert response.status_code == 303
    await db.refresh(entry)
    assert entry.state == "cancelled"


async def test_badge_counts_lines_and_entries(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    await add(client, (await make_product(db, market)).id, 4)
    page = await page_text(await client.get("/dev/shop"))
    assert 'data-testid="cart-badge">4<' in page


async def test_the_overview_badge_counts_what_can_be_bought_and_the_bookings(
    client: Client, db: AsyncSession
) -> None:
    page, market = await make_shop(db)
    gone = await make_product(db, market)
    await add(client, (await make_product(db, market)).id, 3)
    await add(client, gone.id, 2)
    gone.deleted_at = datetime.now(UTC)
    await db.commit()
    [line, _] = await _live_lines(db)
    await make_entry(db, await make_calendar(db, page), session_id=line.session_id)
    overview = await page_text(await client.get("/cart/"))
    assert 'data-testid="cart-badge">4<' in overview  # as every other page counts them
    assert 'data-testid="cart-badge">4<' in await page_text(await client.get("/dev/shop"))


async def test_live_price_follows_the_product(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market, price="5.00")
    await add(client, product.id, 2)
    product.special_price = Decimal("4.00")
    await db.commit()
    assert "£8.00" in await page_text(await client.get("/cart/"))


async def test_entries_of_someone_else_cannot_be_removed(client: Client, db: AsyncSession) -> None:
    page, _ = await make_shop(db)
    entry = await make_entry(db, await make_calendar(db, page), session_id="someone-else")
    response = await post_form(client, f"/cart/entries/{entry.id}/remove/", json=True)
    assert response.status_code == 404
    await db.refresh(entry)
    assert entry.state == "pending"


async def test_a_product_held_from_two_markets_is_updated_per_market(
    client: Client, db: AsyncSession
) -> None:
    _, farm = await make_shop(db, "farm")
    _, cafe = await make_shop(db, "cafe")
    honey = await make_product(db, farm, title="Honey")
    honey.market_place_id = None  # sold wherever a market chooses to sell it
    await db.commit()
    await add(client, honey.id, 2, market_place=farm.id)
    await add(client, honey.id, 3, market_place=cafe.id)

    refused = await post_form(client, f"/cart/update/{honey.id}/", {"quantity": 5}, json=True)
    assert refused.status_code == 422
    assert "several markets; choose one" in (await refused.get_json())["message"]
    assert [line.quantity for line in await _live_lines(db)] == [2, 3]

    path = f"/cart/update/{honey.id}/"
    response = await post_form(client, path, {"quantity": 5, "market_place": cafe.id}, json=True)
    assert response.status_code == 200
    assert (await response.get_json())["summary"]["product_count"] == 7
    assert [line.quantity for line in await _live_lines(db)] == [2, 5]

    path = f"/cart/remove/{honey.id}/"
    await post_form(client, path, {"market_place": farm.id}, json=True)
    assert [(line.market_place_id, line.quantity) for line in await _live_lines(db)] == [
        (cafe.id, 5)
    ]


async def test_a_page_cart_says_whether_the_page_or_the_coop_is_paid(
    client: Client, db: AsyncSession
) -> None:
    farm, farm_market = await make_shop(db)
    await make_page_config(db, farm)
    cafe, cafe_market = await make_shop(db)
    await make_page_config(db, cafe, merchant="", key="")  # no account of its own: the coop
    for market in (farm_market, cafe_market):
        await add(client, (await make_product(db, market)).id)
    farm_page = await page_text(await client.get(f"/cart/{farm.slug}/"))
    cafe_page = await page_text(await client.get(f"/cart/{cafe.slug}/"))
    assert f"You pay {farm.title} directly" in farm_page
    assert "You pay the Rose Ash cooperative" in cafe_page
    assert "directly" not in cafe_page
    overview = await page_text(await client.get("/cart/"))
    assert f"Paid to {farm.title} directly, with its own SumUp account." in overview
    assert overview.count("Paid to the Rose Ash cooperative through SumUp.") == 1
