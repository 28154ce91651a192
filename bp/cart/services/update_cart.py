"""Cart writes: add a product, set a line's quantity, remove a line.

Every write of one owner runs under that owner's advisory lock, so racing requests
end as if they had run one after the other; the partial unique index keeps one live
line per owner, product and market place whatever happens.

Add, update and remove take an asyncpg connection: the request's write connection
(`services.db.db_write`), whose transaction the owner's lock begins, or a session's
inside its transaction (`services.direct_reads.session_connection`), as the cart
form's typed quantities do. Each is then two statements: the lock, and one that reads
what the checks need and writes when they pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import asyncpg
from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    bindparam,
    func,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.dml import ReturningInsert

from bp.cart.services.get_cart import (
    OWNER_PARAMETERS,
    OwnerKind,
    get_cart_lines,
    owner_condition,
    owner_kind,
    owner_params,
)
from bp.cart.services.identity import Identity, lock_identity, lock_owner
from bp.cart.services.total import unit_price
from models import CalendarEntry, CartItem, MarketPlace, Product
from services.direct_reads import DirectQuery, fetch_all, fetch_row, session_connection
from services.errors import CartError, LineQuantityError, NotFoundError, ServiceError

# Ids and quantities are PostgreSQL `integer`s: a bigger number names nothing, and
# asyncpg refuses to send it, so it must not reach a query.
SQL_INTEGER_MAX = 2**31 - 1


def fits_sql_integer(*values: int | None) -> bool:
    """Whether every given number fits a PostgreSQL `integer` column."""
    return all(
        value is None or -SQL_INTEGER_MAX - 1 <= value <= SQL_INTEGER_MAX for value in values
    )


@dataclass(frozen=True)
class LineChange:
    """What a write did, for the message shown to the shopper."""

    title: str
    quantity: int
    product_id: int | None = None


def refuse_unbuyable(product: Mapping[str, Any] | None) -> None:
    """404 for a product that is gone, `CartError` for one without a price (`product` is
    a row with its title, deleted_at, regular_price and special_price)."""
    if product is None or product["deleted_at"] is not None:
        raise NotFoundError("That product is not available any more.")
    if unit_price(product["regular_price"], product["special_price"]) is None:
        raise CartError(f"{product['title']} has no price yet, so it cannot be bought.")


async def _cart_currencies(session: AsyncSession, identity: Identity) -> set[str]:
    line_currencies = (
        select(Product.currency)
        .join(CartItem, CartItem.product_id == Product.id)
        .where(identity.owns(CartItem), CartItem.deleted_at.is_(None))
    )
    entry_currencies = select(CalendarEntry.currency).where(
        identity.owns(CalendarEntry),
        CalendarEntry.state == "pending",
        CalendarEntry.deleted_at.is_(None),
    )
    rows = await session.scalars(line_currencies.union(entry_currencies))
    return set(rows)


async def check_currency(session: AsyncSession, identity: Identity, currency: str) -> None:
    """Refuse to put a second currency into a cart."""
    refuse_second_currency(await _cart_currencies(session, identity), currency)


def refuse_second_currency(held: set[str], currency: str) -> None:
    """`CartError` when the cart holds another currency than `currency`."""
    if held and currency not in held:
        raise CartError(
            f"Your cart holds items priced in {', '.join(sorted(held))}; this one is priced "
            f"in {currency}. Please check out your cart before adding it."
        )


UPSERT_PARAMETERS = (
    "user_id",
    "session_id",
    "product_id",
    "market_place_id",
    "quantity",
    "max_quantity",
)


@lru_cache(maxsize=4)
def _upsert_query(kind: OwnerKind) -> DirectQuery:
    """Add to the owner's live line, or insert it; built once per owner kind."""
    owner = "user_id" if kind == "user" else "session_id"
    statement = insert(CartItem).values(
        user_id=bindparam("user_id", type_=Integer),
        session_id=bindparam("session_id"),
        product_id=bindparam("product_id"),
        market_place_id=bindparam("market_place_id"),
        quantity=bindparam("quantity"),
    )
    return DirectQuery(_onto_live_line(statement, owner), parameters=UPSERT_PARAMETERS)


