"""Calendar entries in the cart: an owner's bookings not yet paid for, with their page.

A booking is in the cart while it is pending, and also while an unpaid order holds
it (pending or failed): the cart shows it, counts it and a checkout of the cart
takes it, so a checkout never charges for something the cart did not show.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import ColumnElement, Select, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.get_cart import (
    OwnerKind,
    PageRef,
    PageScope,
    owner_condition,
    owner_kind,
    owner_page_parameters,
    owner_page_params,
    page_condition,
    page_paid_directly,
    page_scope,
)
from bp.cart.services.identity import Identity, lock_identity
from bp.cart.services.update_cart import fits_sql_integer
from models import Calendar, CalendarEntry, Order, Post
from models.order import order_number
from services.direct_reads import DirectQuery, fetch_all
from services.errors import NotFoundError


@dataclass(frozen=True)
class CartEntry:
    id: int
    name: str
    calendar_name: str
    start_at: datetime
    end_at: datetime | None
    cost: Decimal
    currency: str
    page: PageRef
    # The unpaid order holding this booking, if one does (None: simply pending).
    held_by: int | None = None

    @property
    def total(self) -> Decimal:
        return self.cost

    @property
    def held_by_number(self) -> str | None:
        """The number of the unpaid order holding it, as shoppers know it."""
        return order_number(self.held_by) if self.held_by is not None else None


HOLDING_STATUSES = ("pending", "failed")


def entry_in_cart() -> ColumnElement[bool]:
    """SQL: the entry is pending, or held by an unpaid order (see the module docstring)."""
    held = (
        select(Order.id)
        .where(Order.id == CalendarEntry.order_id, Order.status.in_(HOLDING_STATUSES))
        .exists()
    )
    return and_(
        CalendarEntry.deleted_at.is_(None),
        or_(CalendarEntry.state == "pending", and_(CalendarEntry.state == "ordered", held)),
    )


@lru_cache(maxsize=8)
def _entries_query(kind: OwnerKind, scope: PageScope | None) -> Select[*tuple[Any, ...]]:
    """The in-cart entries statement for one shape of question, built once."""
    query = (
        select(
            CalendarEntry.id,
            CalendarEntry.name,
            CalendarEntry.start_at,
            CalendarEntry.end_at,
            CalendarEntry.cost,
            CalendarEntry.currency,
            Calendar.name.label("calendar_name"),
            Post.id.label("page_id"),
            Post.slug.label("page_slug"),
            Post.title.label("page_title"),
            page_paid_directly().label("page_paid_directly"),
            CalendarEntry.state,
            CalendarEntry.order_id,
        )
        .join(Calendar, Calendar.id == CalendarEntry.calendar_id)
        .join(Post, Post.id == Calendar.post_id)
        .where(owner_condition(CalendarEntry, kind), entry_in_cart())
        .order_by(Post.nav_order, Post.title, CalendarEntry.start_at, CalendarEntry.id)
    )
    if scope is not None:
        query = query.where(page_condition(scope))
    return query


@lru_cache(maxsize=8)
def _direct_entries_query(kind: OwnerKind, scope: PageScope | None) -> DirectQuery:
    return DirectQuery(_entries_query(kind, scope), parameters=owner_page_parameters(kind, scope))


def _cart_entries(rows: Iterable[Mapping[Any, Any]]) -> list[CartEntry]:
    return [
        CartEntry(
            id=row["id"],
            name=row["name"],
            calendar_name=row["calendar_name"],
            start_at=row["start_at"],
            end_at=row["end_at"],
            cost=row["cost"],
            currency=row["currency"],
            page=PageRef(
                row["page_id"], row["page_slug"], row["page_title"], row["page_paid_directly"]
            ),
            held_by=row["order_id"] if row["state"] == "ordered" else None,
        )
        for row in rows
    ]


async def get_cart_entries(
    session: AsyncSession, identity: Identity, *, page_id: int | None = None
) -> list[CartEntry]:
    """The owner's entries in the cart (optionally of one page), in one query, in the
    session's transaction (checkout)."""
    connection = await session.connection()
    rows = await connection.execute(
        _entries_query(owner_kind(identity), page_scope(page_id)),
        owner_page_params(identity, page_id),
    )
    return _cart_entries(row._mapping for row in rows)


async def read_cart_entries(
    connection: asyncpg.Connection, identity: Identity, *, page_slug: str | None = None
) -> list[CartEntry]:
    """The same entries for a page that only shows them (optionally of the page called
    `page_slug`): a direct read."""
    query = _direct_entries_query(owner_kind(identity), page_scope(page_slug=page_slug))
    params = owner_page_params(identity, page_slug=page_slug)
    return _cart_entries(await fetch_all(connection, query, params))


async def remove_entry_from_cart(
    session: AsyncSession, identity: Identity, *, entry_id: int
) -> str:
    """Cancel one of the owner's pending entries; 404 for anyone else's or a non-pending one."""
    if not fits_sql_integer(entry_id):
        raise NotFoundError("That booking is not in your cart.")
    await lock_identity(session, identity)
    name = await session.scalar(
        update(CalendarEntry)
        .where(
            CalendarEntry.id == entry_id,
            identity.owns(CalendarEntry),
            CalendarEntry.state == "pending",
            CalendarEntry.deleted_at.is_(None),
        )
        .values(state="cancelled", deleted_at=func.now())
        .returning(CalendarEntry.name)
    )
    if name is None:
        raise NotFoundError("That booking is not in your cart.")
    return name


async def add_entry_to_cart(
    session: AsyncSession,
    identity: Identity,
    *,
    calendar_id: int,
    name: str,
    start_at: datetime,
    end_at: datetime | None,
    cost: Decimal,
    currency: str,
) -> CalendarEntry:
    """Book a slot into the cart as a pending entry (the events app does this in production)."""
    from bp.cart.services.update_cart import check_currency

    await lock_identity(session, identity)
    await check_currency(session, identity, currency)
    entry = CalendarEntry(
        calendar_id=calendar_id,
        name=name,
        start_at=start_at,
        end_at=end_at,
        cost=cost,
        currency=currency,
        state="pending",
        **identity.columns(),
    )
    session.add(entry)
    await session.flush()
    return entry
