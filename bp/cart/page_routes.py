"""One page's part of the cart, and its checkout with the page's SumUp account."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from bp.cart.line_answers import init_quantity_answers
from bp.cart.responses import checkout_and_pay, current_identity, settings
from bp.cart.services.page_cart import get_page, get_page_cart
from services.db import db_connection, read_only
from services.rate_limits import rate_limited
from services.templating import render_page

bp = Blueprint("cart_page", __name__, url_prefix="/cart")
init_quantity_answers(bp)  # a refused quantity typed before "Checkout" answers beside its line


@bp.get("/<page_slug>/")
@read_only
async def page_cart(page_slug: str) -> str:
    """The lines and bookings of one page."""
    page, view = await get_page_cart(
        await db_connection(),
        current_identity(),
        page_slug=page_slug,
        default_currency=settings().cart.currency,
    )
    return await render_page("cart/page.html", view=view, page=page)


@bp.post("/<page_slug>/checkout/")
@rate_limited("write")
async def page_checkout(page_slug: str) -> Any:
    """Pay for one page's part of the cart, with the page's own SumUp account if it has one."""
    return await checkout_and_pay(await get_page(await db_connection(), page_slug))
