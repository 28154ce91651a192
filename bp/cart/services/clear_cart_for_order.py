"""Take out of the cart exactly what a paid order bought, nothing more."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.identity import Identity
from models import CartItem, Order, OrderItem


def order_owner(order: Order) -> Identity:
    """The cart an order came from (the user's once an anonymous order was claimed)."""
    if order.user_id is not None:
        return Identity(user_id=order.user_id)
    assert order.session_id is not None
    return Identity(session_id=order.session_id)


async def clear_cart_for_order(session: AsyncSession, order: Order) -> None:
    """Lower each bought line by the quantity ordered; lines bought in full go.

    Lines added or raised after checkout stay in the cart for the shopper's next order.
    An order a sign-in claimed while unpaid (its items' `merged_quantity` set) bought
    from the anonymous cart: from the user's line it takes only what the merge moved
    in, so the user's own quantity stays; a line the merge kept apart (another
    currency) is still in the anonymous cart, and goes from there.
    """
    owner = order_owner(order)
    for item in order.items:
        if item.merged_quantity is None:
            await _lower_line(session, owner, item, item.quantity)
            continue
        await _lower_line(session, owner, item, item.merged_quantity)
        if order.session_id is not None:
            anonymous = Identity(session_id=order.session_id)
            await _lower_line(session, anonymous, item, item.quantity - item.merged_quantity)


async def _lower_line(
    session: AsyncSession, owner: Identity, item: OrderItem, quantity: int
) -> None:
    if quantity <= 0:
        return
    same_line = (
        owner.owns(CartItem),
        CartItem.product_id == item.product_id,
        CartItem.market_place_id == item.market_place_id,
        CartItem.deleted_at.is_(None),
    )
    await session.execute(
        update(CartItem)
        .where(*same_line, CartItem.quantity <= quantity)
        .values(deleted_at=func.now(), updated_at=func.now())
    )
    await session.execute(
        update(CartItem)
        .where(*same_line, CartItem.quantity > quantity)
        .values(quantity=CartItem.quantity - quantity, updated_at=func.now())
    )
