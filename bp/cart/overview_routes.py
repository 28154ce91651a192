"""The cart overview: every line and entry, grouped by page."""

from __future__ import annotations

from quart import Blueprint

from bp.cart.context import show_badge_of
from bp.cart.responses import current_identity, settings
from bp.cart.services.page_cart import get_cart_view
from services.db import db_connection, read_only
from services.templating import render_page

bp = Blueprint("cart_overview", __name__, url_prefix="/cart")


@bp.get("/")
@read_only
async def overview() -> str:
    """The whole cart, grouped by page, with subtotals and the total."""
    db = await db_connection()
    view = await get_cart_view(db, current_identity(), default_currency=settings().cart.currency)
    show_badge_of(view)  # the header counts the cart the page read, not a second query
    return await render_page("cart/overview.html", view=view, page=None)
