"""The shopper's list of orders."""

from __future__ import annotations

from quart import Blueprint, render_template

bp = Blueprint("orders", __name__, url_prefix="/orders")


@bp.get("/")
async def list_orders() -> str:
    """The current shopper's orders, newest first."""
    return await render_template("orders/list.html", orders=[])
