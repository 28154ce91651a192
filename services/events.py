"""Domain events: the transactional outbox and its relay to a Redis Stream.

`emit_event` writes an event into `domain_events` in the caller's transaction, so
an event exists if and only if its change committed. The relay publishes the rows
to a Redis Stream; nothing else publishes events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models.order import Order
from models.siblings.shared import DomainEvent
from services.event_schemas import OrderEventPayload, money_string, validate_payload

# Emitters hold this advisory lock in SHARED mode from their insert until their
# transaction ends; the relay takes it EXCLUSIVELY for an instant to learn which
# ids are final (see `_publish_horizon`). The value is arbitrary but part of the
# contract: any writer of `domain_events` must take it the same way.
OUTBOX_WRITE_LOCK = 0x636172742D6F7574  # "cart-out"


async def emit_event(
    session: AsyncSession,
    event_type: str,
    payload: Mapping[str, Any],
    aggregate: tuple[str, str | int],
) -> DomainEvent:
    """Add a domain event to the outbox in the caller's transaction (flush, no commit)."""
    validate_payload(event_type, payload)
    aggregate_type, aggregate_id = aggregate
    if not aggregate_type or aggregate_id in (None, ""):
        raise ValueError(f"{event_type}: aggregate must be (type, id), got {aggregate!r}")
    # Taken before the id is drawn from the sequence, held until commit or rollback.
    await session.execute(select(func.pg_advisory_xact_lock_shared(OUTBOX_WRITE_LOCK)))
    event = DomainEvent(
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        payload=dict(payload),
    )
    session.add(event)
    await session.flush()
    return event


def order_event_payload(
    order: Order, *, entry_ids: Sequence[int], reason: str | None = None
) -> dict[str, Any]:
    """The payload of an `order.*` event; `order.items` must be loaded (selectinload)."""
    payload: OrderEventPayload = {
        "order_id": order.id,
        "number": order.number,
        "user_id": order.user_id,
        "session_id": order.session_id,
        "page_post_id": order.page_post_id,
        "status": order.status,
        "currency": order.currency,
        "total": money_string(order.total_amount),
        "items": [
            {
                "product_id": item.product_id,
                "title": item.product_title,
                "quantity": item.quantity,
                "unit_price": money_string(item.unit_price),
                "line_total": money_string(item.line_total),
            }
            for item in order.items
        ],
        "entry_ids": [int(entry_id) for entry_id in entry_ids],
        "sumup_checkout_id": order.sumup_checkout_id,
        "sumup_transaction_code": order.sumup_transaction_code,
        "created_at": order.created_at.isoformat() if order.created_at else None,
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
        "reason": reason,
    }
    return dict(payload)
