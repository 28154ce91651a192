"""Ask SumUp how an order's checkouts stand, verify the answers, and move the order once.

The webhook, the return page, `recheck` and the reconcile sweep come here. A
webhook's body is never trusted: each open checkout attempt of the order is fetched
from SumUp and must match its id, reference, merchant, amount and currency
(checkout_attempts.py). Status changes go through the order state machine, so when
several callers race exactly one moves the order and writes its event.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.checkout_attempts import CheckoutContext, check_attempt, open_attempts
from bp.cart.services.order_queries import load_order
from models import CheckoutAttempt, Order


async def check_sumup_status(
    session: AsyncSession, order_id: int, *, context: CheckoutContext
) -> Order:
    """Check every open attempt of the order with SumUp and apply what it says."""
    order = await load_order(session, order_id)
    for attempt in await open_attempts(session, order.id):
        if attempt.sumup_checkout_id is not None or order.is_final:
            await check_attempt(session, attempt, context)
    await session.flush()
    return await load_order(session, order.id)


async def order_id_for_checkout(session: AsyncSession, checkout_id: str) -> int | None:
    """The order a SumUp checkout id belongs to, if it is one of ours."""
    if not checkout_id or len(checkout_id.encode()) > 255:
        return None
    order_id: int | None = await session.scalar(
        select(CheckoutAttempt.order_id).where(CheckoutAttempt.sumup_checkout_id == checkout_id)
    )
    return order_id
