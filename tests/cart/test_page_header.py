"""Every page's header: the cart badge's numbers and the site's menu, read in one query."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bp.cart.services.identity import Identity
from bp.cart.services.summary import get_cart_summary, get_page_header
from services.errors import CartError
from services.navigation import NavItem, get_navigation_tree
from tests.factories import (
    make_calendar,
    make_entry,
    make_line,
    make_market,
    make_page,
    make_product,
)

BLOG = "https://blog.example.coop"


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    raw = await engine.raw_connection()
    try:
        yield raw.driver_connection
    finally:
        raw.close()


async def test_the_header_counts_as_the_summary_and_lists_the_menu(
    db: AsyncSession, connection: asyncpg.Connection
) -> None:
    cafe = await make_page(db, "cafe", title="Café", nav_order=2)
    farm = await make_page(db, "farm", title="Farm", nav_order=1)
    draft = await make_page(db, "draft", nav_order=0)
    draft.status = "draft"
    await db.commit()
    market = await make_market(db, farm)
    await make_line(db, await make_product(db, market, price="2.50"), quantity=3, user_id=7)
    await make_line(db, await make_product(db, market, price=None), quantity=5, user_id=7)
    await make_entry(db, await make_calendar(db, cafe), user_id=7, cost="10.00")
    identity = Identity(user_id=7)

    badge, navigation = await get_page_header(
        connection, identity, default_currency="GBP", blog_url=BLOG
    )

    assert badge == await get_cart_summary(connection, identity, default_currency="GBP")
    assert (badge.product_count, badge.entry_count, badge.total) == (3, 1, Decimal("17.50"))
    assert navigation == await get_navigation_tree(connection, blog_url=BLOG)
    assert navigation == [
        NavItem("farm", "Farm", f"{BLOG}/farm/"),
        NavItem("cafe", "Café", f"{BLOG}/cafe/"),
    ]


async def test_a_header_with_no_pages_and_no_cart(connection: asyncpg.Connection) -> None:
    badge, navigation = await get_page_header(
        connection, Identity(session_id="nobody"), default_currency="EUR", blog_url=BLOG
    )
    assert (badge.count, badge.currency, navigation) == (0, "EUR", [])
    badge, navigation = await get_page_header(
        connection, None, default_currency="EUR", blog_url=BLOG
    )
    assert (badge.count, badge.currency, navigation) == (0, "EUR", [])


async def test_a_header_refuses_a_cart_of_mixed_currencies(
    db: AsyncSession, connection: asyncpg.Connection
) -> None:
    market = await make_market(db, await make_page(db, "farm"))
    await make_line(db, await make_product(db, market), session_id="s1")
    await make_line(db, await make_product(db, market, currency="EUR"), session_id="s1")
    with pytest.raises(CartError):
        await get_page_header(
            connection, Identity(session_id="s1"), default_currency="GBP", blog_url=BLOG
        )
