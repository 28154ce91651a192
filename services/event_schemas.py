"""The payload schema of every domain event, written down as code.

The TypedDicts below are the contract with the consumers of the stream (README,
"Domain events"); `validate_payload` walks them, so the schema and its check cannot
drift apart. Payloads are plain JSON: money is a string with two decimals
("12.50"), never a float; timestamps are ISO-8601 strings.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, TypedDict, Union, get_args, get_origin, get_type_hints

CENT = Decimal("0.01")


@dataclass(frozen=True)
class StringFormat:
    """A constraint on a string field, attached with `Annotated`."""

    name: str
    check: Callable[[str], bool]


def _is_iso_timestamp(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _matcher(pattern: str) -> Callable[[str], bool]:
    compiled = re.compile(pattern)
    return lambda value: compiled.fullmatch(value) is not None


MONEY = StringFormat("money with two decimals, e.g. '12.50'", _matcher(r"-?\d+\.\d\d"))
ISO_TIMESTAMP = StringFormat("an ISO-8601 timestamp", _is_iso_timestamp)
NON_EMPTY = StringFormat("a non-empty string", bool)
CURRENCY_CODE = StringFormat("a three-letter currency code", _matcher(r"[A-Z]{3}"))

Money = Annotated[str, MONEY]
Timestamp = Annotated[str, ISO_TIMESTAMP]
Name = Annotated[str, NON_EMPTY]


class OrderItemPayload(TypedDict):
    """One line of an order, frozen at checkout."""

    product_id: int
    title: str
    quantity: int
    unit_price: Money
    line_total: Money


class OrderEventPayload(TypedDict):
    """The payload of every `order.*` event: the order as it is after the change."""

    order_id: int
    number: Name
    user_id: int | None
    session_id: str | None
    page_post_id: int | None
    status: Name
    currency: Annotated[str, CURRENCY_CODE]
    total: Money
    items: list[OrderItemPayload]
    entry_ids: list[int]
    sumup_checkout_id: str | None
    sumup_transaction_code: str | None
    created_at: Timestamp | None
    paid_at: Timestamp | None
    reason: str | None


class RefundEventPayload(OrderEventPayload):
    """`order.refunded`: the order after the refund, what this refund gave back, and
    everything refunded so far (surplus payments included)."""

    amount: Money
    refunded_total: Money


# Event type -> (payload schema, the order statuses its payload may carry).
# Event names are past tense: the change has happened and committed.
EVENT_SCHEMAS: Mapping[str, tuple[type[Any], frozenset[str]]] = {
    "order.created": (OrderEventPayload, frozenset({"pending"})),
    "order.paid": (OrderEventPayload, frozenset({"paid"})),
    "order.failed": (OrderEventPayload, frozenset({"failed"})),
    "order.expired": (OrderEventPayload, frozenset({"expired"})),
    "order.cancelled": (OrderEventPayload, frozenset({"cancelled"})),
    # A refund of the order's payment, or of money it could not take (a payment on a
    # cancelled or expired order, a second payment of a paid one).
    "order.refunded": (
        RefundEventPayload,
        frozenset({"paid", "partially_refunded", "refunded", "cancelled", "expired"}),
    ),
}
EVENT_TYPES = frozenset(EVENT_SCHEMAS)


def money_string(amount: Decimal) -> str:
    """`Decimal("12.5")` -> `"12.50"`: the only way money enters a payload."""
    return f"{amount.quantize(CENT, rounding=ROUND_HALF_UP):f}"


def validate_payload(event_type: str, payload: Mapping[str, Any]) -> None:
    """Raise `ValueError` unless `payload` matches the schema of `event_type`."""
    if event_type not in EVENT_SCHEMAS:
        known = ", ".join(sorted(EVENT_TYPES))
        raise ValueError(f"unknown event type {event_type!r} (known: {known})")
    schema, statuses = EVENT_SCHEMAS[event_type]
    _check_typed_dict(schema, payload, "payload")
    if payload["status"] not in statuses:
        raise ValueError(
            f"{event_type} payload has status {payload['status']!r}, "
            f"expected {' or '.join(sorted(statuses))}"
        )
    if event_type == "order.paid" and payload["paid_at"] is None:
        raise ValueError("order.paid payload needs paid_at")


def _check_typed_dict(schema: type[Any], value: Any, where: str) -> None:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be an object, got {type(value).__name__}")
    hints = get_type_hints(schema, include_extras=True)
    missing = sorted(set(hints) - set(value))
    if missing:
        raise ValueError(f"{where} is missing {', '.join(missing)}")
    unknown = sorted(set(value) - set(hints))
    if unknown:
        raise ValueError(f"{where} has unknown fields {', '.join(map(str, unknown))}")
    for name, hint in hints.items():
        _check_value(hint, value[name], f"{where}.{name}")


def _check_value(hint: Any, value: Any, where: str) -> None:
    origin = get_origin(hint)
    if origin is Annotated:
        base, *constraints = get_args(hint)
        _check_value(base, value, where)
        for constraint in constraints:
            if (
                isinstance(constraint, StringFormat)
                and value is not None
                and not constraint.check(value)
            ):
                raise ValueError(f"{where} must be {constraint.name}, got {value!r}")
    elif origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return
        (base,) = [option for option in options if option is not type(None)]
        _check_value(base, value, where)
    elif origin is list:
        if not isinstance(value, list):
            raise ValueError(f"{where} must be a list, got {type(value).__name__}")
        (item_hint,) = get_args(hint)
        for index, item in enumerate(value):
            _check_value(item_hint, item, f"{where}[{index}]")
    elif isinstance(hint, type) and hasattr(hint, "__required_keys__"):
        _check_typed_dict(hint, value, where)
    elif hint is int:
        # bool is an int to Python but not to a consumer reading JSON.
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where} must be an integer, got {value!r}")
    elif hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{where} must be a string, got {value!r}")
    else:  # pragma: no cover - a schema using a type this walker does not know
        raise TypeError(f"{where}: unsupported schema type {hint!r}")
