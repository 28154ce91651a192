"""SumUp checkouts of an order, each followed from its creation to its end.

An attempt is claimed in our database (with a reference nobody else can have) before
SumUp hears of it, created at SumUp outside any transaction, and then settled by
what SumUp says: PAID, FAILED (the payer may still retry), EXPIRED, or retired by us
(`DELETE`) once its order no longer wants it. Whatever SumUp answers is verified
against the attempt (id, reference, merchant, amount, currency) before it counts,
also for a checkout found by reference after a lost answer.

Money that lands on an attempt whose order cannot take it (superseded, cancelled,
expired with its bookings gone, or paid already through another attempt) is kept on
the attempt as a surplus and refunded (refunds.py), never lost and never kept twice.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.order_queries import load_order
from bp.cart.services.order_states import move_order
from bp.cart.services.refunds import reserve_surplus_refund
from bp.cart.services.webhook_tokens import webhook_token
from config import Settings
from models import CheckoutAttempt, Order
from services.errors import PaymentProviderError
from services.metrics import STATUS_MISMATCHES
from services.order_lifecycle import reclaim_entries_for_order
from services.sumup import (
    NewCheckout,
    SumUpAccount,
    SumUpClients,
    SumUpConflict,
    SumUpNotFound,
    SumUpUnavailable,
    account_for_merchant,
    create_checkout,
    deactivate_checkout,
    find_checkout,
    from_sumup_amount,
    get_checkout,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckoutContext:
    """What talking to SumUp needs besides the database."""

    settings: Settings
    clients: SumUpClients

    def webhook_url(self, order_id: int) -> str:
        token = webhook_token(self.settings.secret_key.reveal(), order_id)
        return f"{self.settings.public_url}/cart/checkout/webhook/{order_id}/?token={token}"

    def return_url(self, order_id: int) -> str:
        return f"{self.settings.public_url}/cart/checkout/return/{order_id}/"

    @property
    def lifetime(self) -> timedelta:
        return timedelta(minutes=self.settings.sumup.checkout_lifetime_minutes)

    @property
    def create_grace(self) -> timedelta:
        """How long a claimed attempt may wait for its creator's SumUp answer."""
        return timedelta(seconds=self.settings.sumup.timeout_seconds * 2 + 5)


def new_reference(account: SumUpAccount, order_id: int, number: int) -> str:
    """`<prefix>-<order>-<attempt>-<random>`: unique across environments and backups,
    and not guessable from the order id (SumUp allows 64 characters)."""
    return f"{account.checkout_prefix}-{order_id}-{number}-{secrets.token_hex(8)}"[:64]


async def load_attempt(
    session: AsyncSession, attempt_id: int, *, for_update: bool = False
) -> CheckoutAttempt:
    """An attempt, fresh from the database."""
    query = (
        select(CheckoutAttempt)
        .where(CheckoutAttempt.id == attempt_id)
        .execution_options(populate_existing=True)
    )
    if for_update:
        query = query.with_for_update()
    attempt: CheckoutAttempt = (await session.scalars(query)).one()
    return attempt


async def open_attempts(session: AsyncSession, order_id: int) -> list[CheckoutAttempt]:
    """The order's attempts SumUp may still take money on, newest first."""
    rows = await session.scalars(
        select(CheckoutAttempt)
        .where(CheckoutAttempt.order_id == order_id, CheckoutAttempt.settled_at.is_(None))
        .order_by(CheckoutAttempt.number.desc())
        .execution_options(populate_existing=True)
    )
    return list(rows)


async def add_attempt(
    session: AsyncSession, order: Order, account: SumUpAccount
) -> CheckoutAttempt:
    """A new attempt row for the order's total (the caller makes it current)."""
    number = (
        await session.scalar(
            select(func.coalesce(func.max(CheckoutAttempt.number), 0)).where(
                CheckoutAttempt.order_id == order.id
            )
        )
        or 0
    ) + 1
    attempt = CheckoutAttempt(
        order_id=order.id,
        number=number,
        reference=new_reference(account, order.id, number),
        merchant_code=account.merchant_code,
        amount=order.total_amount,
        currency=order.currency,
    )
    session.add(attempt)
    await session.flush()
    return attempt


# --- talking to SumUp about one attempt ----------------------------------------------


