"""Development stand-ins for the sibling apps (login, shop); absent in production."""

from __future__ import annotations

from quart import Blueprint

bp = Blueprint("dev", __name__, url_prefix="/dev")
