"""Cancelling an unpaid order: retire its SumUp checkout, give its bookings back."""

from __future__ import annotations

import enum

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.check_sumup_status import check_sumup_status
from bp.cart.services.checkout import CheckoutContext, retire_checkout
from bp.cart.services.order_queries import load_order
from models import Order
from models.order import UNPAID_STATUSES
from services.events import emit_event, order_event_payload
from services.order_lifecycle import release_entries_for_order
from services.sumup import account_for_merchant


class CancelOutcome(enum.Enum):
    CANCELLED = "cancelled"
    ALREADY_CANCELLED = "already cancelled"
    PAID = "paid"


async def expire_or_cancel(
    session: AsyncSession, order: Order, *, status: str, event: str, reason: str
) -> bool:
    """Move an unpaid order to `status`, release its entries, write the event once.

    Entries still held by an order SumUp already expired are released too, without a
    second event. True when the order's status changed.
    """
    moved = await session.scalar(
        update(Order)
        .where(Order.id == order.id, Order.status.in_(UNPAID_STATUSES), Order.status != status)
        .values(
            status=status,
            cancelled_at=func.now() if status == "cancelled" else Order.cancelled_at,
            updated_at=func.now(),
        )
        .returning(Order.id)
    )
    released = await release_entries_for_order(session, order_id=order.id)
    if moved is None:
        return False
    order = await load_order(session, order.id)
    await emit_event(
        session,
        event,
        order_event_payload(order, entry_ids=released, reason=reason),
        aggregate=("order", order.id),
    )
    return True


async def settle_with_sumup_first(
    session: AsyncSession, order: Order, context: CheckoutContext
) -> Order:
    """Deactivate the order's open checkout; if SumUp says it was processed, re-check it.

    Runs before our own state changes, so a payment that lands at the same moment
    is found and wins (a paid order is never cancelled or expired).
    """
    # Racing callers (a double click, a cancel during the sweep) go one at a time: the
    # second finds the checkout already retired instead of mistaking it for expired.
    order = await load_order(session, order.id, for_update=True)
    checkout_id = order.sumup_checkout_id
    if not checkout_id or order.sumup_status == "EXPIRED" or order.status == "paid":
        return order
    account = await account_for_merchant(session, context.settings, order.sumup_merchant_code or "")
    if await retire_checkout(context, account, checkout_id):
        return await check_sumup_status(session, order.id, context=context)
    # Recorded, so that a later attempt neither reuses its dead page nor retires it again.
    await session.execute(
        update(Order)
        .where(Order.id == order.id, Order.sumup_checkout_id == checkout_id)
        .values(sumup_status="EXPIRED", updated_at=func.now())
    )
    return await load_order(session, order.id)


async def cancel_order(
    session: AsyncSession, order: Order, context: CheckoutContext
) -> CancelOutcome:
    """Cancel an unpaid order: its checkout deactivated, its entries back in the cart."""
    if order.status == "cancelled":
        return CancelOutcome.ALREADY_CANCELLED
    if order.status != "paid":
        order = await settle_with_sumup_first(session, order, context)
    if order.status == "paid":
        return CancelOutcome.PAID
    changed = await expire_or_cancel(
        session,
        order,
        status="cancelled",
        event="order.cancelled",
        reason="cancelled by the shopper",
    )
    return CancelOutcome.CANCELLED if changed else CancelOutcome.ALREADY_CANCELLED