def mismatches(attempt: CheckoutAttempt, checkout: Any, *, check_id: bool = True) -> list[str]:
    """Fields where SumUp's checkout disagrees with our attempt (empty when it matches)."""
    expected = {
        "checkout_reference": attempt.reference,
        "merchant_code": attempt.merchant_code,
        "currency": attempt.currency,
    }
    if check_id:
        expected["id"] = attempt.sumup_checkout_id or ""
    wrong = [
        name
        for name, value in expected.items()
        if str(getattr(checkout, name, None) or "") != str(value or "")
    ]
    if from_sumup_amount(getattr(checkout, "amount", None)) != attempt.amount:
        wrong.append("amount")
    return wrong


def _log_mismatch(attempt: CheckoutAttempt, wrong: list[str], what: str) -> None:
    STATUS_MISMATCHES.inc()
    log.error(
        "order %s: SumUp %s does not match attempt %s (%s); not trusting it",
        attempt.order_id,
        what,
        attempt.reference,
        ", ".join(wrong),
        extra={"order_id": attempt.order_id, "attempt_id": attempt.id, "mismatch": wrong},
    )


async def account_of(
    session: AsyncSession, context: CheckoutContext, attempt: CheckoutAttempt
) -> SumUpAccount:
    return await account_for_merchant(session, context.settings, attempt.merchant_code)


async def create_or_recover(
    context: CheckoutContext, account: SumUpAccount, attempt: CheckoutAttempt, order: Order
) -> tuple[Any, str]:
    """Create the attempt's checkout; after a lost answer or a 409, find it by reference
    and verify it. Returns the checkout and how it was found ("created" / "recovered")."""
    wanted = NewCheckout(
        reference=attempt.reference,
        amount=attempt.amount,
        currency=attempt.currency,
        description=order.description,
        return_url=context.webhook_url(order.id),
        redirect_url=context.return_url(order.id),
    )
    try:
        return await create_checkout(context.clients, account, wanted), "created"
    except (SumUpUnavailable, SumUpConflict) as error:
        # The create may have landed although its answer was lost: look before retrying.
        found = await find_checkout(context.clients, account, attempt.reference)
        if found is None:
            if isinstance(error, SumUpUnavailable):
                raise
            raise SumUpUnavailable(error.message) from None
    wrong = mismatches(attempt, found, check_id=False)
    if wrong:
        _log_mismatch(attempt, wrong, "checkout found by reference")
        raise PaymentProviderError(
            "SumUp gave us a payment we cannot match to your order. Nothing was charged; "
            "please try again or contact us.",
            status_code=502,
        )
    return found, "recovered"


async def record_created(
    session: AsyncSession, attempt: CheckoutAttempt, checkout: Any, origin: str
) -> bool:
    """Store SumUp's id and page on the attempt; False if another request did first.

    The attempt is open again if it had been given up as never created: SumUp has it,
    so it is followed (and retired) like any other."""
    stored = await session.scalar(
        update(CheckoutAttempt)
        .where(CheckoutAttempt.id == attempt.id, CheckoutAttempt.sumup_checkout_id.is_(None))
        .values(
            sumup_checkout_id=checkout.id,
            hosted_url=getattr(checkout, "hosted_checkout_url", None),
            sumup_status=str(checkout.status or "PENDING"),
            origin=origin,
            settled_at=None,
            retired_at=None,
        )
        .returning(CheckoutAttempt.id)
    )
    return stored is not None


@dataclass(frozen=True)
class AttemptCheck:
    """What one look at SumUp found for an attempt."""

    sumup_status: str | None
    paid_now: bool = False


