"""Reading orders for their owner: one order, its history, or the owner's list."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bp.cart.services.identity import Identity
from models import CalendarEntry, Order, OrderItem, OrderTransition, Post
from services.errors import NotFoundError


async def load_order(session: AsyncSession, order_id: int, *, for_update: bool = False) -> Order:
    """An order with its items, fresh from the database; 404 when there is none."""
    query = (
        select(Order)
        .options(selectinload(Order.items), selectinload(Order.bookings))
        .where(Order.id == order_id)
        .execution_options(populate_existing=True)
    )
    if for_update:
        query = query.with_for_update(of=Order)
    order = await session.scalar(query)
    if order is None:
        raise NotFoundError("There is no such order.")
    return order


async def get_order_for_owner(
    session: AsyncSession, identity: Identity | None, order_id: int
) -> Order:
    """The order with its items when `identity` placed it; 404 for anyone else."""
    if identity is None:
        raise NotFoundError("There is no such order.")
    order = await session.scalar(
        select(Order)
        .options(selectinload(Order.items), selectinload(Order.bookings))
        .where(Order.id == order_id, identity.owns(Order))
        .execution_options(populate_existing=True)
    )
    if order is None:
        raise NotFoundError("There is no such order.")
    return order


@dataclass(frozen=True)
class OrderRow:
    id: int
    number: str
    created_at: datetime
    page_title: str | None
    item_count: int
    total: Decimal
    currency: str
    status: str


@dataclass(frozen=True)
class OrdersPage:
    rows: list[OrderRow]
    next_before: int | None
    is_first: bool


def order_id_from_search(text_: str) -> int | None:
    """`RA-000012`, `ra-12` or `12` → 12; anything else → None."""
    match = re.fullmatch(r"\s*(?:[A-Za-z]{1,4}-?)?0*(\d{1,12})\s*", text_)
    return int(match.group(1)) if match else None


async def list_orders(
    session: AsyncSession,
    identity: Identity | None,
    *,
    page_size: int,
    before: int | None = None,
    status: str | None = None,
    search: str | None = None,
) -> OrdersPage:
    """The owner's orders, newest first, a page at a time.

    Keyset pagination (`id < before`) keeps pages stable while new orders arrive.
    One query, whatever the page size.
    """
    if identity is None:
        return OrdersPage([], None, before is None)
    item_count = (
        select(func.coalesce(func.sum(OrderItem.quantity), 0))
        .where(OrderItem.order_id == Order.id)
        .scalar_subquery()
    )
    entry_count = (
        select(func.count(CalendarEntry.id))
        .where(CalendarEntry.order_id == Order.id)
        .scalar_subquery()
    )
    query = (
        select(Order, Post.title, item_count, entry_count)
        .outerjoin(Post, Post.id == Order.page_post_id)
        .where(identity.owns(Order))
        .order_by(Order.id.desc())
        .limit(page_size + 1)
    )
    if before is not None:
        query = query.where(Order.id < before)
    if status:
        query = query.where(Order.status == status)
    if search:
        wanted = order_id_from_search(search)
        query = query.where(Order.id == (wanted if wanted is not None else -1))
    rows = (await session.execute(query)).all()
    page = [
        OrderRow(
            id=order.id,
            number=order.number,
            created_at=order.created_at,
            page_title=title,
            item_count=int(items) + int(entries),
            total=order.total_amount,
            currency=order.currency,
            status=order.status,
        )
        for order, title, items, entries in rows[:page_size]
    ]
    next_before = page[-1].id if len(rows) > page_size and page else None
    return OrdersPage(page, next_before, before is None)


@dataclass(frozen=True)
class BookingRow:
    """A booking as an order's page shows it: held, paid for, or released."""

    name: str
    start_at: datetime
    cost: Decimal
    currency: str
    state: str
    released: bool


def order_booking_rows(order: Order, entries: list[CalendarEntry]) -> list[BookingRow]:
    """The bookings an order claimed (`bookings` loaded), each with its state now."""
    states = {entry.id: entry.state for entry in entries}
    return [
        BookingRow(
            name=booking.name,
            start_at=booking.start_at,
            cost=booking.cost,
            currency=booking.currency,
            state=states.get(booking.entry_id, "pending"),
            released=booking.released,
        )
        for booking in order.bookings
    ]


@dataclass(frozen=True)
class HistoryItem:
    occurred_at: datetime
    label: str


# (to status, cause) -> what the shopper reads; a cause of None matches any cause.
HISTORY_LABELS = {
    ("pending", "checkout"): "Order placed",
    ("pending", "pay_again"): "Payment started again",
    ("paid", None): "Paid",
    ("failed", None): "Payment failed",
    ("expired", None): "Expired",
    ("cancelled", "superseded"): "Cancelled: replaced by a new checkout",
    ("cancelled", None): "Cancelled",
    ("partially_refunded", None): "Partly refunded",
    ("refunded", None): "Refunded",
}


def history_label(to_status: str, cause: str) -> str:
    """The words for one status change of an order."""
    return HISTORY_LABELS.get((to_status, cause)) or HISTORY_LABELS.get(
        (to_status, None), to_status
    )


CLAIMED_LABEL = "Moved to your account when you signed in"


async def get_order_history(session: AsyncSession, order: Order) -> list[HistoryItem]:
    """The order's status changes (the state machine records each) and, for an order
    placed before signing in, when the sign-in moved it to the account; oldest first."""
    rows = await session.execute(
        select(OrderTransition.occurred_at, OrderTransition.to_status, OrderTransition.cause)
        .where(OrderTransition.order_id == order.id)
        .order_by(OrderTransition.id)
    )
    history = [HistoryItem(at, history_label(status, cause)) for at, status, cause in rows]
    if order.claimed_by_user_at is not None:
        claimed = HistoryItem(order.claimed_by_user_at, CLAIMED_LABEL)
        at = next(
            (n for n, item in enumerate(history) if item.occurred_at > claimed.occurred_at),
            len(history),
        )
        history.insert(at, claimed)
    return history
