"""The cart overview: every line and entry, grouped by page."""

from __future__ import annotations

from quart import Blueprint

from bp.cart.responses import current_identity, settings
from bp.cart.services.page_cart import get_cart_view
from services.db import db_connection, read_only
from services.page_merchants import pages_paid_directly
from services.templating import render_page

bp = Blueprint("cart_overview", __name__, url_prefix="/cart")


@bp.get("/")
@read_only
async def overview() -> str:
    """The whole cart, grouped by page, with subtotals and the total."""
    db = await db_connection()
    view = await get_cart_view(db, current_identity(), default_currency=settings().cart.currency)
    paid_directly = await pages_paid_directly(db, (group.page.id for group in view.groups))
    return await render_page(
        "cart/overview.html", view=view, page=None, paid_directly=paid_directly
    )
