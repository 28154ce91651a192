"""Cart-wide actions: lines and bookings, checkout, SumUp's webhook and return page."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template, request
from sumup.events import EventSignatureError, verify_event_signature

from bp.cart.forms import (
    AddForm,
    PlainForm,
    QuantitiesForm,
    RemoveForm,
    UpdateForm,
    quantity_of,
    raise_for_errors,
    typed_quantities,
)
from bp.cart.line_answers import init_line_answers, line_answer, quantities_answer
from bp.cart.responses import (
    check_payment,
    checkout_and_pay,
    current_identity,
    current_identity_or_empty,
    settings,
    writing_identity,
)
from bp.cart.services.calendar_cart import remove_entry_from_cart
from bp.cart.services.check_sumup_status import order_id_for_checkout
from bp.cart.services.order_queries import get_order_for_owner, order_booking_rows
from bp.cart.services.update_cart import (
    add_to_cart,
    remove_from_cart,
    set_quantity,
    set_typed_quantities,
)
from bp.cart.services.webhook_tokens import webhook_token_is_valid
from services.csrf import bind_form
from services.db import db_session, db_write
from services.errors import NotFoundError, PaymentProviderError
from services.input_guard import json_body, query_natural
from services.order_lifecycle import get_entries_for_order
from services.rate_limits import rate_limited
from services.status_throttle import status_check_due

bp = Blueprint("cart_global", __name__, url_prefix="/cart")
init_line_answers(bp)  # refused line changes answer beside the line, not as an error page


@bp.post("/add/<id:product_id>/")
@rate_limited("write")
async def add(product_id: int) -> Any:
    """Put a product in the cart (quantity 1 unless the form says more)."""
    form = await bind_form(AddForm)
    limit = settings().cart.max_quantity_per_line
    raise_for_errors(form, max_quantity=limit)
    change = await add_to_cart(
        await db_write(),
        writing_identity(),
        product_id=product_id,
        quantity=quantity_of(form),
        market_place_id=form.market_place.data,
        max_quantity=limit,
    )
    return await line_answer(f"{change.title}: {change.quantity} in your cart.", form.next.data)


@bp.post("/update/<id:product_id>/")
@rate_limited("write")
async def update(product_id: int) -> Any:
    """Set how many of a product the cart holds; 0 takes it out."""
    form = await bind_form(UpdateForm)
    limit = settings().cart.max_quantity_per_line
    raise_for_errors(form, max_quantity=limit)
    change = await set_quantity(
        await db_write(),
        writing_identity(),
        product_id=product_id,
        quantity=quantity_of(form),
        market_place_id=form.market_place.data,
        max_quantity=limit,
    )
    message = (
        f"{change.title}: {change.quantity} in your cart."
        if change.quantity
        else f"{change.title} was taken out of your cart."
    )
    return await line_answer(message, form.next.data)


@bp.post("/update/")
@rate_limited("write")
async def update_quantities() -> Any:
    """Save every quantity typed into the cart form (its Update buttons, or Enter in a box)."""
    form = await bind_form(QuantitiesForm)
    limit = settings().cart.max_quantity_per_line
    raise_for_errors(form, max_quantity=limit)
    changes = await set_typed_quantities(
        db_session(),
        current_identity_or_empty(),
        typed=typed_quantities(await request.form, max_quantity=limit),
        max_quantity=limit,
    )
    return await quantities_answer(changes, form.update.data, form.next.data)


@bp.post("/remove/<id:product_id>/")
@rate_limited("write")
async def remove(product_id: int) -> Any:
    """Take a product out of the cart."""
    form = await bind_form(RemoveForm)
    raise_for_errors(form, max_quantity=settings().cart.max_quantity_per_line)
    change = await remove_from_cart(
        await db_write(),
        writing_identity(),
        product_id=product_id,
        market_place_id=form.market_place.data,
    )
    return await line_answer(f"{change.title} was taken out of your cart.", form.next.data)


@bp.post("/entries/<id:entry_id>/remove/")
@rate_limited("write")
async def remove_entry(entry_id: int) -> Any:
    """Take a pending booking out of the cart."""
    form = await bind_form(PlainForm)
    name = await remove_entry_from_cart(db_session(), writing_identity(), entry_id=entry_id)
    return await line_answer(f"{name} was taken out of your cart.", form.next.data)


@bp.post("/checkout/")
@rate_limited("write")
async def checkout() -> Any:
    """Whole-cart checkout: an order, then SumUp's hosted payment page."""
    return await checkout_and_pay(None)


@bp.post("/checkout/webhook/<bigid:order_id>/")
@rate_limited("webhook")
async def webhook(order_id: int) -> Any:
    """SumUp's status notification: verified by fetching the checkout, never trusted."""
    token = request.args.get("token", "")
    if not webhook_token_is_valid(settings().secret_key.reveal(), order_id, token):
        return "", 404
    body = await json_body()
    event = body.get("event_type") if isinstance(body, dict) else None
    if event != "CHECKOUT_STATUS_CHANGED":
        return "", 204
    try:
        await check_payment(order_id)
    except PaymentProviderError:
        # SumUp retries a 5xx later; the reconcile sweep is the backstop.
        return "", 503
    except NotFoundError:
        return "", 404
    return "", 204


@bp.post("/checkout/events/")
@rate_limited("webhook")
async def signed_event() -> Any:
    """SumUp's signed event notifications (`checkouts.*`), when a signing secret is set."""
    secret = settings().sumup.webhook_signing_secret
    if secret is None:
        return "", 404
    body = await request.get_data()
    try:
        verify_event_signature(
            secret.reveal(), body, request.headers.get("X-SumUp-Webhook-Signature")
        )
    except EventSignatureError:
        return {"error": "Bad signature", "message": "The event signature is not valid."}, 401
    event = await json_body()
    target = event.get("object") if isinstance(event, dict) else None
    if not isinstance(target, dict) or target.get("type") != "checkout":
        return "", 204
    db = db_session()
    order_id = await order_id_for_checkout(db, str(target.get("id") or ""))
    if order_id is None:
        return "", 204
    try:
        await check_payment(order_id)
    except PaymentProviderError:
        return "", 503
    return "", 204


@bp.get("/checkout/return/<bigid:order_id>/")
@rate_limited("status")
async def checkout_return(order_id: int) -> Any:
    """Where SumUp sends the shopper back: paid, still confirming, or failed."""
    db = db_session()
    order = await get_order_for_owner(db, current_identity(), order_id)
    tries = query_natural("check", default=0)
    unreachable = False
    if order.is_unpaid and order.current_attempt_id and await status_check_due(order.id):
        try:
            order = await check_payment(order.id)
        except PaymentProviderError:
            unreachable = True
    entries = await get_entries_for_order(db, order_id=order.id)
    limit = settings().orders.return_page_rechecks
    return await render_template(
        "cart/return.html",
        order=order,
        entries=order_booking_rows(order, entries),
        unreachable=unreachable,
        next_check=tries + 1 if tries < limit else None,
    )
