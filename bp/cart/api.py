"""The internal API the sibling apps call on every page they render."""

from __future__ import annotations

from quart import Blueprint

bp = Blueprint("cart_api", __name__, url_prefix="/internal/cart")
