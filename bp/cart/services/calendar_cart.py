"""Calendar entries in the cart: pending bookings of an owner, with their page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.get_cart import PageRef
from bp.cart.services.identity import Identity, lock_identity
from bp.cart.services.update_cart import fits_sql_integer
from models import Calendar, CalendarEntry, Post
from services.errors import NotFoundError


@dataclass(frozen=True)
class CartEntry:
    id: int
    name: str
    calendar_name: str
    start_at: datetime
    end_at: datetime | None
    cost: Decimal
    currency: str
    page: PageRef

    @property
    def total(self) -> Decimal:
        return self.cost


async def get_cart_entries(
    session: AsyncSession, identity: Identity, *, page_id: int | None = None
) -> list[CartEntry]:
    """The owner's pending entries (optionally of one page), in one query."""
    query = (
        select(CalendarEntry, Calendar, Post)
        .join(Calendar, Calendar.id == CalendarEntry.calendar_id)
        .join(Post, Post.id == Calendar.post_id)
        .where(
            identity.owns(CalendarEntry),
            CalendarEntry.state == "pending",
            CalendarEntry.deleted_at.is_(None),
        )
        .order_by(Post.nav_order, Post.title, CalendarEntry.start_at, CalendarEntry.id)
    )
    if page_id is not None:
        query = query.where(Calendar.post_id == page_id)
    rows = await session.execute(query)
    return [
        CartEntry(
            id=entry.id,
            name=entry.name,
            calendar_name=calendar.name,
            start_at=entry.start_at,
            end_at=entry.end_at,
            cost=entry.cost,
            currency=entry.currency,
            page=PageRef(post.id, post.slug, post.title),
        )
        for entry, calendar, post in rows
    ]


async def remove_entry_from_cart(
    session: AsyncSession, identity: Identity, *, entry_id: int
) -> str:
    """Cancel one of the owner's pending entries; 404 for anyone else's or a non-pending one."""
    if not fits_sql_integer(entry_id):
        raise NotFoundError("That booking is not in your cart.")
    await lock_identity(session, identity)
    name = await session.scalar(
        update(CalendarEntry)
        .where(
            CalendarEntry.id == entry_id,
            identity.owns(CalendarEntry),
            CalendarEntry.state == "pending",
            CalendarEntry.deleted_at.is_(None),
        )
        .values(state="cancelled", deleted_at=func.now())
        .returning(CalendarEntry.name)
    )
    if name is None:
        raise NotFoundError("That booking is not in your cart.")
    return name


async def add_entry_to_cart(
    session: AsyncSession,
    identity: Identity,
    *,
    calendar_id: int,
    name: str,
    start_at: datetime,
    end_at: datetime | None,
    cost: Decimal,
    currency: str,
) -> CalendarEntry:
    """Book a slot into the cart as a pending entry (the events app does this in production)."""
    from bp.cart.services.update_cart import check_currency

    await lock_identity(session, identity)
    await check_currency(session, identity, currency)
    entry = CalendarEntry(
        calendar_id=calendar_id,
        name=name,
        start_at=start_at,
        end_at=end_at,
        cost=cost,
        currency=currency,
        state="pending",
        **identity.columns(),
    )
    session.add(entry)
    await session.flush()
    return entry