def _onto_live_line(statement: Insert, owner: str) -> ReturningInsert[tuple[int]]:
    """`statement` adding its quantity to the owner's live line of the same product and
    market when there is one, as long as the sum stays within `max_quantity`."""
    return statement.on_conflict_do_update(
        index_elements=[owner, "product_id", "market_place_id"],
        index_where=text(f"deleted_at IS NULL AND {owner} IS NOT NULL"),
        set_={
            "quantity": CartItem.quantity + statement.excluded.quantity,
            "updated_at": func.now(),
        },
        where=CartItem.quantity + statement.excluded.quantity <= bindparam("max_quantity"),
    ).returning(CartItem.quantity)


async def upsert_line(
    connection: asyncpg.Connection,
    identity: Identity,
    *,
    product_id: int,
    market_place_id: int,
    quantity: int,
    max_quantity: int,
) -> int | None:
    """Add `quantity` to the owner's live line; None when that would pass the maximum
    (the login merge's: `connection` is inside a transaction holding the owner's lock)."""
    row = await fetch_row(
        connection,
        _upsert_query(owner_kind(identity)),
        {
            **identity.columns(),
            "product_id": product_id,
            "market_place_id": market_place_id,
            "quantity": quantity,
            "max_quantity": max_quantity,
        },
    )
    return None if row is None else int(row["quantity"])


@lru_cache(maxsize=4)
def _add_query(kind: OwnerKind) -> DirectQuery:
    """What an add checks and the add itself, in one statement: the product, whether the
    chosen market (the form's, else the product's) exists, the currencies the cart
    holds, whether all of it allows the add (`buyable`); and then, when it does and a
    quantity is given, the line added to or inserted (`new_quantity`, None when that
    would pass the maximum). Built once per owner kind.

    The caller says which check refused the add from the same row; `buyable` must agree.
    """
    owner = "user_id" if kind == "user" else "session_id"
    chosen = func.coalesce(bindparam("market_place_id", type_=Integer), Product.market_place_id)
    in_cart = aliased(Product)
    held = union_all(
        select(in_cart.currency.label("currency"))
        .join(CartItem, CartItem.product_id == in_cart.id)
        .where(owner_condition(CartItem, kind), CartItem.deleted_at.is_(None)),
        select(CalendarEntry.currency).where(
            owner_condition(CalendarEntry, kind),
            CalendarEntry.state == "pending",
            CalendarEntry.deleted_at.is_(None),
        ),
    ).subquery("held")
    held_currencies = select(func.array_agg(func.distinct(held.c.currency))).scalar_subquery()
    market_exists = select(MarketPlace.id).where(MarketPlace.id == chosen).exists()
    offer = (
        select(
            Product.title,
            Product.deleted_at,
            Product.regular_price,
            Product.special_price,
            Product.currency,
            Product.market_place_id,
            chosen.label("chosen_market"),
            market_exists.label("market_exists"),
            held_currencies.label("held"),
        )
        .where(Product.id == bindparam("product_id"))
        .cte("offer")
    )
    buyable = and_(  # add_to_cart's checks, in its order
        offer.c.deleted_at.is_(None),
        func.coalesce(offer.c.special_price, offer.c.regular_price).is_not(None),  # unit_price
        offer.c.chosen_market.is_not(None),
        or_(
            offer.c.market_place_id.is_(None),
            offer.c.chosen_market == offer.c.market_place_id,
        ),
        offer.c.market_exists,
        or_(offer.c.held.is_(None), offer.c.currency == func.any(offer.c.held)),
    )
    quantity = bindparam("quantity", type_=Integer)
    insert_line = insert(CartItem).from_select(
        ["user_id", "session_id", "product_id", "market_place_id", "quantity"],
        select(
            bindparam("user_id", type_=Integer),
            bindparam("session_id", type_=CartItem.session_id.type),
            bindparam("product_id", type_=Integer),
            offer.c.chosen_market,
            quantity,
        ).where(buyable, quantity.is_not(None)),
    )
    upsert = _onto_live_line(insert_line, owner).cte("added")
    statement = select(
        offer,
        buyable.label("buyable"),
        select(upsert.c.quantity).scalar_subquery().label("new_quantity"),
    )
    return DirectQuery(statement, parameters=(*OWNER_PARAMETERS[kind], *UPSERT_PARAMETERS))


