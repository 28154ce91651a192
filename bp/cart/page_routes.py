"""One page's part of the cart, and its checkout with the page's SumUp account."""

from __future__ import annotations

from quart import Blueprint

bp = Blueprint("cart_page", __name__, url_prefix="/cart")
