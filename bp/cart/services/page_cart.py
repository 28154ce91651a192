"""The cart as shoppers see it: grouped by page, with subtotals and a grand total."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg
from sqlalchemy import bindparam, select

from bp.cart.services.calendar_cart import CartEntry, read_cart_entries
from bp.cart.services.get_cart import CartLine, PageRef, page_paid_directly, read_cart_lines
from bp.cart.services.identity import Identity
from bp.cart.services.summary import CartSummary
from bp.cart.services.total import Totals, sum_amounts
from models import Post
from models.order import order_number
from services.direct_reads import DirectQuery, fetch_row
from services.errors import CartError, NotFoundError


@dataclass
class PageGroup:
    page: PageRef
    lines: list[CartLine] = field(default_factory=list)
    entries: list[CartEntry] = field(default_factory=list)
    subtotal: Decimal = Decimal("0.00")
    currency: str = "GBP"

    @property
    def has_unavailable(self) -> bool:
        return any(not line.available for line in self.lines)


@dataclass
class CartView:
    groups: list[PageGroup]
    total: Decimal
    currency: str
    mixed_currencies: str | None = None

    @property
    def is_empty(self) -> bool:
        return not self.groups

    @property
    def count(self) -> int:
        return sum(
            sum(line.quantity for line in group.lines) + len(group.entries) for group in self.groups
        )

    def summary(self) -> CartSummary:
        """The badge's numbers for what the view holds, as `get_cart_summary()` counts them
        (the lines that can be bought, and the bookings); a cart of mixed currencies is
        refused as there."""
        if self.mixed_currencies is not None:
            raise CartError(self.mixed_currencies)
        lines = [line for group in self.groups for line in group.lines if line.available]
        entries = sum(len(group.entries) for group in self.groups)
        return CartSummary(sum(line.quantity for line in lines), entries, self.total, self.currency)

    @property
    def unpaid_orders(self) -> list[HoldingOrder]:
        """Unpaid orders that hold bookings of this cart, oldest first."""
        held: dict[int, list[str]] = {}
        for group in self.groups:
            for entry in group.entries:
                if entry.held_by is not None:
                    held.setdefault(entry.held_by, []).append(entry.name)
        return [HoldingOrder(order_id, names) for order_id, names in sorted(held.items())]


@dataclass(frozen=True)
class HoldingOrder:
    """An unpaid order holding bookings the cart shows: the shopper pays or cancels it."""

    id: int
    booking_names: list[str]
    total_amount: None = None  # the notice names what it holds, not the order's total
    currency: str = "GBP"

    @property
    def number(self) -> str:
        return order_number(self.id)

    @property
    def holds(self) -> str:
        """What the order holds, for the notice."""
        return ", ".join(self.booking_names)


_PAGE_BY_SLUG = DirectQuery(
    select(Post.id, Post.slug, Post.title, page_paid_directly().label("paid_directly")).where(
        Post.slug == bindparam("slug"), Post.is_page.is_(True)
    ),
    parameters=("slug",),
)


async def get_page(connection: asyncpg.Connection, slug: str) -> PageRef:
    """A page by its slug, with whether it takes payment itself; 404 when there is no such page."""
    row = await fetch_row(connection, _PAGE_BY_SLUG, {"slug": slug})
    if row is None:
        raise NotFoundError("There is no such page.")
    return PageRef(row["id"], row["slug"], row["title"], row["paid_directly"])


def _totals(lines: list[CartLine], entries: list[CartEntry], currency: str) -> Totals:
    amounts = [(line.total, line.currency) for line in lines if line.available]
    amounts += [(entry.total, entry.currency) for entry in entries]
    return sum_amounts(amounts, default_currency=currency)


def group_by_page(
    lines: list[CartLine], entries: list[CartEntry], *, default_currency: str
) -> CartView:
    """Lines and entries grouped by page, in menu order, with subtotals."""
    groups: dict[int, PageGroup] = {}
    for line in lines:
        groups.setdefault(line.page.id, PageGroup(line.page)).lines.append(line)
    for entry in entries:
        groups.setdefault(entry.page.id, PageGroup(entry.page)).entries.append(entry)
    mixed: str | None = None
    for group in groups.values():
        try:
            totals = _totals(group.lines, group.entries, default_currency)
        except CartError as error:
            mixed = error.message
            continue
        group.subtotal, group.currency = totals.amount, totals.currency
    try:
        grand = _totals(lines, entries, default_currency)
    except CartError as error:
        mixed = error.message
        grand = Totals(Decimal("0.00"), default_currency)
    return CartView(list(groups.values()), grand.amount, grand.currency, mixed)


async def get_cart_view(
    connection: asyncpg.Connection,
    identity: Identity | None,
    *,
    default_currency: str,
    page_slug: str | None = None,
) -> CartView:
    """The owner's whole cart, or the part of it from the page called `page_slug` (two
    queries, whatever its size)."""
    if identity is None:
        return CartView([], Decimal("0.00"), default_currency)
    lines = await read_cart_lines(connection, identity, page_slug=page_slug)
    entries = await read_cart_entries(connection, identity, page_slug=page_slug)
    return group_by_page(lines, entries, default_currency=default_currency)


async def get_page_cart(
    connection: asyncpg.Connection,
    identity: Identity | None,
    *,
    page_slug: str,
    default_currency: str,
) -> tuple[PageRef, CartView]:
    """A page and the owner's part of the cart from it: the page comes with its lines and
    bookings, and is read on its own only when the cart holds nothing of it (404 when
    there is no such page)."""
    view = await get_cart_view(
        connection, identity, default_currency=default_currency, page_slug=page_slug
    )
    page = view.groups[0].page if view.groups else await get_page(connection, page_slug)
    return page, view
