"""The cart overview: every line and entry, grouped by page."""

from __future__ import annotations

from quart import Blueprint, render_template

bp = Blueprint("cart_overview", __name__, url_prefix="/cart")


@bp.get("/")
async def overview() -> str:
    """The whole cart, grouped by page."""
    return await render_template("cart/overview.html")
