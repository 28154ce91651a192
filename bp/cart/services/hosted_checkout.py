"""Sending a committed order to SumUp's hosted payment page, one attempt at a time.

`start_hosted_checkout` runs after the order's commit and outside any lock held
across SumUp calls. It reuses the open checkout when it is still payable, otherwise
retires the open ones (a 409 there means the shopper just paid: that is found and
wins), claims a new attempt under the order's version guard (so racing requests
claim one attempt, and a cancel or the sweep that changed the order meanwhile makes
the claim fail), creates it at SumUp and, before sending the shopper there, checks
the order still wants it: a checkout made for an order that was cancelled during the
create is retired at once instead of being shown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bp.cart.services.checkout_attempts import (
    CheckoutContext,
    account_of,
    add_attempt,
    check_attempt,
    create_or_recover,
    load_attempt,
    record_created,
    retire_attempt,
    retire_open_attempts,
)
from bp.cart.services.order_queries import load_order
from bp.cart.services.order_states import UNPAID, move_order, touch_order
from bp.cart.services.total import unit_price
from models import CheckoutAttempt, Order, Product
from services.errors import CheckoutError, PaymentProviderError
from services.order_lifecycle import reclaim_entries_for_order
from services.sumup import account_for_merchant

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostedCheckout:
    url: str | None
    paid: bool = False


PAID_LIKE = ("paid", "partially_refunded", "refunded")


def _refuse_final(order: Order) -> HostedCheckout:
    if order.status in PAID_LIKE:
        return HostedCheckout(None, paid=True)
    raise CheckoutError(
        f"Order {order.number} was cancelled, so it cannot be paid. "
        "Please check out your cart again."
    )


async def _payable_page(
    session: AsyncSession,
    order: Order,
    context: CheckoutContext,
    *,
    started: datetime,
    reuse_open: bool,
) -> CheckoutAttempt | str | None:
    """What this request should do with the order's current attempt: an attempt to join
    (claimed by a racing request, not yet created at SumUp), a hosted URL to send the
    shopper to, or None (a new attempt is needed)."""
    if order.current_attempt_id is None:
        return None
    attempt = await load_attempt(session, order.current_attempt_id)
    if attempt.settled_at is not None or order.status != "pending":
        return None
    racing = attempt.created_at >= started  # made by a request racing this one
    age = datetime.now(UTC) - attempt.created_at
    young = age < context.lifetime / 2  # else the shopper lands on a page about to close
    if attempt.sumup_checkout_id is None:
        return attempt if racing or young else None
    if not attempt.hosted_url or not (racing or (reuse_open and young)):
        return None
    if racing:
        return attempt.hosted_url
    found = await check_attempt(session, attempt, context)
    return attempt.hosted_url if found.sumup_status == "PENDING" else None


async def revalidate_order(session: AsyncSession, order: Order) -> None:
    """An order paid again must still be what it was: products sold at the same prices
    and every booking held (an expired order takes its bookings back if still free)."""
    ids = [item.product_id for item in order.items]
    products = {
        product.id: product
        for product in await session.scalars(select(Product).where(Product.id.in_(ids)))
    }
    for item in order.items:
        product = products.get(item.product_id)
        price = unit_price(product.regular_price, product.special_price) if product else None
        if product is None or product.deleted_at is not None or price is None:
            raise CheckoutError(
                f"{item.product_title} is no longer sold, so order {order.number} cannot be "
                "paid as it was. Please check out your cart again."
            )
        if price != item.unit_price:
            raise CheckoutError(
                f"The price of {item.product_title} changed since order {order.number} was "
                "made. Please check out your cart again."
            )
    if not await reclaim_entries_for_order(session, order_id=order.id):
        raise CheckoutError(
            f"A booking of order {order.number} was taken or changed since it expired. "
            "Please check out your cart again."
        )


async def _claim_attempt(
    sessions: async_sessionmaker[AsyncSession],
    order_id: int,
    context: CheckoutContext,
    *,
    seen_version: int,
) -> CheckoutAttempt | None:
    """A new current attempt for the order as this request last saw it; None when the
    order is final; `_Retry` when someone changed it meanwhile (it decides again)."""
    async with sessions() as session, session.begin():
        order = await load_order(session, order_id, for_update=True)
        if order.status not in UNPAID:
            return None
        if order.version != seen_version:
            raise _Retry()
        if order.status != "pending":
            await revalidate_order(session, order)
        account = await account_for_merchant(
            session, context.settings, order.sumup_merchant_code or ""
        )
        attempt = await add_attempt(session, order, account)
        values = {"current_attempt_id": attempt.id, "checkout_started_at": func.now()}
        if order.status == "pending":
            claimed = await touch_order(session, order, values)
        else:
            claimed = (
                await move_order(
                    session, order, "pending", cause="pay_again", attempt=attempt, values=values
                )
                is not None
            )
        if not claimed:
            raise _Retry()
        return attempt


class _Retry(Exception):
    """The order moved while we claimed; read it again."""


async def start_hosted_checkout(
    sessions: async_sessionmaker[AsyncSession],
    order_id: int,
    context: CheckoutContext,
    *,
    reuse_open: bool = True,
) -> HostedCheckout:
    """The SumUp hosted page for an unpaid, committed order (see the module docstring).

    Commits its own small transactions, because it runs around HTTP calls.
    """
    async with sessions() as session:
        started: datetime = (await session.execute(select(func.now()))).scalar_one()
    for _ in range(5):
        async with sessions() as session, session.begin():
            order = await load_order(session, order_id, for_update=True)
            if order.status not in UNPAID:
                return _refuse_final(order)
            found = await _payable_page(
                session, order, context, started=started, reuse_open=reuse_open
            )
            if isinstance(found, str):
                return HostedCheckout(found)
            if found is None and await retire_open_attempts(session, order_id, context):
                order = await load_order(session, order_id)
                if order.status not in UNPAID:
                    return _refuse_final(order)
            seen_version = order.version
        if found is not None:
            return await _create_and_send(sessions, order_id, found, context)
        try:
            attempt = await _claim_attempt(sessions, order_id, context, seen_version=seen_version)
        except _Retry:
            continue
        if attempt is None:
            async with sessions() as session:
                return _refuse_final(await load_order(session, order_id))
        return await _create_and_send(sessions, order_id, attempt, context)
    raise PaymentProviderError(
        "Your payment is being set up. Please try again in a moment.", status_code=503
    )


async def _create_and_send(
    sessions: async_sessionmaker[AsyncSession],
    order_id: int,
    attempt: CheckoutAttempt,
    context: CheckoutContext,
) -> HostedCheckout:
    async with sessions() as session:
        order = await load_order(session, order_id)
        account = await account_of(session, context, attempt)
    checkout, origin = await create_or_recover(context, account, attempt, order)
    async with sessions() as session, session.begin():
        order = await load_order(session, order_id, for_update=True)
        await record_created(session, attempt, checkout, origin)
        attempt = await load_attempt(session, attempt.id)
        if order.status in UNPAID and order.current_attempt_id == attempt.id:
            if not attempt.hosted_url:
                raise PaymentProviderError(
                    "SumUp did not give us a payment page; please try again."
                )
            return HostedCheckout(attempt.hosted_url)
        # Cancelled, superseded, paid or paid again while SumUp was creating this one.
        log.warning(
            "order %s changed during the SumUp create of %s; retiring it",
            order.number,
            attempt.reference,
            extra={"order_id": order.id, "attempt_id": attempt.id},
        )
        await retire_attempt(session, attempt, context)
        order = await load_order(session, order_id)
    if order.status in UNPAID:
        return await start_hosted_checkout(sessions, order_id, context)
    return _refuse_final(order)
