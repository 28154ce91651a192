"""Orders and their frozen line items (the cart app owns both)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, created_at_column, updated_at_column

ORDER_STATUSES = ("pending", "paid", "failed", "expired", "cancelled")
UNPAID_STATUSES = ("pending", "failed", "expired")


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    session_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The page paid for; None means a whole-cart checkout.
    page_post_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[Decimal]
    description: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    cart_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    checkout_attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    sumup_merchant_code: Mapped[str | None] = mapped_column(String(32))
    sumup_checkout_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    sumup_reference: Mapped[str | None] = mapped_column(String(64), unique=True)
    sumup_hosted_url: Mapped[str | None] = mapped_column(Text)
    sumup_status: Mapped[str | None] = mapped_column(String(16))
    sumup_transaction_code: Mapped[str | None] = mapped_column(String(64))
    sumup_transaction_id: Mapped[str | None] = mapped_column(String(64))
    # A payment that landed after the order was cancelled: kept, flagged for the treasurer.
    needs_refund: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    paid_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # When the latest checkout attempt began: unpaid orders expire counting from here.
    checkout_started_at: Mapped[datetime | None]
    # When the reconcile sweep last asked SumUp; keeps racing sweeps off the same order.
    last_checked_at: Mapped[datetime | None]

    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", lazy="raise", order_by="OrderItem.id"
    )

    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'paid', 'failed', 'expired', 'cancelled')", name="status"
        ),
        CheckConstraint("num_nonnulls(user_id, session_id) >= 1", name="has_identity"),
        CheckConstraint("total_amount >= 0", name="total_amount"),
        CheckConstraint("status <> 'paid' OR paid_at IS NOT NULL", name="paid_has_paid_at"),
        # The reconcile sweep walks unpaid orders oldest first.
        Index(
            "ix_orders_unpaid_created_at",
            "created_at",
            postgresql_where=text("status IN ('pending', 'failed', 'expired')"),
        ),
    )

    @property
    def is_unpaid(self) -> bool:
        """Whether the order can still be paid."""
        return self.status in UNPAID_STATUSES

    @property
    def number(self) -> str:
        """The order number shown to shoppers."""
        return f"RA-{self.id:06d}"


class OrderItem(Base):
    __tablename__ = "order_items"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(Integer, index=True)
    product_title: Mapped[str] = mapped_column(String(255))
    product_slug: Mapped[str] = mapped_column(String(191))
    product_image: Mapped[str | None] = mapped_column(String(512))
    market_place_id: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    line_total: Mapped[Decimal]

    order: Mapped[Order] = relationship(back_populates="items", lazy="raise")

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("line_total = quantity * unit_price", name="line_total"),
    )
