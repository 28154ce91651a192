"""Cart arithmetic: Decimal money, the live unit price, totals in one currency."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bp.cart.services.calendar_cart import CartEntry
from bp.cart.services.get_cart import CartLine, PageRef
from bp.cart.services.page_cart import group_by_page
from bp.cart.services.summary import CartSummary, empty_summary
from bp.cart.services.total import Totals, line_total, quantize_money, sum_amounts, unit_price
from services.errors import CartError


@pytest.fixture(autouse=True)
def clean_state() -> None:
    """Pure arithmetic: there is no database or Redis state to clean."""


prices = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False)
quantities = st.integers(min_value=1, max_value=99)
currencies = st.sampled_from(["GBP", "EUR", "USD"])


def money(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def pence(amount: Decimal) -> bool:
    """Whether an amount is written to exactly two decimal places."""
    return amount.as_tuple().exponent == -2


@pytest.mark.parametrize(
    ("amount", "rounded"),
    [
        ("0.005", "0.01"),
        ("0.004", "0.00"),
        ("2.675", "2.68"),
        ("2.665", "2.67"),
        ("1", "1.00"),
        ("1.1", "1.10"),
        ("19.999", "20.00"),
        ("-0.005", "-0.01"),
    ],
)
def test_money_is_rounded_to_pence_half_up_like_a_till(amount: str, rounded: str) -> None:
    result = quantize_money(Decimal(amount))
    assert result == Decimal(rounded) and pence(result)


@given(st.decimals(min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False))
def test_rounding_to_pence_is_within_half_a_penny_and_idempotent(amount: Decimal) -> None:
    rounded = quantize_money(amount)
    assert pence(rounded)
    assert abs(rounded - amount) <= Decimal("0.005")
    assert quantize_money(rounded) == rounded


@pytest.mark.parametrize(
    ("regular", "special", "price"),
    [
        ("5.00", None, "5.00"),
        ("5.00", "4.00", "4.00"),
        ("5.00", "0.00", "0.00"),  # a free special offer is still the price
        (None, "3.00", "3.00"),
        (None, None, None),
    ],
)
def test_the_special_price_wins_when_there_is_one(
    regular: str | None, special: str | None, price: str | None
) -> None:
    assert unit_price(money(regular), money(special)) == money(price)


def test_line_total_has_no_float_error() -> None:
    assert line_total(3, Decimal("0.10")) == Decimal("0.30")
    assert line_total(3, Decimal("3.20")) == Decimal("9.60")
    assert str(line_total(2, Decimal("5"))) == "10.00"


@given(prices, quantities)
def test_line_total_is_quantity_times_price_exactly_in_pence(price: Decimal, quantity: int) -> None:
    total = line_total(quantity, price)
    assert total == price * quantity and pence(total)


def test_an_empty_cart_totals_zero_in_the_default_currency() -> None:
    assert sum_amounts([], default_currency="EUR") == Totals(Decimal("0.00"), "EUR")


def test_a_cart_in_one_currency_totals_in_that_currency() -> None:
    amounts = [(Decimal("9.60"), "EUR"), (Decimal("35.00"), "EUR")]
    assert sum_amounts(amounts, default_currency="GBP") == Totals(Decimal("44.60"), "EUR")


def test_mixing_currencies_is_refused_with_a_clear_message() -> None:
    amounts = [(Decimal("1.00"), "GBP"), (Decimal("2.00"), "EUR"), (Decimal("3.00"), "GBP")]
    with pytest.raises(CartError) as refused:
        sum_amounts(amounts, default_currency="GBP")
    assert refused.value.message == (
        "Your cart holds items priced in different currencies (EUR, GBP); "
        "please check them out separately."
    )
    assert refused.value.status_code == 422


@given(st.lists(st.tuples(prices, quantities), max_size=60), st.randoms())
def test_a_total_is_the_exact_sum_of_its_lines_in_any_order(
    lines: list[tuple[Decimal, int]], shuffler: random.Random
) -> None:
    amounts = [(line_total(quantity, price), "GBP") for price, quantity in lines]
    total = sum_amounts(amounts, default_currency="GBP")
    assert total.amount == sum((price * quantity for price, quantity in lines), Decimal(0))
    assert pence(total.amount)
    shuffled = list(amounts)
    shuffler.shuffle(shuffled)
    assert sum_amounts(shuffled, default_currency="GBP") == total


@given(st.lists(st.tuples(prices, currencies), min_size=1, max_size=20))
def test_any_mix_of_currencies_is_refused_and_one_currency_is_not(
    amounts: list[tuple[Decimal, str]],
) -> None:
    if len({currency for _, currency in amounts}) > 1:
        with pytest.raises(CartError):
            sum_amounts(amounts, default_currency="GBP")
    else:
        assert sum_amounts(amounts, default_currency="GBP").currency == amounts[0][1]


# --- grouping by page -----------------------------------------------------------------

FARM = PageRef(1, "farm", "Farm")
CAFE = PageRef(2, "cafe", "Café")
_ids = itertools.count(1)


def cart_line(
    page: PageRef,
    price: str | None,
    quantity: int = 1,
    *,
    currency: str = "GBP",
    available: bool = True,
) -> CartLine:
    n = next(_ids)
    return CartLine(
        id=n,
        product_id=n,
        product_slug=f"p{n}",
        title=f"Product {n}",
        image=None,
        market_place_id=page.id,
        quantity=quantity,
        unit_price=None if price is None else Decimal(price),
        currency=currency,
        available=available and price is not None,
        page=page,
    )


def test_groups_have_subtotals_and_the_cart_a_grand_total() -> None:
    view = group_by_page(
        [cart_line(FARM, "3.20", 2), cart_line(CAFE, "9.00"), cart_line(FARM, "6.00")],
        [],
        default_currency="GBP",
    )
    assert [(g.page.slug, g.subtotal, g.currency) for g in view.groups] == [
        ("farm", Decimal("12.40"), "GBP"),
        ("cafe", Decimal("9.00"), "GBP"),
    ]
    assert (view.total, view.currency, view.count) == (Decimal("21.40"), "GBP", 4)
    assert view.mixed_currencies is None


def test_lines_no_longer_sold_count_for_nothing_and_are_flagged() -> None:
    view = group_by_page(
        [cart_line(FARM, "4.00"), cart_line(FARM, "9.00", available=False), cart_line(FARM, None)],
        [],
        default_currency="GBP",
    )
    [farm] = view.groups
    assert farm.subtotal == view.total == Decimal("4.00")
    assert farm.has_unavailable
    assert [line.total for line in farm.lines] == [
        Decimal("4.00"),
        Decimal("0.00"),
        Decimal("0.00"),
    ]


def test_a_cart_mixing_currencies_says_so_and_totals_nothing() -> None:
    view = group_by_page(
        [cart_line(FARM, "4.00"), cart_line(CAFE, "5.00", currency="EUR")],
        [],
        default_currency="GBP",
    )
    assert view.mixed_currencies is not None and "EUR, GBP" in view.mixed_currencies
    assert (view.total, view.currency) == (Decimal("0.00"), "GBP")
    assert [(g.subtotal, g.currency) for g in view.groups] == [
        (Decimal("4.00"), "GBP"),
        (Decimal("5.00"), "EUR"),
    ]


def test_a_view_of_the_whole_cart_gives_the_badge_numbers_of_the_summary() -> None:
    start = datetime(2026, 7, 4, 17, 0, tzinfo=UTC)
    booking = CartEntry(1, "Barn dance", "Events", start, None, Decimal("12.50"), "GBP", CAFE)
    view = group_by_page(
        [cart_line(FARM, "4.00", 2), cart_line(FARM, "9.00", 5, available=False)],
        [booking],
        default_currency="GBP",
    )
    # What the summary counts: the lines that can be bought, and the bookings.
    assert view.summary() == CartSummary(2, 1, Decimal("20.50"), "GBP")
    assert group_by_page([], [], default_currency="EUR").summary() == empty_summary("EUR")


def test_a_view_mixing_currencies_gives_no_badge_numbers() -> None:
    view = group_by_page(
        [cart_line(FARM, "4.00"), cart_line(CAFE, "5.00", currency="EUR")],
        [],
        default_currency="GBP",
    )
    with pytest.raises(CartError):
        view.summary()


@pytest.mark.parametrize(
    ("total", "shown"),
    [("0", "0.00"), ("5", "5.00"), ("0.1", "0.10"), ("1234567.89", "1234567.89")],
)
def test_the_summary_shows_money_as_a_string_with_two_decimals(total: str, shown: str) -> None:
    summary = CartSummary(product_count=2, entry_count=1, total=Decimal(total), currency="GBP")
    assert summary.as_json() == {
        "count": 3,
        "total": shown,
        "currency": "GBP",
        "product_count": 2,
        "entry_count": 1,
    }
