"""The order state machine: the one place an order's status changes.

`TRANSITIONS` lists every allowed (from, to, cause). `move_order` applies one as a
conditional UPDATE on the order's status and version, so of several racing callers
exactly one wins; the winner records the change in the order's history, does what
the change means for the order's bookings and the cart, writes the event to the
outbox and logs a business line, all in the caller's transaction. A loser gets None
and re-reads the order to decide again. `touch_order` is the same guard for changes
that keep the status (a new checkout attempt), so they serialise with transitions.

    pending ──payment──▶ paid ──refund──▶ partially_refunded ──refund──▶ refunded
      │  ▲                 ▲
      │  └──pay_again── failed | expired ──payment──┘
      └──▶ failed | expired | cancelled;  failed | expired ──▶ cancelled
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.clear_cart_for_order import clear_cart_for_order
from bp.cart.services.order_queries import load_order
from models import CheckoutAttempt, Order, OrderTransition
from services.events import emit_event, order_event_payload
from services.order_lifecycle import (
    cancel_entries_for_refund,
    confirm_entries_for_order,
    release_entries_for_order,
)

log = logging.getLogger(__name__)

UNPAID = ("pending", "failed", "expired")


@dataclass(frozen=True)
class Transition:
    source: str | None
    target: str
    cause: str


def _each(sources: Sequence[str | None], target: str, cause: str) -> list[Transition]:
    return [Transition(source, target, cause) for source in sources]


TRANSITIONS: frozenset[Transition] = frozenset(
    [
        Transition(None, "pending", "checkout"),
        # A verified PAID moves any unpaid state: FAILED only means the latest try failed.
        *_each(UNPAID, "paid", "payment"),
        Transition("pending", "failed", "payment_failed"),
        *_each(("pending", "failed"), "expired", "checkout_expired"),
        *_each(("pending", "failed"), "expired", "unpaid_too_long"),
        *_each(("failed", "expired"), "pending", "pay_again"),
        *_each(UNPAID, "cancelled", "shopper_cancelled"),
        *_each(UNPAID, "cancelled", "superseded"),
        *_each(("paid", "partially_refunded"), "partially_refunded", "refund"),
        *_each(("paid", "partially_refunded"), "refunded", "refund"),
    ]
)

# The event each target status writes; a return to pending (pay again) writes none:
# nothing changed for the other apps, the order is still unpaid.
EVENTS: Mapping[str, str | None] = {
    "pending": None,
    "paid": "order.paid",
    "failed": "order.failed",
    "expired": "order.expired",
    "cancelled": "order.cancelled",
    "partially_refunded": "order.refunded",
    "refunded": "order.refunded",
}

REASONS: Mapping[str, str] = {
    "payment_failed": "the payment failed at SumUp",
    "checkout_expired": "the SumUp checkout expired",
    "unpaid_too_long": "unpaid for too long",
    "shopper_cancelled": "cancelled by the shopper",
    "superseded": "superseded by a new checkout",
}


class InvalidTransition(RuntimeError):
    """A programming error: a change the state machine does not allow."""


async def record_created(session: AsyncSession, order: Order, *, entry_ids: Sequence[int]) -> None:
    """History, event and log line of a new order (the INSERT made it pending)."""
    session.add(
        OrderTransition(order_id=order.id, from_status=None, to_status="pending", cause="checkout")
    )
    await emit_event(
        session,
        "order.created",
        order_event_payload(order, entry_ids=entry_ids),
        aggregate=("order", order.id),
    )
    _log_change(order, None, "checkout", attempt_id=None)


async def move_order(
    session: AsyncSession,
    order: Order,
    target: str,
    *,
    cause: str,
    attempt: CheckoutAttempt | None = None,
    values: Mapping[str, Any] | None = None,
    event_fields: Mapping[str, Any] | None = None,
    detail: str | None = None,
) -> Order | None:
    """Move `order` (as the caller read it) to `target`; None if it changed meanwhile."""
    source = order.status
    if Transition(source, target, cause) not in TRANSITIONS:
        raise InvalidTransition(f"order {order.id}: {source} -> {target} ({cause})")
    moved = await session.scalar(
        update(Order)
        .where(Order.id == order.id, Order.status == source, Order.version == order.version)
        .values(
            status=target,
            version=Order.version + 1,
            updated_at=func.now(),
            **_target_values(target),
            **(values or {}),
        )
        .returning(Order.id)
    )
    if moved is None:
        return None
    attempt_id = attempt.id if attempt is not None else None
    session.add(
        OrderTransition(
            order_id=order.id,
            from_status=source,
            to_status=target,
            cause=cause,
            detail=detail,
            attempt_id=attempt_id,
        )
    )
    entry_ids = await _apply_effects(session, order.id, target)
    order = await load_order(session, order.id)
    event = EVENTS[target]
    if event is not None:
        payload = order_event_payload(
            order,
            entry_ids=entry_ids,
            reason=detail or REASONS.get(cause),
            sumup_checkout_id=attempt.sumup_checkout_id if attempt is not None else None,
        )
        await emit_event(
            session, event, {**payload, **(event_fields or {})}, aggregate=("order", order.id)
        )
    _log_change(order, source, cause, attempt_id=attempt_id)
    return order


async def touch_order(session: AsyncSession, order: Order, values: Mapping[str, Any]) -> bool:
    """Change non-status columns under the same version guard as a transition."""
    moved = await session.scalar(
        update(Order)
        .where(Order.id == order.id, Order.status == order.status, Order.version == order.version)
        .values(version=Order.version + 1, updated_at=func.now(), **values)
        .returning(Order.id)
    )
    return moved is not None


async def record_refund_event(
    session: AsyncSession, order: Order, fields: Mapping[str, Any], *, reason: str
) -> None:
    """`order.refunded` for money given back that leaves the status as it is (a payment
    the order could not take): an event and a log line, no transition."""
    payload = order_event_payload(order, entry_ids=[], reason=reason)
    await emit_event(
        session, "order.refunded", {**payload, **fields}, aggregate=("order", order.id)
    )
    log.info(
        "order %s refunded %s %s (%s)",
        order.number,
        fields.get("amount"),
        order.currency,
        reason,
        extra={"event": "order.refunded", "order_id": order.id, **fields},
    )


def _target_values(target: str) -> dict[str, Any]:
    if target == "cancelled":
        return {"cancelled_at": func.now()}
    if target == "paid":
        return {"paid_at": func.now()}
    return {}


async def _apply_effects(session: AsyncSession, order_id: int, target: str) -> list[int]:
    """What a status means for bookings and the cart; the entry ids it touched."""
    if target == "paid":
        confirmed = await confirm_entries_for_order(session, order_id=order_id)
        await clear_cart_for_order(session, await load_order(session, order_id))
        return confirmed
    if target in ("cancelled", "expired"):
        return await release_entries_for_order(session, order_id=order_id)
    if target == "refunded":
        return await cancel_entries_for_refund(session, order_id=order_id)
    return []


def _log_change(order: Order, source: str | None, cause: str, *, attempt_id: int | None) -> None:
    log.info(
        "order %s %s",
        order.number,
        order.status,
        extra={
            "event": f"order.{order.status}",
            "order_id": order.id,
            "from_status": source,
            "to_status": order.status,
            "cause": cause,
            "attempt_id": attempt_id,
            "total": str(order.total_amount),
            "currency": order.currency,
        },
    )
