"""Payload schemas: every event type has one, and garbage is refused."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from services.event_schemas import EVENT_SCHEMAS, EVENT_TYPES, money_string, validate_payload


def order_payload(status: str, **changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "order_id": 41,
        "number": "RA-000041",
        "user_id": None,
        "session_id": "anon-7f3a",
        "page_post_id": None,
        "status": status,
        "currency": "GBP",
        "total": "12.50",
        "items": [
            {
                "product_id": 11,
                "title": "Sourdough",
                "quantity": 2,
                "unit_price": "4.25",
                "line_total": "8.50",
            }
        ],
        "entry_ids": [3, 4],
        "sumup_checkout_id": None,
        "sumup_transaction_code": None,
        "created_at": "2026-11-24T09:00:00+00:00",
        "paid_at": "2026-11-24T09:05:00+00:00" if status == "paid" else None,
        "reason": None,
    }
    payload.update(changes)
    return payload


STATUS_OF = {
    "order.created": "pending",
    "order.paid": "paid",
    "order.failed": "failed",
    "order.expired": "expired",
    "order.cancelled": "cancelled",
    "order.refunded": "partially_refunded",
}
REFUND_FIELDS = {"amount": "1.50", "refunded_total": "1.50"}


def order_payload_for(event_type: str, **changes: Any) -> dict[str, Any]:
    """A valid payload of `event_type` (refunds carry their amounts too)."""
    extra = REFUND_FIELDS if event_type == "order.refunded" else {}
    return order_payload(STATUS_OF[event_type], **{**extra, **changes})


def test_the_six_order_events_have_schemas() -> None:
    assert set(STATUS_OF) == EVENT_TYPES == set(EVENT_SCHEMAS)


@pytest.mark.parametrize("status", ["paid", "partially_refunded", "refunded", "cancelled"])
def test_a_refund_event_may_leave_the_order_paid_or_cancelled(status: str) -> None:
    validate_payload("order.refunded", order_payload(status, **REFUND_FIELDS))


def test_a_refund_event_needs_its_amounts_as_money_strings() -> None:
    with pytest.raises(ValueError, match="refunded_total"):
        validate_payload("order.refunded", order_payload("refunded", amount="1.50"))
    with pytest.raises(ValueError, match=r"payload\.amount must be a string"):
        validate_payload(
            "order.refunded", order_payload("refunded", amount=1.5, refunded_total="1.50")
        )


@pytest.mark.parametrize("event_type", sorted(STATUS_OF))
def test_each_event_type_accepts_its_payload(event_type: str) -> None:
    validate_payload(event_type, order_payload_for(event_type, reason="because"))


@pytest.mark.parametrize("event_type", sorted(STATUS_OF))
def test_each_event_type_refuses_a_float_total(event_type: str) -> None:
    with pytest.raises(ValueError, match=r"payload\.total must be a string"):
        validate_payload(event_type, order_payload_for(event_type, total=12.5))


@pytest.mark.parametrize("event_type", sorted(STATUS_OF))
@pytest.mark.parametrize("missing", ["total", "entry_ids", "reason", "created_at"])
def test_each_event_type_refuses_a_missing_field(event_type: str, missing: str) -> None:
    payload = order_payload_for(event_type)
    del payload[missing]
    with pytest.raises(ValueError, match=f"payload is missing {missing}"):
        validate_payload(event_type, payload)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"total": "12.5"}, r"payload\.total must be money with two decimals"),
        ({"total": "£12.50"}, r"payload\.total must be money"),
        ({"order_id": "41"}, r"payload\.order_id must be an integer"),
        ({"order_id": True}, r"payload\.order_id must be an integer"),
        ({"user_id": 7.0}, r"payload\.user_id must be an integer"),
        ({"currency": "gbp"}, r"payload\.currency must be a three-letter currency code"),
        ({"created_at": "yesterday"}, r"payload\.created_at must be an ISO-8601 timestamp"),
        ({"entry_ids": [3, "4"]}, r"payload\.entry_ids\[1\] must be an integer"),
        ({"entry_ids": 3}, r"payload\.entry_ids must be a list"),
        ({"surprise": 1}, r"payload has unknown fields surprise"),
        ({"status": "paid"}, r"status 'paid', expected pending"),
    ],
)
def test_malformed_payloads_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_payload("order.created", {**order_payload("pending"), **change})


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("unit_price", 4.25, r"items\[0\]\.unit_price must be a string"),
        ("line_total", "8.5", r"items\[0\]\.line_total must be money"),
        ("quantity", "2", r"items\[0\]\.quantity must be an integer"),
    ],
)
def test_malformed_items_are_refused(field: str, value: Any, message: str) -> None:
    payload = order_payload("pending")
    items = copy.deepcopy(payload["items"])
    items[0][field] = value
    with pytest.raises(ValueError, match=message):
        validate_payload("order.created", {**payload, "items": items})


def test_paid_event_needs_paid_at() -> None:
    with pytest.raises(ValueError, match=r"order\.paid payload needs paid_at"):
        validate_payload("order.paid", order_payload("paid", paid_at=None))


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown event type 'order\.updated'"):
        validate_payload("order.updated", order_payload("pending"))


def test_money_is_written_with_two_decimals() -> None:
    assert money_string(Decimal("12.5")) == "12.50"
    assert money_string(Decimal("0")) == "0.00"
    assert money_string(Decimal("1E+3")) == "1000.00"
    assert money_string(Decimal("2.005")) == "2.01"