async def add_to_cart(
    connection: asyncpg.Connection,
    identity: Identity,
    *,
    product_id: int,
    quantity: int,
    market_place_id: int | None,
    max_quantity: int,
) -> LineChange:
    """Put `quantity` of a product in the owner's cart (adding to a line already there).

    Under the owner's lock (`lock_owner`), one statement reads everything the checks
    need (product, market, the cart's currencies) and adds the line when they pass.
    """
    await lock_owner(connection, identity)
    row = None
    if fits_sql_integer(product_id):
        fits = fits_sql_integer(market_place_id)
        params = {
            **owner_params(identity),
            **identity.columns(),
            "product_id": product_id,
            "market_place_id": market_place_id if fits else None,
            # No quantity, no write: the checks below refuse it first.
            "quantity": quantity if fits and quantity <= max_quantity else None,
            "max_quantity": max_quantity,
        }
        row = await fetch_row(connection, _add_query(owner_kind(identity)), params)
    refuse_unbuyable(row)
    assert row is not None
    title = row["title"]
    market = market_place_id if market_place_id is not None else row["market_place_id"]
    if market is None:
        raise CartError(f"Please choose where to buy {title}.")
    if row["market_place_id"] is not None and market != row["market_place_id"]:
        raise CartError(f"{title} is not sold at that market.")
    if not fits_sql_integer(market) or not row["market_exists"]:
        raise NotFoundError("That market does not exist.")
    refuse_second_currency(set(row["held"] or ()), row["currency"])
    if quantity > max_quantity:
        raise CartError(f"You can have at most {max_quantity} of {title} in your cart.")
    if not row["buyable"]:  # the statement's checks and these must agree
        raise RuntimeError(f"product {product_id} passed the add's checks but not its statement's")
    if row["new_quantity"] is None:
        raise CartError(f"You can have at most {max_quantity} of {title} in your cart.")
    return LineChange(title, int(row["new_quantity"]), product_id)


def _line_filter(kind: OwnerKind, by_market: bool) -> list[ColumnElement[bool]]:
    """The owner's live line(s) of one product (of one market place when `by_market`)."""
    conditions = [
        owner_condition(CartItem, kind),
        CartItem.product_id == bindparam("product_id"),
        CartItem.deleted_at.is_(None),
    ]
    if by_market:
        conditions.append(CartItem.market_place_id == bindparam("market_place_id"))
    return conditions


def _line_parameters(kind: OwnerKind, by_market: bool) -> tuple[str, ...]:
    return (*OWNER_PARAMETERS[kind], "product_id", *(("market_place_id",) if by_market else ()))


def _line_params(
    identity: Identity, product_id: int, market_place_id: int | None
) -> dict[str, Any]:
    params = {**owner_params(identity), "product_id": product_id}
    if market_place_id is not None:
        params["market_place_id"] = market_place_id
    return params


@lru_cache(maxsize=4)
def _set_quantity_query(kind: OwnerKind, by_market: bool) -> DirectQuery:
    """Set the quantity of the owner's line of a product, in one statement: the live
    lines of the product, locked (not the product), with what the change checks about
    the product; and the update of the line when every check passes (one line, a
    product still sold, a quantity given: `None` when it is above the maximum). The
    caller reads the lines to say which check refused the change, if any."""
    lines = (
        select(
            CartItem.id,
            Product.title,
            Product.deleted_at,
            Product.regular_price,
            Product.special_price,
        )
        .select_from(CartItem)
        .outerjoin(Product, Product.id == CartItem.product_id)
        .where(*_line_filter(kind, by_market))
        .with_for_update(of=CartItem)
        .cte("line")
    )
    quantity = bindparam("quantity", type_=Integer)
    changed = (
        update(CartItem)
        .where(
            CartItem.id == lines.c.id,
            select(func.count()).select_from(lines).scalar_subquery() == 1,
            lines.c.title.is_not(None),  # the product exists
            lines.c.deleted_at.is_(None),
            func.coalesce(lines.c.special_price, lines.c.regular_price).is_not(None),  # unit_price
            quantity.is_not(None),
        )
        .values(quantity=quantity, updated_at=func.now())
        .returning(CartItem.id)
        .cte("changed")
    )
    statement = select(lines, select(changed.c.id).exists().label("changed"))
    return DirectQuery(statement, parameters=(*_line_parameters(kind, by_market), "quantity"))


