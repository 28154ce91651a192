"""One order: its page and the shopper's actions on it."""

from __future__ import annotations

from quart import Blueprint

bp = Blueprint("order", __name__, url_prefix="/orders")
