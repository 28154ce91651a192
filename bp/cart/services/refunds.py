"""Refunds through SumUp's refund API, exactly once under retries, timeouts and races.

A refund is first reserved (a `pending` row, under the order's row lock, with the
amount checked against what is left), then sent to SumUp outside any transaction by
whoever holds its lease, then settled. SumUp's refund call has no idempotency key,
so a refund whose answer was lost is settled by reading the transaction's refunded
amount back from SumUp, never by sending it again blindly; to make that reading
unambiguous an order has at most one pending refund at a time.

Two kinds: the blog app's admin refunds part or all of an order's kept payment
(`requested_by="admin"`), and money an order could not take is given back whole
(`requested_by="auto"`, a surplus: it does not change the order's status).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bp.cart.services.order_queries import load_order
from bp.cart.services.order_states import move_order, record_refund_event
from bp.cart.services.total import CENT
from models import CheckoutAttempt, Order, Refund
from models.order import PAID_STATUSES
from services.errors import NotFoundError, ServiceError
from services.events import money_string
from services.sumup import (
    SumUpNotFound,
    SumUpRefused,
    SumUpUnavailable,
    account_for_merchant,
    refund_transaction,
    refunded_so_far,
)

if TYPE_CHECKING:
    from bp.cart.services.checkout_attempts import CheckoutContext

log = logging.getLogger(__name__)


class RefundError(ServiceError):
    """A refund that cannot be made as asked (nothing paid, too much, a reused key)."""

    status_code = 409
    title = "The refund could not be made"


class RefundBusy(RefundError):
    """Another refund of the order is with SumUp right now."""


@dataclass(frozen=True)
class RefundAsk:
    order_id: int
    amount: Decimal | None
    reason: str
    idempotency_key: str


def parse_refund_amount(value: object) -> Decimal | None:
    """A JSON amount ("1.50" or 1.5) as Decimal pence; None when absent; 422 otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RefundError('amount must be a number of pounds, like "1.50".', status_code=422)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise RefundError(
            'amount must be a number of pounds, like "1.50".', status_code=422
        ) from None
    if not amount.is_finite() or amount != amount.quantize(CENT) or amount <= 0:
        raise RefundError("amount must be more than 0 with at most two decimals.", status_code=422)
    return amount.quantize(CENT)


def _lease(context: CheckoutContext) -> timedelta:
    return timedelta(seconds=context.settings.sumup.timeout_seconds * 2 + 5)


async def reserve_surplus_refund(
    session: AsyncSession, order: Order, attempt: CheckoutAttempt, *, reason: str
) -> None:
    """Reserve the refund of a payment the order could not take (once per attempt)."""
    if not attempt.transaction_id:
        log.error("order %s: surplus payment %s has no transaction id", order.id, attempt.reference)
        return
    await session.execute(
        insert(Refund)
        .values(
            order_id=order.id,
            attempt_id=attempt.id,
            amount=attempt.amount,
            currency=attempt.currency,
            reason=f"automatic: {reason}",
            idempotency_key=f"auto:attempt:{attempt.id}",
            sumup_transaction_id=attempt.transaction_id,
            requested_by="auto",
            of_order_payment=False,
        )
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
    )


async def _reserve_admin_refund(session: AsyncSession, ask: RefundAsk) -> Refund:
    order = await session.scalar(select(Order).where(Order.id == ask.order_id).with_for_update())
    if order is None:
        raise NotFoundError("There is no such order.")
    existing = await session.scalar(
        select(Refund).where(Refund.idempotency_key == ask.idempotency_key)
    )
    if existing is not None:
        if existing.order_id != order.id:
            raise RefundError("This Idempotency-Key was used for another order.", status_code=422)
        return existing
    if await _pending_refund(session, order.id) is not None:
        raise RefundBusy("Another refund of this order is in progress; try again shortly.")
    if order.status not in PAID_STATUSES or order.paid_attempt_id is None:
        raise RefundError(f"Order {order.number} is {order.status}: there is no payment to refund.")
    left = order.total_amount - order.refunded_amount
    amount = ask.amount if ask.amount is not None else left
    if amount > left or left <= 0:
        raise RefundError(
            f"Only {money_string(left)} {order.currency} of order {order.number} is left to refund."
        )
    attempt = await session.get(CheckoutAttempt, order.paid_attempt_id)
    assert attempt is not None and attempt.transaction_id
    refund = Refund(
        order_id=order.id,
        attempt_id=attempt.id,
        amount=amount,
        currency=order.currency,
        reason=ask.reason[:255] or "refund",
        idempotency_key=ask.idempotency_key,
        sumup_transaction_id=attempt.transaction_id,
        requested_by="admin",
        of_order_payment=True,
    )
    session.add(refund)
    await session.flush()
    await session.refresh(refund)
    return refund


