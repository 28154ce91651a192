"""The blog app's admin side of orders: refunds, over the internal API."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from quart import Blueprint, current_app, request

from bp.cart.responses import checkout_context, internal_caller_is_authorised
from bp.cart.services.order_queries import load_order
from bp.cart.services.refunds import RefundAsk, parse_refund_amount, refund_order, refunds_of_order
from services.errors import ServiceError
from services.events import money_string
from services.input_guard import json_body

bp = Blueprint("order_internal", __name__, url_prefix="/internal/orders")

MAX_KEY_LENGTH = 100


class BadRefundRequest(ServiceError):
    status_code = 400
    title = "Bad request"


async def _refund_ask(order_id: int) -> RefundAsk:
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key or len(key) > MAX_KEY_LENGTH or not (key.isascii() and key.isprintable()):
        raise BadRefundRequest(
            f"An Idempotency-Key header of 1 to {MAX_KEY_LENGTH} printable ASCII characters "
            "is required."
        )
    raw = await request.get_data()
    body = await json_body() if raw.strip() else {}
    if not isinstance(body, dict):
        raise BadRefundRequest('The body must be a JSON object like {"amount": "1.50"}.')
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 255 or "\x00" in reason:
        raise BadRefundRequest("reason must be text of at most 255 characters.")
    return RefundAsk(
        order_id=order_id,
        amount=parse_refund_amount(body.get("amount")),
        reason=reason.strip(),
        idempotency_key=f"admin:{key}",
    )


@bp.post("/<bigid:order_id>/refund")
async def refund(order_id: int) -> Any:
    """Refund a paid order, fully or in part; the same Idempotency-Key answers the same."""
    if not internal_caller_is_authorised():
        return {"error": "Unauthorized", "message": "A valid bearer token is required."}, 401
    ask = await _refund_ask(order_id)
    sessions = current_app.extensions["db_sessionmaker"]
    done = await refund_order(sessions, ask, checkout_context())
    async with sessions() as session:
        order = await load_order(session, order_id)
        refunds = await refunds_of_order(session, order_id)
    answer = {
        "order_id": order.id,
        "status": order.status,
        # Everything given back: of the order's payment and of any it could not take.
        "refunded_total": money_string(
            sum((r.amount for r in refunds if r.status == "succeeded"), Decimal("0.00"))
        ),
        "refund": {"id": done.id, "status": done.status},
        "refunds": [
            {
                "id": r.id,
                "amount": money_string(r.amount),
                "currency": r.currency,
                "status": r.status,
                "reason": r.reason,
                "requested_by": r.requested_by,
                "created_at": r.created_at.isoformat(),
            }
            for r in refunds
        ],
    }
    if done.status == "pending":
        answer["message"] = (
            "SumUp did not confirm the refund yet; it will be settled. "
            "Ask again with the same Idempotency-Key to see the outcome."
        )
        return answer, 202
    if done.status == "failed":
        answer["message"] = f"SumUp refused the refund: {done.error}"
        return answer, 502
    return answer
