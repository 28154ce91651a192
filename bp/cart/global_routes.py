"""Cart-wide actions: add, update, remove, checkout, SumUp's webhook and return page."""

from __future__ import annotations

from quart import Blueprint

bp = Blueprint("cart_global", __name__, url_prefix="/cart")
