"""Demo data: three pages (one with its own SumUp merchant), products, calendars, a user."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Calendar, MarketPlace, PageConfig, Post, Product, User
from sandbox.demo_data import load_demo_data


async def test_demo_data_is_idempotent(db: AsyncSession) -> None:
    first = await load_demo_data(db)
    await db.commit()
    second = await load_demo_data(db)
    await db.commit()
    assert first["posts"] == 4
    assert second == {}
    pages = await db.scalar(select(func.count()).select_from(Post).where(Post.is_page))
    assert pages == 3
    assert await db.scalar(select(func.count()).select_from(MarketPlace)) == 3
    assert await db.scalar(select(func.count()).select_from(Calendar)) == 2
    assert await db.scalar(select(func.count()).select_from(User)) == 1
    specials = await db.scalar(
        select(func.count()).select_from(Product).where(Product.special_price.is_not(None))
    )
    assert specials and specials >= 1
    config = await db.scalar(select(PageConfig))
    assert config is not None and config.sumup_merchant_code == "MFARM0001"
