"""Cart arithmetic in Decimal: line totals, subtotals, one currency per cart."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from services.errors import CartError

CENT = Decimal("0.01")


def quantize_money(amount: Decimal) -> Decimal:
    """Round to the minor unit (pence) the way a till does."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def unit_price(regular: Decimal | None, special: Decimal | None) -> Decimal | None:
    """The live price: the special price when there is one."""
    return special if special is not None else regular


def line_total(quantity: int, price: Decimal) -> Decimal:
    """Quantity × unit price, in pence."""
    return quantize_money(price * quantity)


@dataclass(frozen=True)
class Totals:
    amount: Decimal
    currency: str


def sum_amounts(amounts: Iterable[tuple[Decimal, str]], *, default_currency: str) -> Totals:
    """Add money of one currency; mixing currencies is refused with a clear message."""
    total = Decimal("0.00")
    currencies: set[str] = set()
    for amount, currency in amounts:
        total += amount
        currencies.add(currency)
    if len(currencies) > 1:
        raise CartError(
            "Your cart holds items priced in different currencies "
            f"({', '.join(sorted(currencies))}); please check them out separately."
        )
    return Totals(quantize_money(total), currencies.pop() if currencies else default_currency)
