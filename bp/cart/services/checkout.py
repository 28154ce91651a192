"""Turning a cart into an order, and an order into a SumUp hosted checkout.

`create_order_from_cart` runs in the caller's transaction under the owner's lock:
it prices the live lines now, freezes them into `order_items`, claims the pending
entries and writes `order.created` to the outbox. A repeated submit (same
idempotency key) or a second checkout of an unchanged cart returns the same unpaid
order; a changed cart supersedes the old unpaid order, so there are never two.

`start_hosted_checkout` runs after that commit and outside any lock: it claims a
checkout attempt with a conditional update (so racing requests create one SumUp
checkout, not ten), calls SumUp, and recovers a timeout by looking the checkout up
by its reference instead of creating another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sumup._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    ConflictError,
    NotFoundError,
)

from bp.cart.services.calendar_cart import CartEntry, get_cart_entries
from bp.cart.services.get_cart import CartLine, PageRef, get_cart_lines
from bp.cart.services.identity import Identity, lock_identity
from bp.cart.services.order_queries import load_order
from bp.cart.services.total import sum_amounts
from config import Settings
from models import CalendarEntry, Order, OrderItem
from services.errors import CartError, CheckoutError, PaymentProviderError
from services.events import emit_event, order_event_payload
from services.metrics import ORDERS_CREATED, SUMUP_CALLS
from services.order_lifecycle import claim_entries_for_order, release_entries_for_order
from services.sumup import (
    SumUpAccount,
    SumUpClients,
    account_for_merchant,
    account_for_pages,
    to_sumup_amount,
)

log = logging.getLogger(__name__)


# --- order creation ------------------------------------------------------------------


def cart_fingerprint(
    lines: Sequence[CartLine], entry_ids: Sequence[int], page_id: int | None
) -> str:
    """A hash of what is being bought, to recognise an unchanged cart."""
    content = {
        "page": page_id,
        "lines": sorted(
            (line.product_id, line.market_place_id, line.quantity, str(line.unit_price))
            for line in lines
        ),
        "entries": sorted(entry_ids),
    }
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _overlapping_scope(page_id: int | None) -> object:
    """Unpaid orders that would buy some of the same things as a checkout of `page_id`."""
    if page_id is None:
        return True
    return or_(Order.page_post_id.is_(None), Order.page_post_id == page_id)


async def _unpaid_orders(
    session: AsyncSession, identity: Identity, page_id: int | None
) -> list[Order]:
    rows = await session.scalars(
        select(Order)
        .where(
            identity.owns(Order),
            Order.status.in_(("pending", "failed")),
            _overlapping_scope(page_id),  # type: ignore[arg-type]
        )
        .order_by(Order.id.desc())
        .with_for_update()
    )
    return list(rows)


async def _claimed_entry_ids(session: AsyncSession, order_id: int) -> list[int]:
    rows = await session.scalars(
        select(CalendarEntry.id).where(
            CalendarEntry.order_id == order_id, CalendarEntry.state == "ordered"
        )
    )
    return list(rows)


async def supersede_order(session: AsyncSession, order: Order, *, reason: str) -> None:
    """Cancel an unpaid order the shopper has replaced; its entries go back to the cart."""
    released = await release_entries_for_order(session, order_id=order.id)
    await session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(status="cancelled", cancelled_at=func.now(), updated_at=func.now())
    )
    order = await load_order(session, order.id)
    await emit_event(
        session,
        "order.cancelled",
        order_event_payload(order, entry_ids=released, reason=reason),
        aggregate=("order", order.id),
    )


def _check_buyable(lines: Sequence[CartLine], entries: Sequence[CartEntry]) -> None:
    if not lines and not entries:
        raise CheckoutError("Your cart is empty, so there is nothing to pay for yet.")
    gone = [line.title for line in lines if not line.available]
    if gone:
        raise CheckoutError(
            f"{', '.join(gone)} can no longer be bought. "
            "Please remove it from your cart and check out again."
        )


@dataclass(frozen=True)
class CheckoutRequest:
    identity: Identity
    page: PageRef | None
    idempotency_key: str | None


async def create_order_from_cart(
    session: AsyncSession, request: CheckoutRequest, *, settings: Settings
) -> Order:
    """The unpaid order for the owner's cart (or one page of it), created if need be."""
    identity, page_id = request.identity, request.page.id if request.page else None
    await lock_identity(session, identity)
    if request.idempotency_key:
        existing = await session.scalar(
            select(Order).where(Order.idempotency_key == request.idempotency_key)
        )
        if existing is not None:
            if not _owned_by(existing, identity):
                raise CheckoutError("This checkout form is not yours; please reload your cart.")
            return await load_order(session, existing.id)

    unpaid = await _unpaid_orders(session, identity, page_id)
    lines = await get_cart_lines(session, identity, page_id=page_id, for_update=True)
    same_scope = next((o for o in unpaid if o.page_post_id == page_id), None)
    if same_scope is not None:
        held = await _claimed_entry_ids(session, same_scope.id)
        pending = await get_cart_entries(session, identity, page_id=page_id)
        fingerprint = cart_fingerprint(lines, held + [e.id for e in pending], page_id)
        if fingerprint == same_scope.cart_fingerprint:
            return await load_order(session, same_scope.id)
    for order in unpaid:
        await supersede_order(session, order, reason="superseded by a new checkout")

    entries = await get_cart_entries(session, identity, page_id=page_id)
    _check_buyable(lines, entries)
    try:
        totals = sum_amounts(
            [(line.total, line.currency) for line in lines]
            + [(entry.cost, entry.currency) for entry in entries],
            default_currency=settings.cart.currency,
        )
    except CartError as error:
        raise CheckoutError(error.message) from None
    pages = {line.page.id for line in lines} | {entry.page.id for entry in entries}
    account = await account_for_pages(session, settings, page_ids=pages)
    entry_ids = [entry.id for entry in entries]
    order = Order(
        **identity.columns(),
        page_post_id=page_id,
        status="pending",
        currency=totals.currency,
        total_amount=totals.amount,
        description=_description(request.page, lines, entries),
        idempotency_key=request.idempotency_key,
        cart_fingerprint=cart_fingerprint(lines, entry_ids, page_id),
        sumup_merchant_code=account.merchant_code,
    )
    session.add(order)
    await session.flush()
    session.add_all(
        OrderItem(
            order_id=order.id,
            product_id=line.product_id,
            product_title=line.title,
            product_slug=line.product_slug,
            product_image=line.image,
            market_place_id=line.market_place_id,
            quantity=line.quantity,
            unit_price=line.unit_price,
            currency=line.currency,
            line_total=line.total,
        )
        for line in lines
    )
    claimed = await claim_entries_for_order(session, order_id=order.id, entry_ids=entry_ids)
    if claimed != sorted(entry_ids):
        raise CheckoutError("A booking in your cart changed just now; please try again.")
    await session.flush()
    order = await load_order(session, order.id)
    await emit_event(
        session,
        "order.created",
        order_event_payload(order, entry_ids=claimed),
        aggregate=("order", order.id),
    )
    ORDERS_CREATED.inc()
    return order