@lru_cache(maxsize=4)
def _remove_query(kind: OwnerKind, by_market: bool) -> DirectQuery:
    """Take the live lines of a product out (soft delete), giving the product's title."""
    statement = (
        update(CartItem)
        .where(*_line_filter(kind, by_market), Product.id == CartItem.product_id)
        .values(deleted_at=func.now(), updated_at=func.now())
        .returning(Product.title)
    )
    return DirectQuery(statement, parameters=_line_parameters(kind, by_market))


async def set_quantity(
    connection: asyncpg.Connection,
    identity: Identity,
    *,
    product_id: int,
    quantity: int,
    market_place_id: int | None,
    max_quantity: int,
) -> LineChange:
    """Set a line's quantity; 0 removes it. Under the owner's lock (`lock_owner`)."""
    if quantity == 0:
        return await remove_from_cart(
            connection, identity, product_id=product_id, market_place_id=market_place_id
        )
    await lock_owner(connection, identity)
    lines = []
    if fits_sql_integer(product_id, market_place_id):
        query = _set_quantity_query(owner_kind(identity), market_place_id is not None)
        params = _line_params(identity, product_id, market_place_id)
        params["quantity"] = quantity if quantity <= max_quantity else None
        lines = await fetch_all(connection, query, params)
    if not lines:
        raise NotFoundError("That product is not in your cart.")
    if len(lines) > 1:
        raise CartError("That product is in your cart from several markets; choose one.")
    # A line of a product no longer sold can be taken out (quantity 0), not raised.
    line = lines[0]
    refuse_unbuyable(line if line["title"] is not None else None)
    if quantity > max_quantity:
        raise CartError(f"You can have at most {max_quantity} of one product in your cart.")
    if not line["changed"]:  # the statement's checks and these must agree
        raise RuntimeError(f"the quantity of cart line {line['id']} was not set")
    return LineChange(line["title"], quantity, product_id)


async def remove_from_cart(
    connection: asyncpg.Connection,
    identity: Identity,
    *,
    product_id: int,
    market_place_id: int | None,
) -> LineChange:
    """Take a product's line(s) out of the cart (soft delete). Under the owner's lock."""
    await lock_owner(connection, identity)
    removed = []
    if fits_sql_integer(product_id, market_place_id):
        query = _remove_query(owner_kind(identity), market_place_id is not None)
        params = _line_params(identity, product_id, market_place_id)
        removed = await fetch_all(connection, query, params)
    if not removed:
        raise NotFoundError("That product is not in your cart.")
    return LineChange(removed[0]["title"] or "That product", 0, product_id)


@dataclass(frozen=True)
class TypedQuantity:
    """What one line's quantity box held when a cart page's form was sent."""

    product_id: int
    market_place_id: int
    shown: int  # the quantity the page showed in the box
    asked: int  # the quantity in the box when the form was sent


async def set_typed_quantities(
    session: AsyncSession,
    identity: Identity,
    *,
    typed: Sequence[TypedQuantity],
    max_quantity: int,
) -> list[LineChange]:
    """Save the quantities typed on a cart page, all or none; what actually changed.

    Only boxes whose value differs from what the page showed count as typed, so a page
    left open never undoes a change made since in another tab. Each is set as Update
    sets it (same checks, same limits); a refusal names its line (`LineQuantityError`).
    """
    wanted = [box for box in typed if box.asked != box.shown]
    if not wanted:
        return []
    await lock_identity(session, identity)
    held = {
        (line.product_id, line.market_place_id): line.quantity
        for line in await get_cart_lines(session, identity)
    }
    connection = await session_connection(session)  # in the session's transaction
    changes = []
    for box in wanted:
        now = held.get((box.product_id, box.market_place_id))
        if now == box.asked or (now is None and box.asked == 0):
            continue  # already so: nothing to tell
        try:
            change = await set_quantity(
                connection,
                identity,
                product_id=box.product_id,
                quantity=box.asked,
                market_place_id=box.market_place_id,
                max_quantity=max_quantity,
            )
        except ServiceError as error:
            raise LineQuantityError(
                error.message,
                product_id=box.product_id,
                offer_set=max_quantity if box.asked > max_quantity else None,
                status_code=error.status_code,
            ) from None
        changes.append(change)
    return changes
