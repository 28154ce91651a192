"""One order: its page and the shopper's actions on it."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, flash, redirect, render_template, url_for

from bp.cart.forms import PlainForm
from bp.cart.responses import check_payment, checkout_context, current_identity, go_to_payment
from bp.cart.services.cancel_order import CancelOutcome, cancel_order
from bp.cart.services.order_queries import (
    get_order_for_owner,
    get_order_history,
    order_booking_rows,
)
from bp.cart.services.refunds import refunds_of_order
from services.csrf import bind_form
from services.db import db_session
from services.formatting import order_status_label
from services.order_lifecycle import get_entries_for_order
from services.rate_limits import rate_limited
from services.status_throttle import status_check_due
from services.templating import render_page

bp = Blueprint("order", __name__, url_prefix="/orders")


@bp.get("/<bigid:order_id>/")
async def detail(order_id: int) -> str:
    """An order's items, entries, totals and payment state (404 for anyone but its owner)."""
    db = db_session()
    order = await get_order_for_owner(db, current_identity(), order_id)
    entries = await get_entries_for_order(db, order_id=order.id)
    history = await get_order_history(db, order)
    refunds = await refunds_of_order(db, order.id)
    return await render_page(
        "order/detail.html",
        order=order,
        entries=order_booking_rows(order, entries),
        history=history,
        refunds=refunds,
    )


@bp.post("/<bigid:order_id>/pay/")
@rate_limited("pay")
async def pay(order_id: int) -> Any:
    """Pay an unpaid order (again): a new SumUp checkout; the previous one is retired."""
    await bind_form(PlainForm)
    db = db_session()
    order = await get_order_for_owner(db, current_identity(), order_id)
    if not order.is_unpaid:
        status = order_status_label(order.status).lower()
        await flash(f"Order {order.number} is {status}; there is nothing to pay.", "success")
        return redirect(url_for("order.detail", order_id=order.id), 303)
    await db.commit()
    # A hosted page lives about 30 minutes: never send the shopper to an old one.
    return await go_to_payment(order.id, reuse_open=False)


@bp.post("/<bigid:order_id>/recheck/")
@rate_limited("status")
async def recheck(order_id: int) -> Any:
    """Ask SumUp for the payment status now, then show the order."""
    await bind_form(PlainForm)
    db = db_session()
    order = await get_order_for_owner(db, current_identity(), order_id)
    if await status_check_due(order.id):
        order = await check_payment(order.id)
    await flash(f"Order {order.number}: {order_status_label(order.status)}.", "success")
    return redirect(url_for("order.detail", order_id=order.id), 303)


CANCEL_MESSAGES = {
    CancelOutcome.CANCELLED: "Order {number} is cancelled; its bookings are back in your cart.",
    CancelOutcome.ALREADY_CANCELLED: "Order {number} was already cancelled.",
    CancelOutcome.PAID: "Order {number} is paid, so it cannot be cancelled here.",
}


@bp.post("/<bigid:order_id>/cancel/")
@rate_limited("write")
async def cancel(order_id: int) -> Any:
    """Cancel an unpaid order: SumUp checkout deactivated, bookings back in the cart."""
    await bind_form(PlainForm)
    db = db_session()
    order = await get_order_for_owner(db, current_identity(), order_id)
    outcome = await cancel_order(db, order, checkout_context())
    await flash(CANCEL_MESSAGES[outcome].format(number=order.number), "success")
    return redirect(url_for("order.detail", order_id=order.id), 303)


@bp.get("/<bigid:order_id>/cancel/")
async def cancel_confirm(order_id: int) -> Any:
    """The step before cancelling: what cancelling does, with a way back (nothing changes)."""
    order = await get_order_for_owner(db_session(), current_identity(), order_id)
    if not order.is_unpaid:
        return redirect(url_for("order.detail", order_id=order.id), 303)
    return await render_template("order/cancel.html", order=order)