def _owned_by(order: Order, identity: Identity) -> bool:
    if identity.user_id is not None:
        return order.user_id == identity.user_id
    return order.user_id is None and order.session_id == identity.session_id


def _description(
    page: PageRef | None, lines: Sequence[CartLine], entries: Sequence[CartEntry]
) -> str:
    where = page.title if page else "Rose Ash"
    count = sum(line.quantity for line in lines) + len(entries)
    return f"{where}: {count} item{'s' if count != 1 else ''}"[:255]


# --- the hosted checkout -------------------------------------------------------------


def webhook_token(secret_key: str, order_id: int) -> str:
    """The HMAC of the order id that SumUp's webhook URL carries."""
    digest = hmac.new(secret_key.encode(), f"sumup-webhook:{order_id}".encode(), hashlib.sha256)
    return digest.hexdigest()[:40]


def webhook_token_is_valid(secret_key: str, order_id: int, token: str) -> bool:
    return hmac.compare_digest(webhook_token(secret_key, order_id), token or "")


def checkout_reference(account: SumUpAccount, order_id: int, attempt: int) -> str:
    """Unique per attempt: page prefix + order id + attempt (SumUp allows 64 chars)."""
    return f"{account.checkout_prefix}-{order_id}-{attempt}"[:64]


@dataclass(frozen=True)
class HostedCheckout:
    url: str | None
    paid: bool = False


