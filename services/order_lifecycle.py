"""What an order does to its calendar entries (the seed's glue services).

Entries move pending (in a cart) → ordered (claimed by an order) → provisional (paid),
and back to pending when an unpaid order is cancelled or expires. Each function is a
single conditional UPDATE, so racing callers move each entry once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Calendar, CalendarEntry


async def claim_entries_for_order(
    session: AsyncSession, *, order_id: int, entry_ids: Sequence[int]
) -> list[int]:
    """Mark pending entries as ordered by `order_id`; returns the ids it claimed."""
    if not entry_ids:
        return []
    claimed = await session.scalars(
        update(CalendarEntry)
        .where(
            CalendarEntry.id.in_(entry_ids),
            CalendarEntry.state == "pending",
            CalendarEntry.deleted_at.is_(None),
        )
        .values(state="ordered", order_id=order_id, updated_at=func.now())
        .returning(CalendarEntry.id)
    )
    return sorted(claimed)


async def confirm_entries_for_order(session: AsyncSession, *, order_id: int) -> list[int]:
    """Paid: the order's entries become provisional (the events app confirms them)."""
    confirmed = await session.scalars(
        update(CalendarEntry)
        .where(CalendarEntry.order_id == order_id, CalendarEntry.state == "ordered")
        .values(state="provisional", updated_at=func.now())
        .returning(CalendarEntry.id)
    )
    return sorted(confirmed)


async def release_entries_for_order(session: AsyncSession, *, order_id: int) -> list[int]:
    """Unpaid order cancelled or expired: its entries go back to the cart as pending."""
    released = await session.scalars(
        update(CalendarEntry)
        .where(CalendarEntry.order_id == order_id, CalendarEntry.state == "ordered")
        .values(state="pending", order_id=None, updated_at=func.now())
        .returning(CalendarEntry.id)
    )
    return sorted(released)


async def get_entries_for_order(session: AsyncSession, *, order_id: int) -> list[CalendarEntry]:
    """The entries an order holds or paid for, with their calendars, by start time."""
    rows = await session.scalars(
        select(CalendarEntry)
        .join(Calendar, Calendar.id == CalendarEntry.calendar_id)
        .where(CalendarEntry.order_id == order_id)
        .order_by(CalendarEntry.start_at, CalendarEntry.id)
    )
    return list(rows)
