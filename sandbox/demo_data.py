"""Demo data for the embedded default and development: pages, products, calendars.

Idempotent: rows are found by their natural key (slug, email, post) and only the
missing ones are inserted, so running it twice changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Calendar, MarketPlace, PageConfig, Post, Product, User
from models.base import Base

DEMO_USER_EMAIL = "demo@rose-ash.coop"

# (slug, title, nav_order)
PAGES = [
    ("hill-farm", "Hill Farm Shop", 1),
    ("riverside-cafe", "Riverside Café", 2),
    ("old-barn", "The Old Barn", 3),
]

# Hill Farm takes payments with its own SumUp account; the others use the coop's.
PAGE_SUMUP = {
    "hill-farm": {
        "sumup_merchant_code": "MFARM0001",
        "sumup_api_key": "sup_sk_sandbox_farm",
        "sumup_checkout_prefix": "HF",
    }
}

# market place slug → (page slug, name, products: (slug, title, regular, special))
MARKETS: dict[str, tuple[str, str, list[tuple[str, str, str, str | None]]]] = {
    "hill-farm-market": (
        "hill-farm",
        "Hill Farm produce",
        [
            ("free-range-eggs", "Free-range eggs (6)", "3.20", None),
            ("raw-honey", "Raw wildflower honey 340g", "7.50", "6.00"),
            ("veg-box", "Seasonal veg box", "18.00", None),
            ("sourdough", "Sourdough loaf", "4.25", None),
        ],
    ),
    "riverside-cafe-market": (
        "riverside-cafe",
        "Café larder",
        [
            ("house-coffee", "House coffee beans 250g", "9.00", "7.95"),
            ("jam-jar", "Damson jam", "4.50", None),
            ("tea-towel", "Riverside tea towel", "11.00", None),
        ],
    ),
    "old-barn-market": (
        "old-barn",
        "Barn shop",
        [
            ("barn-tote", "Old Barn tote bag", "12.00", None),
            ("candle", "Beeswax candle", "8.40", "7.00"),
        ],
    ),
}

# calendar slug → (page slug, name)
CALENDARS = {
    "cafe-workshops": ("riverside-cafe", "Café workshops"),
    "barn-events": ("old-barn", "Barn events"),
}


@dataclass(frozen=True)
class DemoSlot:
    """A bookable slot the development shop offers (the events app's job in production)."""

    key: str
    calendar_slug: str
    name: str
    days_ahead: int
    hours: int
    cost: Decimal


DEMO_SLOTS = [
    DemoSlot("bread-class", "cafe-workshops", "Bread-making workshop", 7, 3, Decimal("35.00")),
    DemoSlot("latte-art", "cafe-workshops", "Latte art taster", 9, 1, Decimal("15.00")),
    DemoSlot("barn-dance", "barn-events", "Barn dance ticket", 12, 4, Decimal("12.50")),
    DemoSlot("folk-night", "barn-events", "Folk night ticket", 20, 3, Decimal("9.00")),
]
SLOT_DURATION_UNIT = timedelta(hours=1)


async def _ensure(
    session: AsyncSession, model: type[Base], created: dict[str, int], *, key: str, **values: Any
) -> Any:
    existing = await session.scalar(select(model).filter_by(**{key: values[key]}))
    if existing is not None:
        return existing
    row = model(**values)
    session.add(row)
    await session.flush()
    created[model.__tablename__] = created.get(model.__tablename__, 0) + 1
    return row


async def load_demo_data(session: AsyncSession) -> dict[str, int]:
    """Insert whatever demo rows are missing; returns how many of each were created."""
    created: dict[str, int] = {}
    await _ensure(session, User, created, key="email", email=DEMO_USER_EMAIL)
    await _ensure(
        session,
        Post,
        created,
        key="slug",
        slug="welcome",
        title="Welcome to Rose Ash",
        is_page=False,
        status="published",
        nav_order=0,
    )
    posts: dict[str, Post] = {}
    for slug, title, nav_order in PAGES:
        posts[slug] = await _ensure(
            session,
            Post,
            created,
            key="slug",
            slug=slug,
            title=title,
            is_page=True,
            status="published",
            nav_order=nav_order,
        )
    for page_slug, sumup in PAGE_SUMUP.items():
        await _ensure(
            session, PageConfig, created, key="post_id", post_id=posts[page_slug].id, **sumup
        )
    for market_slug, (page_slug, name, products) in MARKETS.items():
        market = await _ensure(
            session,
            MarketPlace,
            created,
            key="slug",
            slug=market_slug,
            post_id=posts[page_slug].id,
            name=name,
        )
        for slug, title, regular, special in products:
            await _ensure(
                session,
                Product,
                created,
                key="slug",
                slug=slug,
                title=title,
                market_place_id=market.id,
                regular_price=Decimal(regular),
                special_price=Decimal(special) if special else None,
                currency="GBP",
            )
    for calendar_slug, (page_slug, name) in CALENDARS.items():
        await _ensure(
            session,
            Calendar,
            created,
            key="slug",
            slug=calendar_slug,
            post_id=posts[page_slug].id,
            name=name,
        )
    return created
