"""Words, money and times as shoppers read them, registered as Jinja filters and globals.

The Babel `Locale` and the coop's time zone are built once, at start-up: parsing a
locale for every amount on a page showed up in the profiles. Statuses are shown in
the shopper's words (`Paid`, `Payment failed`), never the database's (`failed`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC
from datetime import datetime as DateTime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_datetime
from babel.numbers import format_currency
from quart import Quart

LOCALE = Locale.parse("en_GB")

ORDER_STATUS_LABELS = {
    "pending": "Awaiting payment",
    "paid": "Paid",
    "failed": "Payment failed",
    "expired": "Expired",
    "cancelled": "Cancelled",
    "partially_refunded": "Partly refunded",
    "refunded": "Refunded",
}

# A booking of an order, by the calendar entry's state.
BOOKING_STATE_LABELS = {
    "pending": "Back in your cart",
    "ordered": "Held for this order",
    "provisional": "Booking confirmed on payment",
    "confirmed": "Confirmed",
    "cancelled": "Cancelled",
}

REFUND_STATUS_LABELS = {
    "pending": "On its way",
    "succeeded": "Refunded",
    "done": "Refunded",
    "refunded": "Refunded",
    "failed": "Refund failed",
}

# The colour family of a status badge (see static/css/cart.css: `.status-<tone>`).
ORDER_STATUS_TONES = {
    "pending": "waiting",
    "paid": "good",
    "failed": "bad",
    "expired": "neutral",
    "cancelled": "neutral",
    "partially_refunded": "neutral",
    "refunded": "neutral",
}


def _words(value: str) -> str:
    """An unknown status still reads as words: `on_hold` → `On hold`."""
    text = value.replace("_", " ").strip()
    return text[:1].upper() + text[1:] if text else "Unknown"


def order_status_label(status: str | None) -> str:
    """`failed` → `Payment failed`: an order's status in the shopper's words."""
    return ORDER_STATUS_LABELS.get(status or "", _words(status or ""))


def booking_state_label(state: str | None, *, released: bool = False) -> str:
    """A booking's state in the shopper's words; a released booking says so."""
    if released:
        return "Released"
    return BOOKING_STATE_LABELS.get(state or "", _words(state or ""))


def refund_status_label(status: str | None) -> str:
    """A refund's state in the shopper's words."""
    return REFUND_STATUS_LABELS.get((status or "").lower(), _words(status or ""))


def status_tone(status: str | None) -> str:
    """The badge colour family of an order status."""
    return ORDER_STATUS_TONES.get(status or "", "neutral")


def format_money(amount: Decimal | int | str | None, currency: str | None = "GBP") -> str:
    """Money for people: `£12.50`; a dash when there is no amount."""
    if amount is None or amount == "":
        return "—"
    return _formatted_money(str(amount), currency or "GBP")


@lru_cache(maxsize=4096)
def _formatted_money(amount: str, currency: str) -> str:
    # Babel's formatting was the largest part of a cart page's rendering (bench/README.md)
    # and a page repeats a catalogue's few prices: each amount, as written, is formatted
    # once per currency. A pure function of its arguments: nothing here can go stale.
    return format_currency(Decimal(amount), currency, locale=LOCALE)


def _local(moment: DateTime, zone: ZoneInfo) -> DateTime:
    # The database keeps times with a zone; a naive one here can only be UTC.
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(zone)


@lru_cache(maxsize=4096)
def _formatted_time(moment: DateTime, zone: ZoneInfo, pattern: str) -> str:
    # Babel's date formatting cost as much as the rest of a booking's row on a cart page,
    # and bookings share a calendar's few start times. A pure function of its arguments
    # (the zone among them: the same instant reads differently elsewhere).
    return format_datetime(_local(moment, zone), pattern, locale=LOCALE)


@dataclass(frozen=True)
class TimeFormatter:
    """Dates and times in one zone, with the zone named (`14:05 GMT`)."""

    zone: ZoneInfo

    def datetime(self, moment: DateTime | None) -> str:
        """`5 Jan 2026, 14:03 GMT`."""
        if moment is None:
            return "—"
        return _formatted_time(moment, self.zone, "d MMM y, HH:mm zzz")

    def day_and_time(self, moment: DateTime | None) -> str:
        """`Mon 5 Jan 2026, 14:03 GMT`: for a booking, when the weekday matters."""
        if moment is None:
            return "—"
        return _formatted_time(moment, self.zone, "EEE d MMM y, HH:mm zzz")

    def iso(self, moment: DateTime | None) -> str:
        """The machine-readable form for `<time datetime=…>`."""
        return "" if moment is None else _local(moment, self.zone).isoformat(timespec="minutes")


def init_formatting(app: Quart) -> None:
    """Money, time and status filters for every template, in the coop's zone."""
    settings: Any = app.config.get("SETTINGS")
    zone_name = getattr(settings, "time_zone", None) or "Europe/London"
    times = TimeFormatter(ZoneInfo(zone_name))
    app.extensions["time_formatter"] = times
    app.jinja_env.filters.update(
        money=format_money,
        datetime=times.datetime,
        day_and_time=times.day_and_time,
        iso_time=times.iso,
        order_status=order_status_label,
        booking_state=booking_state_label,
        refund_status=refund_status_label,
        status_tone=status_tone,
    )
