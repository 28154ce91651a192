"""The outbox: events are written with the change, and only valid ones."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import selectinload

from models import DomainEvent, Order, OrderItem
from services.db import create_sessionmaker
from services.events import emit_event, order_event_payload


async def make_order(session: AsyncSession, **fields: Any) -> Order:
    """A flushed order with two lines, its items loaded."""
    values: dict[str, Any] = {
        "user_id": 7,
        "page_post_id": 3,
        "currency": "GBP",
        "total_amount": Decimal("12.50"),
        "description": "Rose Ash order",
        "cart_fingerprint": "f" * 64,
    }
    values.update(fields)
    order = Order(**values)
    session.add(order)
    await session.flush()
    session.add_all(
        [
            OrderItem(
                order_id=order.id,
                product_id=11,
                product_title="Sourdough",
                product_slug="sourdough",
                market_place_id=1,
                quantity=2,
                unit_price=Decimal("4.25"),
                currency="GBP",
                line_total=Decimal("8.50"),
            ),
            OrderItem(
                order_id=order.id,
                product_id=12,
                product_title="Eggs",
                product_slug="eggs",
                market_place_id=1,
                quantity=1,
                unit_price=Decimal("4.00"),
                currency="GBP",
                line_total=Decimal("4.00"),
            ),
        ]
    )
    await session.flush()
    loaded = await session.scalar(
        select(Order)
        .where(Order.id == order.id)
        .options(selectinload(Order.items))
        .execution_options(populate_existing=True)
    )
    assert loaded is not None
    return loaded


async def count_events(engine: AsyncEngine) -> int:
    async with create_sessionmaker(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(DomainEvent)) or 0)


async def test_rolled_back_transaction_leaves_no_event(engine: AsyncEngine) -> None:
    async with create_sessionmaker(engine)() as session, session.begin():
        order = await make_order(session)
        await emit_event(
            session,
            "order.created",
            order_event_payload(order, entry_ids=[]),
            aggregate=("order", order.id),
        )
        await session.rollback()
    assert await count_events(engine) == 0


async def test_committed_transaction_leaves_exactly_one_event(engine: AsyncEngine) -> None:
    async with create_sessionmaker(engine)() as session, session.begin():
        order = await make_order(session)
        await emit_event(
            session,
            "order.created",
            order_event_payload(order, entry_ids=[4, 5]),
            aggregate=("order", order.id),
        )
    async with create_sessionmaker(engine)() as session:
        events = (await session.scalars(select(DomainEvent))).all()
    assert len(events) == 1
    assert events[0].payload["total"] == "12.50"
    assert events[0].payload["entry_ids"] == [4, 5]
