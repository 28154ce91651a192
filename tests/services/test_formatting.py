"""Money, times and statuses as shoppers read them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from babel import Locale

import services.formatting as formatting
from services.formatting import (
    ORDER_STATUS_LABELS,
    TimeFormatter,
    booking_state_label,
    format_money,
    order_status_label,
    refund_status_label,
)

ORDER_STATES = {
    "pending": "Awaiting payment",
    "paid": "Paid",
    "failed": "Payment failed",
    "expired": "Expired",
    "cancelled": "Cancelled",
    "partially_refunded": "Partly refunded",
    "refunded": "Refunded",
}


@pytest.mark.parametrize(("status", "label"), ORDER_STATES.items())
def test_every_order_state_has_a_shopper_label(status: str, label: str) -> None:
    assert order_status_label(status) == label


def test_the_order_model_has_no_state_without_a_label() -> None:
    from models.order import ORDER_STATUSES

    assert set(ORDER_STATUSES) <= set(ORDER_STATUS_LABELS)


@pytest.mark.parametrize(
    ("state", "label"),
    [
        ("ordered", "Held for this order"),
        ("provisional", "Booking confirmed on payment"),
        ("confirmed", "Confirmed"),
        ("pending", "Back in your cart"),
        ("cancelled", "Cancelled"),
    ],
)
def test_every_booking_state_has_a_shopper_label(state: str, label: str) -> None:
    assert booking_state_label(state) == label


def test_a_released_booking_says_so_whatever_its_state() -> None:
    assert booking_state_label("ordered", released=True) == "Released"


def test_an_unknown_status_still_reads_as_words() -> None:
    assert order_status_label("on_hold") == "On hold"
    assert refund_status_label("SUCCEEDED") == "Refunded"
    assert refund_status_label(None) == "Unknown"


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [
        (Decimal("12.5"), "GBP", "£12.50"),
        (Decimal("1234.56"), "GBP", "£1,234.56"),
        (Decimal("3"), "EUR", "€3.00"),
        ("7.00", "GBP", "£7.00"),
        (None, "GBP", "—"),
    ],
)
def test_money_is_shown_in_british_english(amount: object, currency: str, shown: str) -> None:
    assert format_money(amount, currency) == shown  # type: ignore[arg-type]


def test_money_uses_the_one_locale_built_at_import(monkeypatch: pytest.MonkeyPatch) -> None:
    parse = Locale.parse

    def no_parsing(identifier: object, *args: object, **kwargs: object) -> Locale:
        # Babel hands a Locale object straight back; only a name costs a parse.
        if not isinstance(identifier, Locale):
            raise AssertionError(f"the locale {identifier!r} was parsed while formatting money")
        return parse(identifier, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Locale, "parse", no_parsing)
    assert isinstance(formatting.LOCALE, Locale)
    assert format_money(Decimal("2.00"), "GBP") == "£2.00"


def test_times_are_shown_in_the_coops_zone_and_name_it() -> None:
    london = TimeFormatter(ZoneInfo("Europe/London"))
    winter = datetime(2026, 1, 5, 14, 3, tzinfo=UTC)
    summer = datetime(2026, 7, 5, 14, 3, tzinfo=UTC)
    assert london.datetime(winter) == "5 Jan 2026, 14:03 GMT"
    assert london.datetime(summer) == "5 Jul 2026, 15:03 BST"
    assert london.day_and_time(summer) == "Sun 5 Jul 2026, 15:03 BST"
    assert london.iso(summer) == "2026-07-05T15:03+01:00"
    assert london.datetime(None) == "—"


def test_the_zone_is_configurable() -> None:
    paris = TimeFormatter(ZoneInfo("Europe/Paris"))
    assert paris.datetime(datetime(2026, 1, 5, 14, 3, tzinfo=UTC)) == "5 Jan 2026, 15:03 CET"


def test_the_same_instant_is_formatted_for_each_zone_and_a_naive_time_is_utc() -> None:
    moment = datetime(2026, 1, 5, 14, 3, tzinfo=UTC)
    london = TimeFormatter(ZoneInfo("Europe/London"))
    paris = TimeFormatter(ZoneInfo("Europe/Paris"))
    assert london.datetime(moment) == "5 Jan 2026, 14:03 GMT"  # formatted once, then remembered
    assert paris.datetime(moment) == "5 Jan 2026, 15:03 CET"
    assert paris.datetime(moment.astimezone(ZoneInfo("Europe/London"))) == "5 Jan 2026, 15:03 CET"
    assert paris.day_and_time(moment.replace(tzinfo=None)) == "Mon 5 Jan 2026, 15:03 CET"


def test_a_time_without_a_zone_is_taken_as_utc() -> None:
    london = TimeFormatter(ZoneInfo("Europe/London"))
    assert london.datetime(datetime(2026, 7, 5, 14, 3)) == "5 Jul 2026, 15:03 BST"