@dataclass(frozen=True)
class CheckoutContext:
    """What starting a checkout needs besides the database."""

    settings: Settings
    clients: SumUpClients

    def webhook_url(self, order_id: int) -> str:
        token = webhook_token(self.settings.secret_key.reveal(), order_id)
        return f"{self.settings.public_url}/cart/checkout/webhook/{order_id}/?token={token}"

    def return_url(self, order_id: int) -> str:
        return f"{self.settings.public_url}/cart/checkout/return/{order_id}/"


def _provider_error(error: APIError, operation: str) -> PaymentProviderError:
    SUMUP_CALLS.labels(operation, type(error).__name__).inc()
    log.warning("SumUp %s failed: %s", operation, error)
    if isinstance(error, APIConnectionError):
        message = (
            "SumUp did not answer in time. Your order is saved and not paid; please try again."
        )
        return PaymentProviderError(message, status_code=504)
    if isinstance(error, APIStatusError) and error.status is not None and error.status >= 500:
        message = (
            "SumUp is having trouble right now. Your order is saved and not paid; please try again."
        )
        return PaymentProviderError(message, status_code=502)
    message = (
        "SumUp refused to start this payment. Your order is saved and not paid; "
        "please try again later or contact us."
    )
    return PaymentProviderError(message, status_code=502)


async def _claim_attempt(session: AsyncSession, order: Order, account: SumUpAccount) -> bool:
    """Take the next attempt number with a conditional update; False if another request did."""
    attempt = order.checkout_attempts + 1
    reference = checkout_reference(account, order.id, attempt)
    won = await session.scalar(
        update(Order)
        .where(
            Order.id == order.id,
            Order.checkout_attempts == order.checkout_attempts,
            Order.status.in_(("pending", "failed", "expired")),
        )
        .values(
            checkout_attempts=attempt,
            checkout_started_at=func.now(),
            sumup_reference=reference,
            sumup_checkout_id=None,
            sumup_hosted_url=None,
            sumup_status=None,
            status="pending",
            updated_at=func.now(),
        )
        .returning(Order.id)
    )
    return won is not None


async def _find_by_reference(client: object, reference: str) -> object | None:
    found = await client.checkouts.list(checkout_reference=reference)  # type: ignore[attr-defined]
    return found[0] if found else None


async def _create_or_recover(
    context: CheckoutContext, account: SumUpAccount, order: Order, reference: str
) -> object:
    """Create the SumUp checkout; after a timeout or a 409, find it by reference."""
    client = context.clients.for_account(account)
    try:
        checkout = await client.checkouts.create(
            checkout_reference=reference,
            amount=to_sumup_amount(order.total_amount),
            currency=order.currency,
            merchant_code=account.merchant_code,
            description=order.description,
            return_url=context.webhook_url(order.id),
            redirect_url=context.return_url(order.id),
            hosted_checkout={"enabled": True},
        )
        SUMUP_CALLS.labels("create", "ok").inc()
        return checkout
    except (APIConnectionError, ConflictError) as error:
        # The create may have landed even though the answer was lost: never create a
        # second checkout blindly, look this attempt's reference up first.
        log.warning("SumUp create for %s uncertain (%s); looking it up", reference, error)
        try:
            found = await _find_by_reference(client, reference)
        except APIError as lookup_error:
            raise _provider_error(lookup_error, "list") from None
        if found is None:
            raise _provider_error(error, "create") from None
        SUMUP_CALLS.labels("create", "recovered").inc()
        return found
    except APIError as error:
        raise _provider_error(error, "create") from None


async def retire_checkout(
    context: CheckoutContext, account: SumUpAccount, checkout_id: str
) -> bool:
    """Deactivate a checkout at SumUp; True when SumUp says it was already processed."""
    client = context.clients.for_account(account)
    try:
        await client.checkouts.deactivate(checkout_id)
        SUMUP_CALLS.labels("deactivate", "ok").inc()
    except ConflictError:
        return True
    except NotFoundError:
        return False
    except APIError as error:
        raise _provider_error(error, "deactivate") from None
    return False


