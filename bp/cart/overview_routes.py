"""The cart overview: every line and entry, grouped by page."""

from __future__ import annotations

from quart import Blueprint, render_template

from bp.cart.responses import current_identity, settings
from bp.cart.services.page_cart import get_cart_view
from services.db import db_session, read_only

bp = Blueprint("cart_overview", __name__, url_prefix="/cart")


@bp.get("/")
@read_only
async def overview() -> str:
    """The whole cart, grouped by page, with subtotals and the total."""
    view = await get_cart_view(
        db_session(), current_identity(), default_currency=settings().cart.currency
    )
    return await render_template("cart/overview.html", view=view, page=None)
