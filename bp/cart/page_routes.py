"""One page's part of the cart, and its checkout with the page's SumUp account."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, render_template

from bp.cart.forms import CheckoutForm, raise_for_errors
from bp.cart.responses import current_identity, current_identity_or_empty, go_to_payment, settings
from bp.cart.services.checkout import CheckoutRequest, create_order_from_cart
from bp.cart.services.page_cart import get_cart_view, get_page
from services.db import db_session
from services.web import bind_form

bp = Blueprint("cart_page", __name__, url_prefix="/cart")


@bp.get("/<page_slug>/")
async def page_cart(page_slug: str) -> str:
    """The lines and bookings of one page."""
    page = await get_page(db_session(), page_slug)
    view = await get_cart_view(
        db_session(), current_identity(), default_currency=settings().cart.currency, page=page
    )
    return await render_template("cart/page.html", view=view, page=page)


@bp.post("/<page_slug>/checkout/")
async def page_checkout(page_slug: str) -> Any:
    """Pay for one page's part of the cart, with the page's own SumUp account if it has one."""
    form = await bind_form(CheckoutForm)
    raise_for_errors(form, max_quantity=settings().cart.max_quantity_per_line)
    db = db_session()
    page = await get_page(db, page_slug)
    order = await create_order_from_cart(
        db,
        CheckoutRequest(current_identity_or_empty(), page, form.idempotency_key.data or None),
        settings=settings(),
    )
    await db.commit()  # the order exists before SumUp is called, outside any lock
    return await go_to_payment(order.id)
