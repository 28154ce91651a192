"""Cart line queries: the live lines of an owner, priced now, with their page."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.identity import Identity
from bp.cart.services.total import line_total, unit_price
from models import CartItem, MarketPlace, Post, Product


@dataclass(frozen=True)
class PageRef:
    """The page (a blog post with `is_page`) a cart line or entry belongs to."""

    id: int
    slug: str
    title: str


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


async def get_cart_lines(
    session: AsyncSession,
    identity: Identity,
    *,
    page_id: int | None = None,
    for_update: bool = False,
) -> list[CartLine]:
    """Every live line of the owner (optionally of one page), in one query.

    With `for_update` the lines stay locked until the transaction ends (checkout).
    """
    query = (
        select(CartItem, Product, MarketPlace, Post)
        .join(Product, Product.id == CartItem.product_id)
        .join(MarketPlace, MarketPlace.id == CartItem.market_place_id)
        .join(Post, Post.id == MarketPlace.post_id)
        .where(identity.owns(CartItem), CartItem.deleted_at.is_(None))
        .order_by(Post.nav_order, Post.title, CartItem.id)
    )
    if page_id is not None:
        query = query.where(MarketPlace.post_id == page_id)
    if for_update:
        query = query.with_for_update(of=CartItem)
    rows = await session.execute(query)
    return [
        CartLine(
            id=item.id,
            product_id=product.id,
            product_slug=product.slug,
            title=product.title,
            image=product.image,
            market_place_id=market.id,
            quantity=item.quantity,
            unit_price=unit_price(product.regular_price, product.special_price),
            currency=product.currency,
            available=product.deleted_at is None
            and unit_price(product.regular_price, product.special_price) is not None,
            page=PageRef(post.id, post.slug, post.title),
        )
        for item, product, market, post in rows
    ]
