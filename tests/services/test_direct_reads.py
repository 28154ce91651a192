"""Direct reads: a Core statement compiled once for asyncpg, run on the pool's connections."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from models import Product
from services.direct_reads import DirectQuery, fetch_row
from tests.factories import make_market, make_page, make_product

PRICES = (
    select(func.count(Product.id).label("count"), func.sum(Product.regular_price).label("sum"))
    .where(Product.title.in_(["Eggs", "Milk"]), Product.market_place_id == bindparam("market"))
    .limit(1)
)


def test_a_direct_query_fixes_its_constants_and_expands_in_once() -> None:
    query = DirectQuery(PRICES, parameters=("market",))

    assert "IN ($" in query.sql and "POSTCOMPILE" not in query.sql
    arguments = query.arguments({"market": 7})
    assert sorted(map(str, arguments)) == ["1", "7", "Eggs", "Milk"]


def test_a_direct_query_refuses_to_run_without_its_parameters() -> None:
    query = DirectQuery(PRICES, parameters=("market",))

    with pytest.raises(KeyError, match="market"):
        query.arguments({})


async def test_a_direct_query_reads_what_the_orm_wrote(
    db: AsyncSession, engine: AsyncEngine
) -> None:
    market = await make_market(db, await make_page(db, "farm"))
    for title, price in (("Eggs", "2.50"), ("Milk", "1.25"), ("Jam", "4.00")):
        await make_product(db, market, title=title, price=price)
    query = DirectQuery(PRICES, parameters=("market",))

    raw = await engine.raw_connection()
    try:
        row = await fetch_row(raw.driver_connection, query, {"market": market.id})
    finally:
        raw.close()

    assert row is not None
    assert (row["count"], row["sum"]) == (2, Decimal("3.75"))