async def _pending_refund(session: AsyncSession, order_id: int) -> Refund | None:
    refund: Refund | None = await session.scalar(
        select(Refund)
        .where(Refund.order_id == order_id, Refund.status == "pending")
        .order_by(Refund.id)
        .limit(1)
    )
    return refund


async def refund_order(
    sessions: async_sessionmaker[AsyncSession], ask: RefundAsk, context: CheckoutContext
) -> Refund:
    """Refund (part of) an order's payment for the admin; the same key answers the same.

    Waits its turn while another refund of the order is with SumUp, and first settles
    one whose worker went away. Commits its own short transactions around SumUp.
    """
    for _ in range(100):
        try:
            async with sessions() as session, session.begin():
                refund = await _reserve_admin_refund(session, ask)
        except RefundBusy:
            async with sessions() as session:
                pending = await _pending_refund(session, ask.order_id)
            if pending is not None:
                await drive_refund(sessions, pending.id, context)
            await asyncio.sleep(0.05)
            continue
        if refund.status == "pending":
            await drive_refund(sessions, refund.id, context, wait=True)
            async with sessions() as session:
                refund = (await session.scalars(select(Refund).where(Refund.id == refund.id))).one()
        return refund
    raise RefundBusy("Another refund of this order is in progress; try again shortly.")


async def _take_lease(
    session: AsyncSession, refund_id: int, context: CheckoutContext
) -> Refund | None:
    """The refund, if this caller may work it now (no one else holds a live lease)."""
    taken = await session.scalar(
        update(Refund)
        .where(
            Refund.id == refund_id,
            Refund.status == "pending",
            (Refund.lease_until.is_(None)) | (Refund.lease_until < func.now()),
        )
        .values(lease_until=func.now() + _lease(context), updated_at=func.now())
        .returning(Refund.id)
    )
    if taken is None:
        return None
    refund: Refund = (
        await session.scalars(
            select(Refund).where(Refund.id == refund_id).execution_options(populate_existing=True)
        )
    ).one()
    return refund


async def drive_refund(
    sessions: async_sessionmaker[AsyncSession],
    refund_id: int,
    context: CheckoutContext,
    *,
    wait: bool = False,
) -> None:
    """Send a pending refund to SumUp and settle it, if no one else is working it; it
    stays pending when SumUp cannot say (the sweep comes back to it). With `wait`, a
    refund someone else is working is waited for (a racing request with the same key)."""
    for _ in range(400 if wait else 1):
        async with sessions() as session, session.begin():
            refund = await _take_lease(session, refund_id, context)
            if refund is None:
                status = await session.scalar(select(Refund.status).where(Refund.id == refund_id))
                if status != "pending":
                    return
        if refund is not None:
            await _send_and_settle(sessions, refund, context)
            return
        if not wait:
            return
        await asyncio.sleep(0.05)


