"""The cart badge numbers, in one query: what the sibling apps show on every page.

The hottest path of the service: its statement is compiled once per shape of
question and runs on the asyncpg connection directly (`services.direct_reads`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import Select, and_, bindparam, func, literal, select

from bp.cart.services.calendar_cart import entry_in_cart
from bp.cart.services.get_cart import (
    OWNER_PARAMETERS,
    OwnerKind,
    owner_condition,
    owner_kind,
    owner_params,
)
from bp.cart.services.identity import Identity
from bp.cart.services.total import quantize_money
from models import Calendar, CalendarEntry, CartItem, MarketPlace, Post, Product
from services.direct_reads import DirectQuery, fetch_row
from services.errors import CartError, NotFoundError
from services.navigation import NavItem, get_navigation_tree, navigation_column, navigation_items

ZERO = Decimal("0.00")


@dataclass(frozen=True)
class CartSummary:
    product_count: int
    entry_count: int
    total: Decimal
    currency: str

    @property
    def count(self) -> int:
        return self.product_count + self.entry_count

    def as_json(self) -> dict[str, Any]:
        """The internal API's shape; money as a string."""
        return {
            "count": self.count,
            "total": f"{self.total:.2f}",
            "currency": self.currency,
            "product_count": self.product_count,
            "entry_count": self.entry_count,
        }


def empty_summary(currency: str) -> CartSummary:
    return CartSummary(0, 0, ZERO, currency)


def _page_id() -> Any:
    return (
        select(Post.id)
        .where(Post.slug == bindparam("page_slug"), Post.is_page.is_(True))
        .limit(1)
        .scalar_subquery()
    )


@lru_cache(maxsize=8)
def _summary_query(kind: OwnerKind, scoped: bool) -> DirectQuery:
    """The statement for one shape of question, compiled once."""
    parameters = (*OWNER_PARAMETERS[kind], *(("page_slug",) if scoped else ()))
    return DirectQuery(_summary_statement(kind, scoped), parameters=parameters)


def _summary_statement(kind: OwnerKind, scoped: bool) -> Select[Any]:
    price = func.coalesce(Product.special_price, Product.regular_price)
    page_id = _page_id() if scoped else None
    owner_lines = owner_condition(CartItem, kind)
    owner_entries = owner_condition(CalendarEntry, kind)
    lines = (
        select(
            func.coalesce(func.sum(CartItem.quantity), 0).label("quantity"),
            func.coalesce(func.sum(CartItem.quantity * price), 0).label("amount"),
            func.array_agg(func.distinct(Product.currency)).label("currencies"),
        )
        .join(Product, Product.id == CartItem.product_id)
        .where(
            owner_lines,
            CartItem.deleted_at.is_(None),
            Product.deleted_at.is_(None),
            price.is_not(None),
        )
    )
    entries = select(
        func.count(CalendarEntry.id).label("quantity"),
        func.coalesce(func.sum(CalendarEntry.cost), 0).label("amount"),
        func.array_agg(func.distinct(CalendarEntry.currency)).label("currencies"),
    ).where(owner_entries, entry_in_cart())
    if page_id is not None:
        lines = lines.join(
            MarketPlace,
            and_(MarketPlace.id == CartItem.market_place_id, MarketPlace.post_id == page_id),
        )
        entries = entries.join(
            Calendar,
            and_(Calendar.id == CalendarEntry.calendar_id, Calendar.post_id == page_id),
        )
    line_row = lines.subquery("lines")
    entry_row = entries.subquery("entries")
    return select(
        page_id.label("page_id") if page_id is not None else literal(None).label("page_id"),
        line_row.c.quantity,
        line_row.c.amount,
        line_row.c.currencies,
        entry_row.c.quantity.label("entry_quantity"),
        entry_row.c.amount.label("entry_amount"),
        entry_row.c.currencies.label("entry_currencies"),
    ).select_from(line_row.join(entry_row, literal(True)))


async def get_cart_summary(
    connection: asyncpg.Connection,
    identity: Identity | None,
    *,
    page_slug: str | None = None,
    default_currency: str,
) -> CartSummary:
    """Counts and total of the owner's cart (or one page's part), in one query."""
    if identity is None and page_slug is None:
        return empty_summary(default_currency)
    params = owner_params(identity)
    if page_slug is not None:
        params["page_slug"] = page_slug
    query = _summary_query(owner_kind(identity), page_slug is not None)
    row = await fetch_row(connection, query, params)
    assert row is not None  # aggregates: always one row
    if page_slug is not None and row["page_id"] is None:
        raise NotFoundError(f"There is no page called {page_slug!r}.")
    return _summary(row, default_currency)


@lru_cache(maxsize=4)
def _header_query(kind: OwnerKind) -> DirectQuery:
    statement = _summary_statement(kind, False).add_columns(navigation_column().label("navigation"))
    return DirectQuery(statement, parameters=OWNER_PARAMETERS[kind])


async def get_page_header(
    connection: asyncpg.Connection,
    identity: Identity | None,
    *,
    default_currency: str,
    blog_url: str,
) -> tuple[CartSummary, list[NavItem]]:
    """What every page's header shows, in one query: the cart badge's numbers (as
    `get_cart_summary()` counts them, refusing a cart of mixed currencies) and the menu."""
    if identity is None:
        navigation = await get_navigation_tree(connection, blog_url=blog_url)
        return empty_summary(default_currency), navigation
    row = await fetch_row(connection, _header_query(owner_kind(identity)), owner_params(identity))
    assert row is not None  # aggregates: always one row
    summary = _summary(row, default_currency)
    return summary, navigation_items(row["navigation"] or (), blog_url=blog_url)


def _summary(row: Mapping[str, Any], default_currency: str) -> CartSummary:
    currencies = {c for c in (row["currencies"] or []) + (row["entry_currencies"] or []) if c}
    if len(currencies) > 1:
        raise CartError("Your cart mixes currencies; please check it out page by page.")
    return CartSummary(
        product_count=int(row["quantity"]),
        entry_count=int(row["entry_quantity"]),
        total=quantize_money(Decimal(row["amount"]) + Decimal(row["entry_amount"])),
        currency=currencies.pop() if currencies else default_currency,
    )
