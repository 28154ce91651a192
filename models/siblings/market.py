"""Market app tables: market places, products and cart lines."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, created_at_column, updated_at_column


class MarketPlace(Base):
    __tablename__ = "market_places"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The page (blog post) this market place belongs to; owned by another app, so no FK.
    post_id: Mapped[int] = mapped_column(Integer, index=True)
    slug: Mapped[str] = mapped_column(String(191), unique=True)
    name: Mapped[str] = mapped_column(String(255))


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    market_place_id: Mapped[int | None] = mapped_column(ForeignKey("market_places.id"), index=True)
    slug: Mapped[str] = mapped_column(String(191), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    image: Mapped[str | None] = mapped_column(String(512))
    regular_price: Mapped[Decimal | None]
    special_price: Mapped[Decimal | None]
    currency: Mapped[str] = mapped_column(String(3), server_default="GBP")
    deleted_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("regular_price IS NULL OR regular_price >= 0", name="regular_price"),
        CheckConstraint("special_price IS NULL OR special_price >= 0", name="special_price"),
    )


class CartItem(Base):
    __tablename__ = "cart_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    session_id: Mapped[str | None] = mapped_column(String(64), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    market_place_id: Mapped[int] = mapped_column(ForeignKey("market_places.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    deleted_at: Mapped[datetime | None]

    product: Mapped[Product] = relationship(lazy="raise")
    market_place: Mapped[MarketPlace] = relationship(lazy="raise")

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("num_nonnulls(user_id, session_id) = 1", name="one_identity"),
        # One live line per identity, product and market place.
        Index(
            "uq_cart_items_live_user_line",
            "user_id",
            "product_id",
            "market_place_id",
            unique=True,
            postgresql_where=text("deleted_at IS NULL AND user_id IS NOT NULL"),
        ),
        Index(
            "uq_cart_items_live_session_line",
            "session_id",
            "product_id",
            "market_place_id",
            unique=True,
            postgresql_where=text("deleted_at IS NULL AND session_id IS NOT NULL"),
        ),
    )
