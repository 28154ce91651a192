"""Cart line queries: the live lines of an owner, priced now, with their page.

The cart's read statements are built once per shape of question (owner kind, page
scope, lock) with bound parameters: rebuilding a statement and loading ORM objects
cost more than the query on every cart page (bench/README.md). The pages read them
directly on the asyncpg connection (`services.direct_reads`); checkout reads and
locks them as Core rows in its transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

import asyncpg
from sqlalchemy import ColumnElement, Select, and_, bindparam, exists, literal, select
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.identity import Identity
from bp.cart.services.total import line_total, unit_price
from models import CartItem, MarketPlace, PageConfig, Post, Product
from services.direct_reads import DirectQuery, fetch_all
from services.page_merchants import has_own_merchant

OwnerKind = Literal["user", "session", "nobody"]
# The bound parameters `owner_condition()` leaves to `owner_params()`, by kind.
OWNER_PARAMETERS: dict[OwnerKind, tuple[str, ...]] = {
    "user": ("owner_user_id",),
    "session": ("owner_session_id",),
    "nobody": (),
}


def owner_kind(identity: Identity | None) -> OwnerKind:
    """Which shape of owner condition a prepared statement needs."""
    if identity is None:
        return "nobody"
    return "user" if identity.user_id is not None else "session"


def owner_condition(model: Any, kind: OwnerKind) -> ColumnElement[bool]:
    """`Identity.owns()` with bound parameters, for statements built once."""
    if kind == "user":
        return and_(model.user_id == bindparam("owner_user_id"))
    if kind == "session":
        return and_(model.session_id == bindparam("owner_session_id"), model.user_id.is_(None))
    return and_(literal(False))


def owner_params(identity: Identity | None) -> dict[str, Any]:
    """The values for `owner_condition()`'s parameters."""
    if identity is None:
        return {}
    if identity.user_id is not None:
        return {"owner_user_id": identity.user_id}
    return {"owner_session_id": identity.session_id}


@dataclass(frozen=True)
class PageRef:
    """The page (a blog post with `is_page`) a cart line or entry belongs to."""

    id: int
    slug: str
    title: str
    # Whether the page takes payment with its own SumUp account (shoppers are told so).
    paid_directly: bool = False


def page_paid_directly() -> ColumnElement[bool]:
    """SQL: the `Post` takes payment with its own SumUp account, as `PageRef.paid_directly`."""
    return exists().where(PageConfig.post_id == Post.id, has_own_merchant())


@dataclass(frozen=True)
class CartLine:
    id: int
    product_id: int
    product_slug: str
    title: str
    image: str | None
    market_place_id: int
    quantity: int
    unit_price: Decimal | None
    currency: str
    available: bool
    page: PageRef

    @property
    def total(self) -> Decimal:
        """Quantity × live unit price (zero when the product can no longer be bought)."""
        if self.unit_price is None or not self.available:
            return Decimal("0.00")
        return line_total(self.quantity, self.unit_price)


# How a cart read is narrowed to one page: by the page's id (checkout, which has the page)
# or by its slug (a page cart: its page then comes with its lines, with no query of its own).
PageScope = Literal["page_id", "page_slug"]


def page_scope(page_id: int | None = None, page_slug: str | None = None) -> PageScope | None:
    """The scope of a read given the page's id or slug (neither: the whole cart)."""
    if page_id is not None:
        return "page_id"
    return "page_slug" if page_slug is not None else None


def page_condition(scope: PageScope) -> ColumnElement[bool]:
    """SQL: the joined `Post` is the page asked for, by the bound parameter named `scope`."""
    if scope == "page_id":
        return Post.id == bindparam("page_id")
    return and_(Post.slug == bindparam("page_slug"), Post.is_page.is_(True))


@lru_cache(maxsize=16)
def _lines_query(
    kind: OwnerKind, scope: PageScope | None, for_update: bool
) -> Select[*tuple[Any, ...]]:
    query = (
        select(
            CartItem.id,
            CartItem.quantity,
            Product.id.label("product_id"),
            Product.slug.label("product_slug"),
            Product.title,
            Product.image,
            Product.regular_price,
            Product.special_price,
            Product.currency,
            Product.deleted_at.label("product_deleted_at"),
            MarketPlace.id.label("market_place_id"),
            Post.id.label("page_id"),
            Post.slug.label("page_slug"),
            Post.title.label("page_title"),
            page_paid_directly().label("page_paid_directly"),
        )
        .join(Product, Product.id == CartItem.product_id)
        .join(MarketPlace, MarketPlace.id == CartItem.market_place_id)
        .join(Post, Post.id == MarketPlace.post_id)
        .where(owner_condition(CartItem, kind), CartItem.deleted_at.is_(None))
        .order_by(Post.nav_order, Post.title, CartItem.id)
    )
    if scope is not None:
        query = query.where(page_condition(scope))
    if for_update:
        query = query.with_for_update(of=CartItem)
    return query


def owner_page_parameters(kind: OwnerKind, scope: PageScope | None) -> tuple[str, ...]:
    """The bound parameters of a cart read for one owner, optionally of one page."""
    return (*OWNER_PARAMETERS[kind], *((scope,) if scope is not None else ()))


def owner_page_params(
    identity: Identity, page_id: int | None = None, page_slug: str | None = None
) -> dict[str, Any]:
    """Their values: the owner's, and the page's when the read is scoped to one."""
    params = owner_params(identity)
    if page_id is not None:
        params["page_id"] = page_id
    elif page_slug is not None:
        params["page_slug"] = page_slug
    return params


@lru_cache(maxsize=8)
def _direct_lines_query(kind: OwnerKind, scope: PageScope | None) -> DirectQuery:
    return DirectQuery(
        _lines_query(kind, scope, False), parameters=owner_page_parameters(kind, scope)
    )


def _cart_lines(rows: Iterable[Mapping[Any, Any]]) -> list[CartLine]:
    pages: dict[int, PageRef] = {}
    lines = []
    for row in rows:
        page = pages.get(row["page_id"])
        if page is None:
            page = pages[row["page_id"]] = PageRef(
                row["page_id"], row["page_slug"], row["page_title"], row["page_paid_directly"]
            )
        price = unit_price(row["regular_price"], row["special_price"])
        lines.append(
            CartLine(
                id=row["id"],
                product_id=row["product_id"],
                product_slug=row["product_slug"],
                title=row["title"],
                image=row["image"],
                market_place_id=row["market_place_id"],
                quantity=row["quantity"],
                unit_price=price,
                currency=row["currency"],
                available=row["product_deleted_at"] is None and price is not None,
                page=page,
            )
        )
    return lines


async def get_cart_lines(
    session: AsyncSession,
    identity: Identity,
    *,
    page_id: int | None = None,
    for_update: bool = False,
) -> list[CartLine]:
    """Every live line of the owner (optionally of one page), in one query, in the
    session's transaction: with `for_update` they stay locked until it ends (checkout).
    """
    statement = _lines_query(owner_kind(identity), page_scope(page_id), for_update)
    connection = await session.connection()
    rows = await connection.execute(statement, owner_page_params(identity, page_id))
    return _cart_lines(row._mapping for row in rows)


async def read_cart_lines(
    connection: asyncpg.Connection, identity: Identity, *, page_slug: str | None = None
) -> list[CartLine]:
    """The same lines for a page that only shows them (optionally of the page called
    `page_slug`): a direct read (no lock)."""
    query = _direct_lines_query(owner_kind(identity), page_scope(page_slug=page_slug))
    params = owner_page_params(identity, page_slug=page_slug)
    return _cart_lines(await fetch_all(connection, query, params))