async def check_attempt(
    session: AsyncSession, attempt: CheckoutAttempt, context: CheckoutContext
) -> AttemptCheck:
    """Ask SumUp about one attempt, verify the answer and apply it (in the caller's
    transaction). An attempt SumUp never heard of is looked up by its reference.

    Locks the order first (the lock order everywhere is: order, then its attempts), so
    one caller at a time applies news about an order."""
    await load_order(session, attempt.order_id, for_update=True)
    attempt = await load_attempt(session, attempt.id)
    if attempt.settled_at is not None and attempt.sumup_status == "PAID":
        return AttemptCheck("PAID")
    account = await account_of(session, context, attempt)
    if attempt.sumup_checkout_id is None:
        found = await find_checkout(context.clients, account, attempt.reference)
        await mark_checked(session, attempt)
        if found is None:
            return AttemptCheck(None)
        wrong = mismatches(attempt, found, check_id=False)
        if wrong:
            _log_mismatch(attempt, wrong, "checkout found by reference")
            return AttemptCheck(None)
        await record_created(session, attempt, found, "recovered")
        attempt = await load_attempt(session, attempt.id)
        checkout = found
    else:
        try:
            checkout = await get_checkout(context.clients, account, attempt.sumup_checkout_id)
        except SumUpNotFound:
            log.error("order %s: SumUp has no checkout %s", attempt.order_id, attempt.reference)
            await mark_checked(session, attempt)
            return AttemptCheck(None)
    wrong = mismatches(attempt, checkout)
    if wrong:
        _log_mismatch(attempt, wrong, f"checkout {attempt.sumup_checkout_id}")
        await mark_checked(session, attempt)
        return AttemptCheck(None)
    return await apply_sumup_status(session, attempt, checkout, context.settings)


async def mark_checked(session: AsyncSession, attempt: CheckoutAttempt) -> None:
    """The attempt was looked at now (the sweep takes the least recently checked first)."""
    await session.execute(
        update(CheckoutAttempt)
        .where(CheckoutAttempt.id == attempt.id)
        .values(checked_at=func.now())
    )


async def apply_sumup_status(
    session: AsyncSession, attempt: CheckoutAttempt, checkout: Any, settings: Settings
) -> AttemptCheck:
    """Record a verified SumUp status on the attempt and move its order accordingly."""
    status = str(checkout.status)
    if status == "PAID":
        paid_now = await _record_payment(session, attempt, checkout, settings)
        return AttemptCheck(status, paid_now=paid_now)
    final = status == "EXPIRED"
    changed = await session.scalar(
        update(CheckoutAttempt)
        .where(
            CheckoutAttempt.id == attempt.id,
            CheckoutAttempt.sumup_status.is_distinct_from("PAID"),
        )
        .values(
            sumup_status=status,
            checked_at=func.now(),
            settled_at=func.coalesce(CheckoutAttempt.settled_at, func.now())
            if final
            else CheckoutAttempt.settled_at,
        )
        .returning(CheckoutAttempt.id)
    )
    if changed is None:
        return AttemptCheck("PAID")
    order = await load_order(session, attempt.order_id)
    if order.current_attempt_id != attempt.id:
        return AttemptCheck(status)  # an older attempt's news does not move the order
    if status == "FAILED" and order.status == "pending":
        await move_order(session, order, "failed", cause="payment_failed", attempt=attempt)
    elif status == "EXPIRED" and order.status in ("pending", "failed"):
        await move_order(session, order, "expired", cause="checkout_expired", attempt=attempt)
    return AttemptCheck(status)


def _paid_transaction(checkout: Any) -> tuple[str | None, str | None]:
    """(transaction id, code) of a PAID checkout: the id is what a refund needs."""
    transaction_id = getattr(checkout, "transaction_id", None)
    code = getattr(checkout, "transaction_code", None)
    for transaction in getattr(checkout, "transactions", None) or []:
        kept = str(getattr(transaction, "status", "")) in ("SUCCESSFUL", "REFUNDED")
        if kept and transaction_id in (None, str(transaction.id)):
            return str(transaction.id), transaction.transaction_code
    return transaction_id, code


async def _record_payment(
    session: AsyncSession, attempt: CheckoutAttempt, checkout: Any, settings: Settings
) -> bool:
    """A verified PAID: exactly one caller records it; the order takes the money, or
    the money is a surplus to refund. True for the caller that recorded it."""
    transaction_id, code = _paid_transaction(checkout)
    won = await session.scalar(
        update(CheckoutAttempt)
        .where(
            CheckoutAttempt.id == attempt.id,
            CheckoutAttempt.sumup_status.is_distinct_from("PAID"),
        )
        .values(
            sumup_status="PAID",
            transaction_id=transaction_id,
            transaction_code=code,
            checked_at=func.now(),
            settled_at=func.coalesce(CheckoutAttempt.settled_at, func.now()),
        )
        .returning(CheckoutAttempt.id)
    )
    if won is None:
        return False
    attempt = await load_attempt(session, attempt.id)
    for _ in range(5):  # a racing change of the order makes us read it again
        order = await load_order(session, attempt.order_id, for_update=True)
        surplus = await _why_order_cannot_take(session, order)
        if surplus is not None:
            await _keep_as_surplus(session, order, attempt, surplus, settings)
            return True
        moved = await move_order(
            session,
            order,
            "paid",
            cause="payment",
            attempt=attempt,
            values={
                "paid_attempt_id": attempt.id,
                "sumup_transaction_id": transaction_id,
                "sumup_transaction_code": code,
            },
        )
        if moved is not None:
            return True
    raise RuntimeError(f"order {attempt.order_id}: could not record payment {attempt.reference}")


