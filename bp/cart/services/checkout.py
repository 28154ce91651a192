"""Turning a cart into an order (the SumUp side is hosted_checkout.py).

`create_order_from_cart` runs in the caller's transaction under the owner's lock:
it prices the live lines now, freezes them into `order_items`, claims the entries
and writes `order.created` to the outbox. A repeated submit (same idempotency key)
or a second checkout of an unchanged cart returns the same unpaid order; a changed
cart supersedes the old unpaid order (failed and expired ones too), so at most one
live order holds a cart line or a booking. The superseded order's SumUp checkouts
are retired after the commit (never inside this transaction, which holds the cart).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

from sqlalchemy import or_, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.calendar_cart import CartEntry, get_cart_entries
from bp.cart.services.get_cart import CartLine, PageRef, get_cart_lines
from bp.cart.services.identity import Identity, lock_identity
from bp.cart.services.order_queries import load_order
from bp.cart.services.order_states import UNPAID, move_order, record_created
from bp.cart.services.total import sum_amounts
from config import Settings
from models import CheckoutKey, Order, OrderItem
from services.errors import CartError, CheckoutError
from services.formatting import format_money
from services.metrics import ORDERS_CREATED
from services.order_lifecycle import claim_entries_for_order
from services.sumup import account_for_pages

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
            Order.status.in_(UNPAID),
            _overlapping_scope(page_id),  # type: ignore[arg-type]
        )
        .order_by(Order.id.desc())
        .with_for_update()
    )
    return list(rows)


async def supersede_order(session: AsyncSession, order: Order) -> None:
    """Cancel an unpaid order the shopper has replaced; its entries go back to the cart.

    Its open SumUp checkouts are retired after the commit; should the shopper pay one
    first, that payment is refunded as a surplus.
    """
    for _ in range(3):
        if await move_order(session, order, "cancelled", cause="superseded") is not None:
            return
        order = await load_order(session, order.id, for_update=True)
        if order.status not in UNPAID:
            return


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
    # The total the shopper saw on the cart page; a checkout never charges another.
    shown_total: Decimal | None = None


@dataclass
class CheckoutResult:
    order: Order
    superseded: list[int] = field(default_factory=list)


async def create_order_from_cart(
    session: AsyncSession, request: CheckoutRequest, *, settings: Settings
) -> CheckoutResult:
    """The unpaid order for the owner's cart (or one page of it), created if need be."""
    identity, page_id = request.identity, request.page.id if request.page else None
    await lock_identity(session, identity)
    if request.idempotency_key:
        existing = await session.scalar(
            select(Order)
            .join(CheckoutKey, CheckoutKey.order_id == Order.id)
            .where(CheckoutKey.key == request.idempotency_key)
        )
        if existing is not None and not _owned_by(existing, identity):
            raise CheckoutError("This checkout form is not yours; please reload your cart.")
        if existing is not None and existing.page_post_id == page_id:
            return CheckoutResult(await load_order(session, existing.id))
        if existing is not None:
            # One cart form carries the whole cart's and each page's checkout button, with
            # one key: it names the checkout it first made, never another part's.
            request = replace(request, idempotency_key=None)

    unpaid = await _unpaid_orders(session, identity, page_id)
    lines = await get_cart_lines(session, identity, page_id=page_id, for_update=True)
    same_scope = next((o for o in unpaid if o.page_post_id == page_id), None)
    if same_scope is not None:
        in_cart = await get_cart_entries(session, identity, page_id=page_id)
        fingerprint = cart_fingerprint(lines, [e.id for e in in_cart], page_id)
        if fingerprint == same_scope.cart_fingerprint:
            _check_shown_total(request, same_scope.total_amount, same_scope.currency)
            await _remember_key(session, request, same_scope.id)
            return CheckoutResult(await load_order(session, same_scope.id))
    for order in unpaid:
        await supersede_order(session, order)

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
    _check_shown_total(request, totals.amount, totals.currency)
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
    await _remember_key(session, request, order.id)
    await record_created(session, order, entry_ids=claimed)
    ORDERS_CREATED.inc()
    return CheckoutResult(order, superseded=[o.id for o in unpaid])


async def _remember_key(session: AsyncSession, request: CheckoutRequest, order_id: int) -> None:
    """The form's key now leads to this order: sent again, it answers with it."""
    if request.idempotency_key:
        await session.execute(
            insert(CheckoutKey)
            .values(key=request.idempotency_key, order_id=order_id)
            .on_conflict_do_nothing(index_elements=["key"])
        )


def _check_shown_total(request: CheckoutRequest, amount: Decimal, currency: str) -> None:
    """Refuse to charge anything but the total the cart page showed."""
    if request.shown_total is not None and request.shown_total != amount:
        raise CheckoutError(
            f"Your cart changed since the page was shown: it now comes to "
            f"{format_money(amount, currency)}. Please check your cart and pay again."
        )


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
