"""Orders for the order tests: inserted directly, or placed through the real checkout."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import (
    CalendarEntry,
    CartItem,
    CheckoutAttempt,
    DomainEvent,
    Order,
    OrderItem,
    Post,
    Product,
)
from tests.factories import make_calendar, make_entry, make_product, make_shop
from tests.shopper import add, post_form


async def make_order(
    db: AsyncSession,
    *,
    user_id: int | None = None,
    session_id: str | None = None,
    status: str = "pending",
    page: Post | None = None,
    quantities: tuple[int, ...] = (1,),
    unit_price: str = "2.50",
) -> Order:
    """An order as checkout leaves it, inserted without SumUp (enough for lists)."""
    price = Decimal(unit_price)
    order = Order(
        user_id=user_id,
        session_id=session_id,
        page_post_id=page.id if page else None,
        status=status,
        currency="GBP",
        total_amount=price * sum(quantities),
        description="test order",
        cart_fingerprint="-",
        paid_at=datetime.now(UTC) if status == "paid" else None,
    )
    db.add(order)
    await db.flush()
    db.add_all(
        OrderItem(
            order_id=order.id,
            product_id=1,
            product_title=f"Item {n}",
            product_slug=f"item-{n}",
            market_place_id=1,
            quantity=quantity,
            unit_price=price,
            currency="GBP",
            line_total=price * quantity,
        )
        for n, quantity in enumerate(quantities)
    )
    await db.commit()
    return order


@dataclass(frozen=True)
class PlacedOrder:
    """An order placed through `POST /cart/checkout/`, with what it bought."""

    order: Order
    product: Product
    entry: CalendarEntry


async def place_order(client: Client, db: AsyncSession) -> PlacedOrder:
    """Two products at £4.50 and a £10 booking, checked out: a £19 order at SumUp."""
    page, market = await make_shop(db)
    product = await make_product(db, market, price="4.50")
    await add(client, product.id, 2)
    line = await db.scalar(select(CartItem).order_by(CartItem.id.desc()))
    assert line is not None
    entry = await make_entry(
        db, await make_calendar(db, page), user_id=line.user_id, session_id=line.session_id
    )
    response = await post_form(client, "/cart/checkout/")
    assert response.status_code == 303, await response.get_data(as_text=True)
    order = await latest_order(db)
    assert (await current_attempt(db, order)).sumup_checkout_id is not None
    return PlacedOrder(order, product, entry)


async def current_attempt(db: AsyncSession, order: Order) -> CheckoutAttempt:
    """The order's current SumUp checkout attempt, fresh from the database."""
    current = await db.scalar(select(Order.current_attempt_id).where(Order.id == order.id))
    assert current is not None, f"order {order.id} has no checkout attempt"
    attempt = await db.scalar(
        select(CheckoutAttempt)
        .where(CheckoutAttempt.id == current)
        .execution_options(populate_existing=True)
    )
    assert attempt is not None
    return attempt


async def checkout_id(db: AsyncSession, order: Order) -> str:
    """The SumUp checkout id of the order's current attempt."""
    value = (await current_attempt(db, order)).sumup_checkout_id
    assert value is not None
    return value


async def attempts_of(db: AsyncSession, order_id: int) -> list[CheckoutAttempt]:
    """Every attempt of an order, oldest first."""
    rows = await db.scalars(
        select(CheckoutAttempt)
        .where(CheckoutAttempt.order_id == order_id)
        .order_by(CheckoutAttempt.number)
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def latest_order(db: AsyncSession) -> Order:
    order = await db.scalar(
        select(Order).order_by(Order.id.desc()).execution_options(populate_existing=True)
    )
    assert order is not None
    return order


async def reload(db: AsyncSession, row: Any) -> Any:
    await db.refresh(row)
    return row


async def event_count(db: AsyncSession, event_type: str, order_id: int | None = None) -> int:
    query = select(func.count()).where(DomainEvent.event_type == event_type)
    if order_id is not None:
        query = query.where(DomainEvent.aggregate_id == str(order_id))
    return int(await db.scalar(query) or 0)


async def sandbox_status(control: Any, checkout_id: str | None) -> str:
    """The status the sandbox holds for a checkout."""
    checkouts = (await control.stats())["checkouts"]
    [status] = [c["status"] for c in checkouts if c["id"] == checkout_id]
    return str(status)


ROW = re.compile(r'<tr data-testid="order-row" data-order-id="(\d+)">(.*?)</tr>', re.S)
CELL = re.compile(r"<td[^>]*>(.*?)</td>", re.S)
TAG = re.compile(r"<[^>]+>")


def order_rows(html: str) -> list[tuple[int, list[str]]]:
    """The order list's rows: (order id, the text of each cell)."""
    return [
        (int(order_id), [TAG.sub("", cell).strip() for cell in CELL.findall(row)])
        for order_id, row in ROW.findall(html)
    ]


def listed_ids(html: str) -> list[int]:
    return [order_id for order_id, _ in order_rows(html)]


def older_link(html: str) -> str | None:
    match = re.search(r'data-testid="older-orders" href="([^"]+)"', html)
    return match.group(1).replace("&amp;", "&") if match else None
