"""Reading orders for their owner: one order, or the owner's list."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from bp.cart.services.identity import Identity
from models import Order
from services.errors import NotFoundError


async def get_order_for_owner(
    session: AsyncSession, identity: Identity | None, order_id: int
) -> Order:
    """The order with its items when `identity` placed it; 404 for anyone else."""
    if identity is None:
        raise NotFoundError("There is no such order.")
    order = await session.scalar(
        select(Order)
        .options(selectinload(Order.items))
        .where(Order.id == order_id, identity.owns(Order))
        .execution_options(populate_existing=True)
    )
    if order is None:
        raise NotFoundError("There is no such order.")
    return order
