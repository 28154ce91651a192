"""What an order does to its calendar entries (the seed's glue services).

Entries move pending (in a cart) → ordered (claimed by an order) → provisional (paid),
back to pending when an unpaid order is cancelled or expires, and to cancelled when a
paid order is refunded in full. An order keeps a snapshot of every entry it claimed
(`order_bookings`), also after it let it go, so its page can say what it held. Each
function is a conditional UPDATE, so racing callers move each entry once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from models import Calendar, CalendarEntry, OrderBooking


async def claim_entries_for_order(
    session: AsyncSession, *, order_id: int, entry_ids: Sequence[int]
) -> list[int]:
    """Mark pending entries as ordered by `order_id`; returns the ids it claimed."""
    if not entry_ids:
        return []
    claimed = (
        await session.execute(
            update(CalendarEntry)
            .where(
                CalendarEntry.id.in_(entry_ids),
                CalendarEntry.state == "pending",
                CalendarEntry.deleted_at.is_(None),
            )
            .values(state="ordered", order_id=order_id, updated_at=func.now())
            .returning(
                CalendarEntry.id,
                CalendarEntry.name,
                CalendarEntry.start_at,
                CalendarEntry.cost,
                CalendarEntry.currency,
            )
        )
    ).all()
    session.add_all(
        OrderBooking(
            order_id=order_id,
            entry_id=row.id,
            name=row.name,
            start_at=row.start_at,
            cost=row.cost,
            currency=row.currency,
        )
        for row in claimed
    )
    await session.flush()
    return sorted(row.id for row in claimed)


async def reclaim_entries_for_order(session: AsyncSession, *, order_id: int) -> bool:
    """Take back the bookings an expired order released, if all are still free and
    unchanged; True when the order holds every booking it was made with again."""
    released = list(
        await session.scalars(
            select(OrderBooking)
            .where(OrderBooking.order_id == order_id, OrderBooking.released_at.is_not(None))
            .execution_options(populate_existing=True)
        )
    )
    if not released:
        return True
    wanted = {booking.entry_id: booking.cost for booking in released}
    rows = (
        await session.execute(
            select(CalendarEntry.id, CalendarEntry.cost)
            .where(
                CalendarEntry.id.in_(wanted),
                CalendarEntry.state == "pending",
                CalendarEntry.order_id.is_(None),
                CalendarEntry.deleted_at.is_(None),
            )
            .with_for_update()
        )
    ).all()
    if {row.id: row.cost for row in rows} != wanted:
        return False  # one was booked again, removed or repriced: the order is not whole
    await session.execute(
        update(CalendarEntry)
        .where(CalendarEntry.id.in_(wanted))
        .values(state="ordered", order_id=order_id, updated_at=func.now())
    )
    await session.execute(
        update(OrderBooking)
        .where(OrderBooking.order_id == order_id, OrderBooking.released_at.is_not(None))
        .values(released_at=None)
    )
    return True


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
    released = sorted(
        await session.scalars(
            update(CalendarEntry)
            .where(CalendarEntry.order_id == order_id, CalendarEntry.state == "ordered")
            .values(state="pending", order_id=None, updated_at=func.now())
            .returning(CalendarEntry.id)
        )
    )
    await _mark_released(session, order_id, released)
    return released


async def cancel_entries_for_refund(session: AsyncSession, *, order_id: int) -> list[int]:
    """Refunded in full: the order's bookings no longer stand; the slots are free."""
    cancelled = sorted(
        await session.scalars(
            update(CalendarEntry)
            .where(
                CalendarEntry.order_id == order_id,
                CalendarEntry.state.in_(("ordered", "provisional", "confirmed")),
            )
            .values(state="cancelled", updated_at=func.now())
            .returning(CalendarEntry.id)
        )
    )
    await _mark_released(session, order_id, cancelled)
    return cancelled


async def _mark_released(session: AsyncSession, order_id: int, entry_ids: list[int]) -> None:
    if entry_ids:
        await session.execute(
            update(OrderBooking)
            .where(OrderBooking.order_id == order_id, OrderBooking.entry_id.in_(entry_ids))
            .values(released_at=func.now())
        )


async def get_entries_for_order(session: AsyncSession, *, order_id: int) -> list[CalendarEntry]:
    """The entries an order holds or paid for, with their calendars, by start time."""
    rows = await session.scalars(
        select(CalendarEntry)
        .join(Calendar, Calendar.id == CalendarEntry.calendar_id)
        .where(CalendarEntry.order_id == order_id)
        .order_by(CalendarEntry.start_at, CalendarEntry.id)
    )
    return list(rows)