async def _check_still_whole(session: AsyncSession, order: Order) -> None:
    """An expired order whose bookings went back to the cart cannot be paid as it was."""
    items_total = sum((item.line_total for item in order.items), Decimal("0.00"))
    held = await session.scalar(
        select(func.coalesce(func.sum(CalendarEntry.cost), 0)).where(
            CalendarEntry.order_id == order.id, CalendarEntry.state == "ordered"
        )
    )
    if items_total + Decimal(held or 0) != order.total_amount:
        raise CheckoutError(
            f"Order {order.number} expired and its bookings went back to your cart. "
            "Please check out your cart again."
        )


async def _reuse_or_retire(
    session: AsyncSession, order: Order, account: SumUpAccount, context: CheckoutContext
) -> HostedCheckout | None:
    """An open checkout is reused; a finished one is retired before a new attempt."""
    from bp.cart.services.check_sumup_status import check_sumup_status

    if order.sumup_status in (None, "PENDING") and order.sumup_hosted_url:
        order = await check_sumup_status(session, order.id, context=context)
        await session.commit()
        if order.status == "paid":
            return HostedCheckout(None, paid=True)
        if order.sumup_status == "PENDING" and order.sumup_hosted_url:
            return HostedCheckout(order.sumup_hosted_url)
    retire = order.sumup_status != "EXPIRED" and order.sumup_checkout_id
    if retire and await retire_checkout(context, account, retire):
        order = await check_sumup_status(session, order.id, context=context)
        await session.commit()
        if order.status == "paid":
            return HostedCheckout(None, paid=True)
    return None


async def start_hosted_checkout(
    sessions: async_sessionmaker[AsyncSession], order_id: int, context: CheckoutContext
) -> HostedCheckout:
    """The SumUp hosted page for an unpaid, committed order.

    An open checkout is reused; otherwise a new attempt is claimed with a conditional
    update and created under its own reference. Racing requests that find an attempt
    claimed but not yet created create it under the same reference: SumUp refuses the
    duplicate (409) and the loser looks it up, so one attempt is one checkout. This
    commits its own small transactions, because it runs around HTTP calls.
    """
    async with sessions() as session:
        order = await load_order(session, order_id)
        if order.status == "paid":
            return HostedCheckout(None, paid=True)
        if order.status == "cancelled":
            raise CheckoutError("This order was cancelled; please check out your cart again.")
        await _check_still_whole(session, order)
        account = await account_for_merchant(
            session, context.settings, order.sumup_merchant_code or ""
        )
        if order.sumup_checkout_id:
            reused = await _reuse_or_retire(session, order, account, context)
            if reused is not None:
                return reused
        if order.sumup_checkout_id or order.sumup_reference is None:
            await _claim_attempt(session, order, account)
            await session.commit()  # the attempt is claimed before SumUp hears of it
            order = await load_order(session, order_id)
        reference = order.sumup_reference
        if order.status == "paid":
            return HostedCheckout(None, paid=True)
        if reference is None or (order.sumup_checkout_id and order.sumup_hosted_url):
            if order.sumup_hosted_url:
                return HostedCheckout(order.sumup_hosted_url)
            raise PaymentProviderError(
                "Your payment is being set up. Please try again in a moment.", status_code=503
            )
    checkout = await _create_or_recover(context, account, order, reference)
    url = checkout.hosted_checkout_url  # type: ignore[attr-defined]
    async with sessions() as session, session.begin():
        await session.execute(
            update(Order)
            .where(
                Order.id == order_id,
                Order.sumup_reference == reference,
                Order.sumup_checkout_id.is_(None),
            )
            .values(
                sumup_checkout_id=checkout.id,  # type: ignore[attr-defined]
                sumup_hosted_url=url,
                sumup_status="PENDING",
                updated_at=func.now(),
            )
        )
    if not url:
        raise PaymentProviderError("SumUp did not give us a payment page; please try again.")
    return HostedCheckout(url)
