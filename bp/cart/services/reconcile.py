"""The reconcile sweep: the backstop for lost webhooks and abandoned payments.

It re-checks unpaid orders that have a SumUp checkout (oldest first) and expires
orders left unpaid past the configured age. Each order is handled in its own short
transaction under `FOR UPDATE SKIP LOCKED`, so several instances can sweep at once
without doing an order twice, and the work per run is bounded by the batch size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from quart import Quart
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bp.cart.services.cancel_order import expire_or_cancel, settle_with_sumup_first
from bp.cart.services.check_sumup_status import check_sumup_status
from bp.cart.services.checkout import CheckoutContext
from bp.cart.services.order_queries import load_order
from models import CalendarEntry, Order
from services.errors import PaymentProviderError

log = logging.getLogger(__name__)

# An order checked this recently is left alone, by this sweep and by any other.
RECHECK_SPACING = timedelta(seconds=30)


@dataclass
class ReconcileReport:
    checked: int = 0
    paid: int = 0
    failed: int = 0
    expired: int = 0
    errors: int = 0
    order_ids: list[int] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"checked {self.checked}, paid {self.paid}, failed {self.failed}, "
            f"expired {self.expired}, errors {self.errors}"
        )


async def _next_to_recheck(session: AsyncSession) -> int | None:
    return await session.scalar(
        select(Order.id)
        .where(
            Order.status.in_(("pending", "failed")),
            Order.sumup_checkout_id.is_not(None),
            or_(
                Order.last_checked_at.is_(None),
                Order.last_checked_at < func.now() - RECHECK_SPACING,
            ),
        )
        .order_by(Order.created_at, Order.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )


async def _recheck_one(
    sessions: async_sessionmaker[AsyncSession], context: CheckoutContext, report: ReconcileReport
) -> bool:
    async with sessions() as session, session.begin():
        order_id = await _next_to_recheck(session)
        if order_id is None:
            return False
        await session.execute(
            update(Order).where(Order.id == order_id).values(last_checked_at=func.now())
        )
        report.checked += 1
        report.order_ids.append(order_id)
        try:
            order = await check_sumup_status(session, order_id, context=context)
        except PaymentProviderError:
            report.errors += 1
            return True
        report.paid += order.status == "paid"
        report.failed += order.status == "failed"
    return True


async def _next_to_expire(
    session: AsyncSession, *, older_than: timedelta, skip: set[int]
) -> Order | None:
    holds_entries = exists().where(
        CalendarEntry.order_id == Order.id, CalendarEntry.state == "ordered"
    )
    query = (
        select(Order)
        .where(
            func.coalesce(Order.checkout_started_at, Order.created_at) < func.now() - older_than,
            or_(
                Order.status.in_(("pending", "failed")),
                (Order.status == "expired") & holds_entries,
            ),
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
            order = await settle_with_sumup_first(
                session, await load_order(session, order.id), context
            )
        except PaymentProviderError:
            report.errors += 1
            return True
        if order.status == "paid":
            report.paid += 1
            return True
        if await expire_or_cancel(
            session,
            order,
            status="expired",
            event="order.expired",
            reason=f"unpaid for more than {older_than}",
        ):
            report.expired += 1
    return True


async def reconcile_orders(
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    *,
    batch_size: int,
    expire_after: timedelta,
) -> ReconcileReport:
    """One bounded sweep: re-check up to `batch_size` orders, expire up to as many."""
    report = ReconcileReport()
    for _ in range(batch_size):
        if not await _recheck_one(sessions, context, report):
            break
    seen: set[int] = set()
    for _ in range(batch_size):
        if not await _expire_one(sessions, context, report, older_than=expire_after, seen=seen):
            break
    if report.checked or report.expired or report.errors:
        log.info("reconcile: %s", report)
    return report


async def run_reconcile_in_app(app: Quart, stop: asyncio.Event) -> None:
    """The sweep as a background loop of the app, every `reconcile.interval_seconds`."""
    settings = app.config["SETTINGS"]
    context = CheckoutContext(settings, app.extensions["sumup"])
    while not stop.is_set():
        try:
            await reconcile_orders(
                app.extensions["db_sessionmaker"],
                context,
                batch_size=settings.reconcile.batch_size,
                expire_after=timedelta(minutes=settings.orders.unpaid_expiry_minutes),
            )
        except Exception:
            log.exception("reconcile sweep failed; trying again next time")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.reconcile.interval_seconds)
