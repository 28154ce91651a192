"""Take out of the cart exactly what a paid order bought, nothing more."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.identity import Identity
from models import CartItem, Order


def order_owner(order: Order) -> Identity:
    """The cart an order came from (the user's once an anonymous order was claimed)."""
    if order.user_id is not None:
        return Identity(user_id=order.user_id)
    assert order.session_id is not None
    return Identity(session_id=order.session_id)


async def clear_cart_for_order(session: AsyncSession, order: Order) -> None:
    """Lower each bought line by the quantity ordered; lines bought in full go.

    Lines added or raised after checkout stay in the cart for the shopper's next order.
    """
    owner = order_owner(order)
    for item in order.items:
        same_line = (
            owner.owns(CartItem),
            CartItem.product_id == item.product_id,
            CartItem.market_place_id == item.market_place_id,
            CartItem.deleted_at.is_(None),
        )
        await session.execute(
            update(CartItem)
            .where(*same_line, CartItem.quantity <= item.quantity)
            .values(deleted_at=func.now(), updated_at=func.now())
        )
        await session.execute(
            update(CartItem)
            .where(*same_line, CartItem.quantity > item.quantity)
            .values(quantity=CartItem.quantity - item.quantity, updated_at=func.now())
        )
