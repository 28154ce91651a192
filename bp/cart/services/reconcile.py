"""The reconcile sweep: every SumUp checkout followed to its end, whatever its order.

It walks checkout attempts that are not final, least recently checked first, and
asks SumUp about each: a lost webhook is found within a sweep or two, also for an
order that was cancelled or superseded meanwhile (its money is then refunded). An
attempt whose order no longer wants it, or that outlived SumUp's checkout lifetime,
is retired (`DELETE`). Then it expires orders left unpaid too long (retiring their
checkouts first, so a payment landing that moment wins) and works pending refunds.
Each attempt and order is handled in its own short transaction under `FOR UPDATE
SKIP LOCKED`, so several instances can sweep at once, and a run is bounded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bp.cart.services.cancel_order import expire_order
from bp.cart.services.checkout_attempts import (
    AttemptCheck,
    CheckoutContext,
    check_attempt,
    mark_checked,
    retire_attempt,
    retire_open_attempts,
)
from bp.cart.services.order_queries import load_order
from bp.cart.services.order_states import move_order
from bp.cart.services.refunds import settle_pending_refunds
from models import CheckoutAttempt, Order
from services.errors import PaymentProviderError

log = logging.getLogger(__name__)

# An attempt checked this recently is left alone, by this sweep and by any other.
RECHECK_SPACING = timedelta(seconds=30)


@dataclass
class ReconcileReport:
    checked: int = 0
    paid: int = 0
    failed: int = 0
    expired: int = 0
    retired: int = 0
    refunds: int = 0
    errors: int = 0
    order_ids: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"checked {self.checked}, paid {self.paid}, failed {self.failed}, "
            f"expired {self.expired}, retired {self.retired}, refunds {self.refunds}, "
            f"errors {self.errors}"
        )


async def _next_attempt(session: AsyncSession, context: CheckoutContext) -> CheckoutAttempt | None:
    # Locks the order, not the attempt: everywhere the order is locked before its
    # attempts, and a sweep skips an order another caller is working on.
    attempt: CheckoutAttempt | None = await session.scalar(
        select(CheckoutAttempt)
        .join(Order, Order.id == CheckoutAttempt.order_id)
        .where(
            CheckoutAttempt.settled_at.is_(None),
            or_(
                CheckoutAttempt.checked_at.is_(None),
                CheckoutAttempt.checked_at < func.now() - RECHECK_SPACING,
            ),
            or_(
                CheckoutAttempt.sumup_checkout_id.is_not(None),
                CheckoutAttempt.created_at < func.now() - context.create_grace,
            ),
        )
        .order_by(CheckoutAttempt.checked_at.asc().nulls_first(), CheckoutAttempt.id)
        .limit(1)
        .with_for_update(skip_locked=True, of=Order)
    )
    return attempt


async def _done_meanwhile(session: AsyncSession, attempt: CheckoutAttempt) -> bool:
    """Whether a racing sweep checked the attempt between this one's read and its lock.

    The sweep locks the order, not the attempt, and the row it read may be older than
    that lock: read the attempt again now that the order is ours.
    """
    fresh = await session.scalar(
        select(CheckoutAttempt.id).where(
            CheckoutAttempt.id == attempt.id,
            CheckoutAttempt.settled_at.is_(None),
            or_(
                CheckoutAttempt.checked_at.is_(None),
                CheckoutAttempt.checked_at < func.now() - RECHECK_SPACING,
            ),
        )
    )
    return fresh is None


def _should_retire(order: Order, attempt: CheckoutAttempt, context: CheckoutContext) -> bool:
    if order.is_final or order.current_attempt_id != attempt.id:
        return True
    return datetime.now(UTC) - attempt.created_at > context.lifetime


async def _sweep_one_attempt(
    sessions: async_sessionmaker[AsyncSession], context: CheckoutContext, report: ReconcileReport
) -> bool:
    async with sessions() as session, session.begin():
        attempt = await _next_attempt(session, context)
        if attempt is None:
            return False
        if await _done_meanwhile(session, attempt):
            return True  # another sweep checked it while this one waited for the order
        report.checked += 1
        report.order_ids.append(attempt.order_id)
        order = await load_order(session, attempt.order_id)
        try:
            if _should_retire(order, attempt, context):
                found: AttemptCheck = await retire_attempt(session, attempt, context)
                report.retired += found.sumup_status != "PAID"
                if found.sumup_status != "PAID":
                    report.expired += await _expire_if_its_checkout_ended(session, attempt)
            else:
                found = await check_attempt(session, attempt, context)
        except PaymentProviderError:
            report.errors += 1
            await mark_checked(session, attempt)
            return True
        report.paid += found.paid_now
        report.failed += found.sumup_status == "FAILED"
    return True


async def _expire_if_its_checkout_ended(session: AsyncSession, attempt: CheckoutAttempt) -> bool:
    """An unpaid order whose current checkout outlived SumUp's lifetime expires with it,
    so its bookings go back to the cart now, not at the unpaid-order expiry."""
    order = await load_order(session, attempt.order_id, for_update=True)
    if order.current_attempt_id != attempt.id or order.status not in ("pending", "failed"):
        return False
    moved = await move_order(session, order, "expired", cause="checkout_expired", attempt=attempt)
    return moved is not None


async def _next_to_expire(
    session: AsyncSession, *, older_than: timedelta, skip: set[int]
) -> Order | None:
    query = (
        select(Order)
        .where(
            func.coalesce(Order.checkout_started_at, Order.created_at) < func.now() - older_than,
            Order.status.in_(("pending", "failed")),
        )
        .order_by(Order.created_at, Order.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if skip:
        query = query.where(Order.id.not_in(skip))
    order: Order | None = await session.scalar(query)
    return order


async def _expire_one(
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    report: ReconcileReport,
    *,
    older_than: timedelta,
    seen: set[int],
) -> bool:
    async with sessions() as session, session.begin():
        order = await _next_to_expire(session, older_than=older_than, skip=seen)
        if order is None:
            return False
        seen.add(order.id)
        try:
            if await retire_open_attempts(session, order.id, context):
                report.paid += 1
                return True
        except PaymentProviderError:
            report.errors += 1  # SumUp down: nothing is expired that might be paid
            return True
        if await expire_order(session, order, reason=f"unpaid for more than {older_than}"):
            report.expired += 1
    return True


async def reconcile_orders(
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    *,
    batch_size: int,
    expire_after: timedelta,
) -> ReconcileReport:
    """One bounded sweep: up to `batch_size` attempts, expiries and refunds each."""
    report = ReconcileReport()
    for _ in range(batch_size):
        if not await _sweep_one_attempt(sessions, context, report):
            break
    seen: set[int] = set()
    for _ in range(batch_size):
        if not await _expire_one(sessions, context, report, older_than=expire_after, seen=seen):
            break
    report.refunds = await settle_pending_refunds(sessions, context, limit=batch_size)
    if report.checked or report.expired or report.errors or report.refunds:
        log.info("reconcile: %s", report, extra={"event": "reconcile.run"})
    return report
