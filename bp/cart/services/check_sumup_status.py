"""Ask SumUp how an order's checkout stands, verify it, and move the order once.

The webhook, the return page, `recheck` and the reconcile sweep all come here. A
webhook's body is never trusted: the checkout is fetched from SumUp and must match
the order's id, reference, merchant, amount and currency. Status changes are
conditional updates, so when several callers race exactly one moves the order and
writes its event.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sumup._exceptions import APIError, NotFoundError

from bp.cart.services.clear_cart_for_order import clear_cart_for_order
from bp.cart.services.order_queries import load_order
from models import Order
from services.errors import PaymentProviderError
from services.events import emit_event, order_event_payload
from services.metrics import ORDERS_PAID, STATUS_MISMATCHES, SUMUP_CALLS
from services.order_lifecycle import confirm_entries_for_order
from services.sumup import account_for_merchant, from_sumup_amount

if TYPE_CHECKING:
    from bp.cart.services.checkout import CheckoutContext

log = logging.getLogger(__name__)


async def _fetch_checkout(
    session: AsyncSession, order: Order, context: CheckoutContext
) -> Any | None:
    account = await account_for_merchant(session, context.settings, order.sumup_merchant_code or "")
    client = context.clients.for_account(account)
    assert order.sumup_checkout_id is not None
    try:
        checkout = await client.checkouts.get(order.sumup_checkout_id)
    except NotFoundError:
        SUMUP_CALLS.labels("get", "not_found").inc()
        log.error("order %s: SumUp has no checkout %s", order.id, order.sumup_checkout_id)
        return None
    except APIError as error:
        SUMUP_CALLS.labels("get", type(error).__name__).inc()
        log.warning("order %s: SumUp status check failed: %s", order.id, error)
        raise PaymentProviderError(
            "We could not reach SumUp to check your payment. Please try again shortly.",
            status_code=503,
        ) from None
    SUMUP_CALLS.labels("get", "ok").inc()
    return checkout


def mismatches(order: Order, checkout: Any) -> list[str]:
    """Fields where SumUp's checkout disagrees with our order (empty when it matches)."""
    expected = {
        "id": order.sumup_checkout_id,
        "checkout_reference": order.sumup_reference,
        "merchant_code": order.sumup_merchant_code,
        "currency": order.currency,
    }
    wrong = [
        name
        for name, value in expected.items()
        if str(getattr(checkout, name, None) or "") != str(value or "")
    ]
    if from_sumup_amount(getattr(checkout, "amount", None)) != order.total_amount:
        wrong.append("amount")
    return wrong


def _paid_transaction(checkout: Any) -> tuple[str | None, str | None]:
    for transaction in getattr(checkout, "transactions", None) or []:
        if str(getattr(transaction, "status", "")) == "SUCCESSFUL":
            return transaction.transaction_code, str(transaction.id)
    return getattr(checkout, "transaction_code", None), getattr(checkout, "transaction_id", None)


async def mark_paid(session: AsyncSession, order: Order, checkout: Any) -> bool:
    """Move any unpaid order to paid; True for the one caller that did it."""
    code, transaction_id = _paid_transaction(checkout)
    moved = await session.scalar(
        update(Order)
        .where(Order.id == order.id, Order.status != "paid")
        .values(
            status="paid",
            paid_at=func.now(),
            sumup_status="PAID",
            sumup_transaction_code=code,
            sumup_transaction_id=transaction_id,
            needs_refund=Order.status == "cancelled",
            updated_at=func.now(),
        )
        .returning(Order.needs_refund)
    )
    if moved is None:
        return False
    order = await load_order(session, order.id)
    if moved:
        log.error(
            "order %s was paid at SumUp after it was cancelled: kept as paid, marked for refund",
            order.id,
        )
    confirmed = await confirm_entries_for_order(session, order_id=order.id)
    await clear_cart_for_order(session, order)
    await emit_event(
        session,
        "order.paid",
        order_event_payload(order, entry_ids=confirmed),
        aggregate=("order", order.id),
    )
    ORDERS_PAID.inc()
    return True


async def _mark_unsuccessful(session: AsyncSession, order: Order, sumup_status: str) -> None:
    status, event, reason = {
        "FAILED": ("failed", "order.failed", "the payment failed at SumUp"),
        "EXPIRED": ("expired", "order.expired", "the SumUp checkout expired"),
    }[sumup_status]
    moved = await session.scalar(
        update(Order)
        .where(
            Order.id == order.id,
            # Only the attempt we asked about: a newer one may already be under way.
            Order.sumup_checkout_id == order.sumup_checkout_id,
            Order.status.in_(("pending", "failed")),
            Order.status != status,
        )
        .values(status=status, sumup_status=sumup_status, updated_at=func.now())
        .returning(Order.id)
    )
    if moved is None:
        return
    order = await load_order(session, order.id)
    await emit_event(
        session,
        event,
        order_event_payload(order, entry_ids=[], reason=reason),
        aggregate=("order", order.id),
    )


async def check_sumup_status(
    session: AsyncSession, order_id: int, *, context: CheckoutContext
) -> Order:
    """Fetch the order's checkout from SumUp, verify it, and move the order accordingly."""
    order = await load_order(session, order_id)
    if order.status == "paid" or not order.sumup_checkout_id:
        return order
    checkout = await _fetch_checkout(session, order, context)
    if checkout is None:
        return order
    wrong = mismatches(order, checkout)
    if wrong:
        STATUS_MISMATCHES.inc()
        log.error(
            "order %s: SumUp checkout %s does not match the order (%s); not marking it paid",
            order.id,
            order.sumup_checkout_id,
            ", ".join(wrong),
        )
        return order
    status = str(checkout.status)
    if status == "PAID":
        await mark_paid(session, order, checkout)
    elif status in ("FAILED", "EXPIRED"):
        await _mark_unsuccessful(session, order, status)
    elif status == "PENDING":
        await session.execute(
            update(Order)
            .where(
                Order.id == order.id,
                Order.sumup_checkout_id == order.sumup_checkout_id,
                Order.status != "paid",
            )
            .values(sumup_status="PENDING")
        )
    await session.flush()
    return await load_order(session, order.id)


async def order_id_for_checkout(session: AsyncSession, checkout_id: str) -> int | None:
    """The order a SumUp checkout id belongs to, if it is one of ours."""
    if not checkout_id or len(checkout_id.encode()) > 255:
        return None
    order_id: int | None = await session.scalar(
        select(Order.id).where(Order.sumup_checkout_id == checkout_id)
    )
    return order_id