async def _send_and_settle(
    sessions: async_sessionmaker[AsyncSession], refund: Refund, context: CheckoutContext
) -> None:
    async with sessions() as session:
        account = await account_for_merchant(
            session, context.settings, await _merchant(session, refund)
        )
        earlier = await _succeeded_on_transaction(session, refund)
    try:
        landed = await refunded_so_far(context.clients, account, refund.sumup_transaction_id)
    except SumUpUnavailable:
        await _release(sessions, refund)
        return
    except SumUpNotFound:
        await _settle(sessions, refund, succeeded=False, error="SumUp has no such transaction")
        return
    if landed >= earlier + refund.amount:
        # An earlier try of this refund reached SumUp though its answer was lost.
        await _settle(sessions, refund, succeeded=True)
        return
    try:
        await refund_transaction(
            context.clients, account, refund.sumup_transaction_id, refund.amount
        )
    except SumUpUnavailable:
        try:
            landed = await refunded_so_far(context.clients, account, refund.sumup_transaction_id)
        except SumUpUnavailable:
            landed = Decimal("-1")  # still unknown
        if landed >= earlier + refund.amount:
            await _settle(sessions, refund, succeeded=True)
        else:
            # Pending: the next worker reads the refunded amount back before sending it
            # again, so letting go of the lease now cannot refund twice.
            await _release(sessions, refund)
        return
    except (SumUpRefused, SumUpNotFound) as error:
        await _settle(sessions, refund, succeeded=False, error=error.message)
        return
    except Exception:
        log.exception("refund %s: SumUp refund failed unexpectedly", refund.id)
        await _release(sessions, refund)
        return
    await _settle(sessions, refund, succeeded=True)


async def _release(sessions: async_sessionmaker[AsyncSession], refund: Refund) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            update(Refund)
            .where(Refund.id == refund.id, Refund.status == "pending")
            .values(lease_until=None, updated_at=func.now())
        )


async def _merchant(session: AsyncSession, refund: Refund) -> str:
    merchant: str = (
        await session.scalars(
            select(CheckoutAttempt.merchant_code).where(CheckoutAttempt.id == refund.attempt_id)
        )
    ).one()
    return merchant


async def _succeeded_on_transaction(session: AsyncSession, refund: Refund) -> Decimal:
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.sumup_transaction_id == refund.sumup_transaction_id,
            Refund.status == "succeeded",
        )
    )
    return Decimal(total or 0)


async def _settle(
    sessions: async_sessionmaker[AsyncSession],
    refund: Refund,
    *,
    succeeded: bool,
    error: str | None = None,
) -> None:
    async with sessions() as session, session.begin():
        order = await load_order(session, refund.order_id, for_update=True)
        won = await session.scalar(
            update(Refund)
            .where(Refund.id == refund.id, Refund.status == "pending")
            .values(
                status="succeeded" if succeeded else "failed",
                error=error,
                lease_until=None,
                settled_at=func.now(),
                updated_at=func.now(),
            )
            .returning(Refund.id)
        )
        if won is None:
            return
        if not succeeded:
            log.error(
                "refund %s of order %s failed at SumUp: %s",
                refund.id,
                order.number,
                error,
                extra={"order_id": order.id, "refund_id": refund.id, "event": "refund.failed"},
            )
            return
        refunded_total = await _refunded_total(session, order.id)
        fields = {
            "amount": money_string(refund.amount),
            "refunded_total": money_string(refunded_total),
        }
        if refund.of_order_payment:
            left = order.total_amount - order.refunded_amount - refund.amount
            await move_order(
                session,
                order,
                "refunded" if left <= 0 else "partially_refunded",
                cause="refund",
                values={"refunded_amount": Order.refunded_amount + refund.amount},
                event_fields=fields,
                detail=refund.reason,
            )
        else:
            await record_refund_event(session, order, fields, reason=refund.reason)


async def _refunded_total(session: AsyncSession, order_id: int) -> Decimal:
    total = await session.scalar(
        select(func.coalesce(func.sum(Refund.amount), 0)).where(
            Refund.order_id == order_id, Refund.status == "succeeded"
        )
    )
    return Decimal(total or 0)


async def settle_pending_refunds(
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    *,
    order_id: int | None = None,
    limit: int = 50,
) -> int:
    """Work the pending refunds nobody holds (new surplus refunds, lost answers)."""
    async with sessions() as session:
        query = (
            select(Refund.id)
            .where(
                Refund.status == "pending",
                (Refund.lease_until.is_(None)) | (Refund.lease_until < func.now()),
            )
            .order_by(Refund.id)
            .limit(limit)
        )
        if order_id is not None:
            query = query.where(Refund.order_id == order_id)
        ids = list(await session.scalars(query))
    for refund_id in ids:
        await drive_refund(sessions, refund_id, context)
    return len(ids)


async def refunds_of_order(session: AsyncSession, order_id: int) -> list[Refund]:
    """An order's refunds, oldest first."""
    return list(
        await session.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id))
    )