async def _why_order_cannot_take(session: AsyncSession, order: Order) -> str | None:
    if order.status in ("pending", "failed"):
        return None
    if order.status == "expired":
        # A payment may land after our own expiry: kept if the bookings are still free.
        if await reclaim_entries_for_order(session, order_id=order.id):
            return None
        return "order expired and its bookings were taken"
    if order.status == "cancelled":
        return "order was cancelled"
    return "order was already paid"


async def _keep_as_surplus(
    session: AsyncSession,
    order: Order,
    attempt: CheckoutAttempt,
    reason: str,
    settings: Settings,
) -> None:
    await session.execute(
        update(CheckoutAttempt)
        .where(CheckoutAttempt.id == attempt.id)
        .values(surplus_reason=reason)
    )
    log.error(
        "order %s: payment %s landed but the %s; %s",
        order.number,
        attempt.reference,
        reason,
        "refunding it" if settings.orders.auto_refund else "auto refunds are off: refund by hand",
        extra={"order_id": order.id, "attempt_id": attempt.id, "event": "payment.surplus"},
    )
    if settings.orders.auto_refund:
        await reserve_surplus_refund(session, order, attempt, reason=reason)


async def retire_attempt(
    session: AsyncSession, attempt: CheckoutAttempt, context: CheckoutContext
) -> AttemptCheck:
    """End an open attempt at SumUp (`DELETE`). A 409 means SumUp processed it: the
    payment (or expiry) is found and applied, never lost."""
    await load_order(session, attempt.order_id, for_update=True)
    attempt = await load_attempt(session, attempt.id)
    if attempt.settled_at is not None:
        return AttemptCheck(attempt.sumup_status)
    if attempt.sumup_checkout_id is None:
        # Never created, or created with its answer lost: find out which first.
        found = await check_attempt(session, attempt, context)
        attempt = await load_attempt(session, attempt.id)
        if attempt.settled_at is not None or found.sumup_status == "PAID":
            return found
        if attempt.sumup_checkout_id is None:
            # Its create may still be on its way to SumUp: only once that is over can
            # "not found" mean "never made". Until then its creator or the sweep retires it.
            if datetime.now(UTC) - attempt.created_at > context.create_grace:
                await _settle_retired(session, attempt)
            return AttemptCheck(None)
    account = await account_of(session, context, attempt)
    assert attempt.sumup_checkout_id is not None
    try:
        await deactivate_checkout(context.clients, account, attempt.sumup_checkout_id)
    except SumUpConflict:
        return await check_attempt(session, attempt, context)
    except SumUpNotFound:
        log.error("order %s: SumUp has no checkout %s", attempt.order_id, attempt.reference)
    await _settle_retired(session, attempt)
    return AttemptCheck("EXPIRED")


async def _settle_retired(session: AsyncSession, attempt: CheckoutAttempt) -> None:
    await session.execute(
        update(CheckoutAttempt)
        .where(CheckoutAttempt.id == attempt.id, CheckoutAttempt.settled_at.is_(None))
        .values(
            sumup_status=func.coalesce(CheckoutAttempt.sumup_status, "EXPIRED"),
            retired_at=func.now(),
            settled_at=func.now(),
            checked_at=func.now(),
        )
    )


async def retire_open_attempts(
    session: AsyncSession, order_id: int, context: CheckoutContext, *, keep: int | None = None
) -> bool:
    """Retire every open attempt of an order but `keep`; True if one turned out PAID."""
    paid = False
    for attempt in await open_attempts(session, order_id):
        if attempt.id != keep:
            paid |= (await retire_attempt(session, attempt, context)).sumup_status == "PAID"
    return paid
