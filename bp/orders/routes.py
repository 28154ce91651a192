"""The shopper's list of orders."""

from __future__ import annotations

import re

from quart import Blueprint, request

from bp.cart.responses import current_identity, settings
from bp.cart.services.order_queries import list_orders
from models.order import ORDER_STATUSES
from services.db import db_session, read_only
from services.errors import ServiceError
from services.templating import render_page

bp = Blueprint("orders", __name__, url_prefix="/orders")

ORDER_ID_MAX = 2**63 - 1  # orders.id is a bigint


@bp.get("/")
@read_only
async def list_orders_page() -> str:
    """The current shopper's orders, newest first, filtered by status or number."""
    status = request.args.get("status") or None
    if status is not None and status not in ORDER_STATUSES:
        raise ServiceError(f"There is no order status called {status!r}.", status_code=422)
    before_arg = request.args.get("before", "")
    # ASCII digits only ("²".isdigit() is true), and nothing past a bigint.
    if before_arg and not (
        re.fullmatch(r"[0-9]{1,19}", before_arg) and int(before_arg) <= ORDER_ID_MAX
    ):
        raise ServiceError("That page of orders does not exist.", status_code=422)
    search = (request.args.get("q") or "").strip()[:32] or None
    page = await list_orders(
        db_session(),
        current_identity(),
        page_size=settings().orders.page_size,
        before=int(before_arg) if before_arg else None,
        status=status,
        search=search,
    )
    return await render_page(
        "orders/list.html", page=page, status=status, search=search, statuses=ORDER_STATUSES
    )
