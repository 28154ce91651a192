"""The internal API the sibling apps call on every page they render."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, request

from bp.cart.responses import current_identity, internal_caller_is_authorised, settings
from bp.cart.services.summary import get_cart_summary
from services.db import db_connection, read_only
from services.rate_limits import rate_limited

bp = Blueprint("cart_api", __name__, url_prefix="/internal/cart")


@bp.get("/summary")
@rate_limited("internal")
@read_only
async def summary() -> Any:
    """Count and total of the forwarded session's cart, optionally of one page."""
    if not internal_caller_is_authorised():
        return {"error": "Unauthorized", "message": "A valid bearer token is required."}, 401
    page_slug = request.args.get("page") or None
    result = await get_cart_summary(
        await db_connection(),
        current_identity(),
        page_slug=page_slug,
        default_currency=settings().cart.currency,
    )
    return result.as_json()
