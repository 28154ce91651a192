"""Cart writes: add a product, set a line's quantity, remove a line.

Every write of one owner runs under that owner's advisory lock, so racing requests
end as if they had run one after the other; the partial unique index keeps one live
line per owner, product and market place whatever happens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.get_cart import get_cart_lines
from bp.cart.services.identity import Identity, lock_identity
from bp.cart.services.total import unit_price
from models import CalendarEntry, CartItem, MarketPlace, Product
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


async def _buyable_product(session: AsyncSession, product_id: int) -> Product:
    product = await session.get(Product, product_id) if fits_sql_integer(product_id) else None
    if product is None or product.deleted_at is not None:
        raise NotFoundError("That product is not available any more.")
    if unit_price(product.regular_price, product.special_price) is None:
        raise CartError(f"{product.title} has no price yet, so it cannot be bought.")
    return product


async def _market_place_for(
    session: AsyncSession, product: Product, market_place_id: int | None
) -> int:
    chosen = market_place_id if market_place_id is not None else product.market_place_id
    if chosen is None:
        raise CartError(f"Please choose where to buy {product.title}.")
    if product.market_place_id is not None and chosen != product.market_place_id:
        raise CartError(f"{product.title} is not sold at that market.")
    if not fits_sql_integer(chosen) or await session.get(MarketPlace, chosen) is None:
        raise NotFoundError("That market does not exist.")
    return chosen


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
    held = await _cart_currencies(session, identity)
    if held and currency not in held:
        raise CartError(
            f"Your cart holds items priced in {', '.join(sorted(held))}; this one is priced "
            f"in {currency}. Please check out your cart before adding it."
        )


def _live_line_conflict(identity: Identity) -> dict[str, object]:
    owner = "user_id" if identity.user_id is not None else "session_id"
    return {
        "index_elements": [owner, "product_id", "market_place_id"],
        "index_where": text(f"deleted_at IS NULL AND {owner} IS NOT NULL"),
    }


async def upsert_line(
    session: AsyncSession,
    identity: Identity,
    *,
    product_id: int,
    market_place_id: int,
    quantity: int,
    max_quantity: int,
) -> int | None:
    """Add `quantity` to the owner's live line; None when that would pass the maximum."""
    statement = insert(CartItem).values(
        **identity.columns(),
        product_id=product_id,
        market_place_id=market_place_id,
        quantity=quantity,
    )
    upsert = statement.on_conflict_do_update(
        **_live_line_conflict(identity),  # type: ignore[arg-type]
        set_={
            "quantity": CartItem.quantity + statement.excluded.quantity,
            "updated_at": func.now(),
        },
        where=CartItem.quantity + statement.excluded.quantity <= max_quantity,
    ).returning(CartItem.quantity)
    new_quantity: int | None = await session.scalar(upsert)
    return new_quantity


async def add_to_cart(
    session: AsyncSession,
    identity: Identity,
    *,
    product_id: int,
    quantity: int,
    market_place_id: int | None,
    max_quantity: int,
) -> LineChange:
    """Put `quantity` of a product in the owner's cart (adding to a line already there)."""
    await lock_identity(session, identity)
    product = await _buyable_product(session, product_id)
    market = await _market_place_for(session, product, market_place_id)
    await check_currency(session, identity, product.currency)
    if quantity > max_quantity:
        raise CartError(f"You can have at most {max_quantity} of {product.title} in your cart.")
    new_quantity = await upsert_line(
        session,
        identity,
        product_id=product.id,
        market_place_id=market,
        quantity=quantity,
        max_quantity=max_quantity,
    )
    if new_quantity is None:
        raise CartError(f"You can have at most {max_quantity} of {product.title} in your cart.")
    return LineChange(product.title, new_quantity, product.id)


async def _live_lines(
    session: AsyncSession, identity: Identity, product_id: int, market_place_id: int | None
) -> list[CartItem]:
    if not fits_sql_integer(product_id, market_place_id):
        return []
    query = select(CartItem).where(
        identity.owns(CartItem),
        CartItem.product_id == product_id,
        CartItem.deleted_at.is_(None),
    )
    if market_place_id is not None:
        query = query.where(CartItem.market_place_id == market_place_id)
    return list(await session.scalars(query.with_for_update()))


async def _product_title(session: AsyncSession, product_id: int) -> str:
    title = await session.scalar(select(Product.title).where(Product.id == product_id))
    return title or "That product"


async def set_quantity(
    session: AsyncSession,
    identity: Identity,
    *,
    product_id: int,
    quantity: int,
    market_place_id: int | None,
    max_quantity: int,
) -> LineChange:
    """Set a line's quantity; 0 removes it."""
    if quantity == 0:
        return await remove_from_cart(
            session, identity, product_id=product_id, market_place_id=market_place_id
        )
    await lock_identity(session, identity)
    lines = await _live_lines(session, identity, product_id, market_place_id)
    if not lines:
        raise NotFoundError("That product is not in your cart.")
    if len(lines) > 1:
        raise CartError("That product is in your cart from several markets; choose one.")
    # A line of a product no longer sold can be taken out (quantity 0), not raised.
    product = await _buyable_product(session, product_id)
    if quantity > max_quantity:
        raise CartError(f"You can have at most {max_quantity} of one product in your cart.")
    await session.execute(
        update(CartItem)
        .where(CartItem.id == lines[0].id)
        .values(quantity=quantity, updated_at=func.now())
    )
    return LineChange(product.title, quantity, product.id)


async def remove_from_cart(
    session: AsyncSession,
    identity: Identity,
    *,
    product_id: int,
    market_place_id: int | None,
) -> LineChange:
    """Take a product's line(s) out of the cart (soft delete)."""
    await lock_identity(session, identity)
    lines = await _live_lines(session, identity, product_id, market_place_id)
    if not lines:
        raise NotFoundError("That product is not in your cart.")
    await session.execute(
        update(CartItem)
        .where(CartItem.id.in_([line.id for line in lines]))
        .values(deleted_at=func.now(), updated_at=func.now())
    )
    return LineChange(await _product_title(session, product_id), 0, product_id)


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
    changes = []
    for box in wanted:
        now = held.get((box.product_id, box.market_place_id))
        if now == box.asked or (now is None and box.asked == 0):
            continue  # already so: nothing to tell
        try:
            change = await set_quantity(
                session,
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
