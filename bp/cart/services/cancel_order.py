"""Cancelling an unpaid order: retire its SumUp checkouts, give its bookings back."""

from __future__ import annotations

import contextlib
import enum

from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.checkout_attempts import CheckoutContext, retire_open_attempts
from bp.cart.services.order_queries import load_order
from bp.cart.services.order_states import UNPAID, move_order
from models import Order
from services.errors import PaymentProviderError


class CancelOutcome(enum.Enum):
    CANCELLED = "cancelled"
    ALREADY_CANCELLED = "already cancelled"
    PAID = "paid"


async def cancel_order(
    session: AsyncSession, order: Order, context: CheckoutContext
) -> CancelOutcome:
    """Cancel an unpaid order: its checkouts retired first, its entries back in the cart.

    Retiring comes before our own change, so a payment that lands at that moment is
    found and wins (a paid order is never cancelled). When SumUp cannot be reached the
    order is cancelled all the same; the sweep retires its checkouts later, and money
    paid on one meanwhile is refunded.
    """
    if order.status == "cancelled":
        return CancelOutcome.ALREADY_CANCELLED
    if order.status in UNPAID:
        with contextlib.suppress(PaymentProviderError):
            await retire_open_attempts(session, order.id, context)
    for _ in range(5):
        order = await load_order(session, order.id, for_update=True)
        if order.status == "cancelled":
            return CancelOutcome.ALREADY_CANCELLED
        if order.status not in UNPAID:
            return CancelOutcome.PAID
        if await move_order(session, order, "cancelled", cause="shopper_cancelled") is not None:
            return CancelOutcome.CANCELLED
    return CancelOutcome.ALREADY_CANCELLED


async def expire_order(session: AsyncSession, order: Order, *, reason: str) -> bool:
    """Our own expiry of an order left unpaid (its checkouts already retired)."""
    order = await load_order(session, order.id, for_update=True)
    if order.status not in ("pending", "failed"):
        return False
    moved = await move_order(session, order, "expired", cause="unpaid_too_long", detail=reason)
    return moved is not None
