"""Small factories that build the rows a test needs, committed so the app sees them."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    Calendar,
    CalendarEntry,
    CartItem,
    MarketPlace,
    PageConfig,
    Post,
    Product,
    User,
)

_counter = itertools.count(1)


def _n() -> int:
    return next(_counter)


async def make_user(db: AsyncSession, email: str | None = None) -> User:
    user = User(email=email or f"shopper{_n()}@example.coop")
    db.add(user)
    await db.commit()
    return user


async def make_page(
    db: AsyncSession, slug: str | None = None, *, title: str | None = None, nav_order: int = 0
) -> Post:
    slug = slug or f"page-{_n()}"
    page = Post(slug=slug, title=title or slug.title(), is_page=True, nav_order=nav_order)
    db.add(page)
    await db.commit()
    return page


async def make_market(db: AsyncSession, page: Post) -> MarketPlace:
    market = MarketPlace(post_id=page.id, slug=f"{page.slug}-market-{_n()}", name="Market")
    db.add(market)
    await db.commit()
    return market


async def make_product(
    db: AsyncSession,
    market: MarketPlace,
    *,
    price: str | None = "5.00",
    special: str | None = None,
    currency: str = "GBP",
    title: str | None = None,
) -> Product:
    n = _n()
    product = Product(
        market_place_id=market.id,
        slug=f"product-{n}",
        title=title or f"Product {n}",
        regular_price=Decimal(price) if price is not None else None,
        special_price=Decimal(special) if special is not None else None,
        currency=currency,
    )
    db.add(product)
    await db.commit()
    return product


async def make_calendar(db: AsyncSession, page: Post) -> Calendar:
    calendar = Calendar(post_id=page.id, slug=f"{page.slug}-cal-{_n()}", name="Events")
    db.add(calendar)
    await db.commit()
    return calendar


async def make_entry(
    db: AsyncSession,
    calendar: Calendar,
    *,
    user_id: int | None = None,
    session_id: str | None = None,
    cost: str = "10.00",
    state: str = "pending",
    currency: str = "GBP",
) -> CalendarEntry:
    start = datetime.now(UTC) + timedelta(days=7)
    entry = CalendarEntry(
        calendar_id=calendar.id,
        name=f"Workshop {_n()}",
        start_at=start,
        end_at=start + timedelta(hours=2),
        cost=Decimal(cost),
        currency=currency,
        state=state,
        user_id=user_id,
        session_id=session_id,
    )
    db.add(entry)
    await db.commit()
    return entry


async def make_line(
    db: AsyncSession,
    product: Product,
    *,
    quantity: int = 1,
    user_id: int | None = None,
    session_id: str | None = None,
) -> CartItem:
    assert product.market_place_id is not None
    line = CartItem(
        product_id=product.id,
        market_place_id=product.market_place_id,
        quantity=quantity,
        user_id=user_id,
        session_id=session_id,
    )
    db.add(line)
    await db.commit()
    return line


async def make_page_config(
    db: AsyncSession, page: Post, *, merchant: str = "MFARM0001", key: str = "sup_sk_sandbox_farm"
) -> PageConfig:
    config = PageConfig(
        post_id=page.id,
        sumup_merchant_code=merchant,
        sumup_api_key=key,
        sumup_checkout_prefix="PG",
    )
    db.add(config)
    await db.commit()
    return config


async def make_shop(db: AsyncSession, slug: str | None = None) -> tuple[Post, MarketPlace]:
    """A page with a market place, the usual start of a cart test."""
    page = await make_page(db, slug)
    return page, await make_market(db, page)
