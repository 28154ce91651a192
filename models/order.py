"""Orders and their frozen line items (the cart app owns both)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, created_at_column, updated_at_column

ORDER_STATUSES = (
    "pending",
    "paid",
    "failed",
    "expired",
    "cancelled",
    "partially_refunded",
    "refunded",
)
UNPAID_STATUSES = ("pending", "failed", "expired")
# Orders that kept a payment: refunds are taken from these.
PAID_STATUSES = ("paid", "partially_refunded")


def order_number(order_id: int) -> str:
    """The order number shown to shoppers: `RA-000042`."""
    return f"RA-{order_id:06d}"


STATUS_CHECK = "status IN ({})".format(", ".join(f"'{status}'" for status in ORDER_STATUSES))


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    session_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The page paid for; None means a whole-cart checkout.
    page_post_id: Mapped[int | None] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), server_default="pending")
    currency: Mapped[str] = mapped_column(String(3))
    total_amount: Mapped[Decimal]
    description: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    cart_fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    sumup_merchant_code: Mapped[str | None] = mapped_column(String(32))
    # The attempt a shopper is sent to now (checkout_attempts.id; none before the first).
    current_attempt_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    # The attempt whose payment the order kept, and its SumUp transaction.
    paid_attempt_id: Mapped[int | None] = mapped_column(BigInteger)
    sumup_transaction_code: Mapped[str | None] = mapped_column(String(64))
    sumup_transaction_id: Mapped[str | None] = mapped_column(String(64))
    # What went back to the shopper through refunds that SumUp accepted.
    refunded_amount: Mapped[Decimal] = mapped_column(server_default=text("0"))
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    paid_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    # When a sign-in moved this anonymous order to `user_id` (the login merge);
    # `session_id` still names the anonymous cart it was bought from.
    claimed_by_user_at: Mapped[datetime | None]
    # When the latest checkout attempt began: unpaid orders expire counting from here.
    checkout_started_at: Mapped[datetime | None]
    # Bumped by every status change: the conditional updates compare it.
    version: Mapped[int] = mapped_column(Integer, server_default="0")

    items: Mapped[list[OrderItem]] = relationship(
        back_populates="order", lazy="raise", order_by="OrderItem.id"
    )
    bookings: Mapped[list[OrderBooking]] = relationship(
        lazy="raise", order_by="(OrderBooking.start_at, OrderBooking.id)"
    )

    __table_args__ = (
        CheckConstraint(STATUS_CHECK, name="status"),
        CheckConstraint("num_nonnulls(user_id, session_id) >= 1", name="has_identity"),
        CheckConstraint("total_amount >= 0", name="total_amount"),
        CheckConstraint("status <> 'paid' OR paid_at IS NOT NULL", name="paid_has_paid_at"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= total_amount", name="refunded_amount"
        ),
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
    def is_final(self) -> bool:
        """Whether no payment can be taken for this order any more."""
        return self.status not in UNPAID_STATUSES

    @property
    def refundable_amount(self) -> Decimal:
        """What a refund can still give back (nothing unless the order kept a payment)."""
        if self.status not in PAID_STATUSES:
            return Decimal("0.00")
        return self.total_amount - self.refunded_amount

    @property
    def refunded_total(self) -> Decimal:
        """What went back of the order's own payment (money it could not take aside)."""
        return self.refunded_amount

    @property
    def held_total(self) -> Decimal:
        """The total without the bookings the order let go (needs `bookings` loaded)."""
        released = sum((b.cost for b in self.bookings if b.released), Decimal("0.00"))
        return self.total_amount - released

    @property
    def number(self) -> str:
        """The order number shown to shoppers."""
        return order_number(self.id)


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
    # Set when a sign-in claimed the order unpaid: how many of `quantity` the merge moved
    # into the user's line (the rest was no longer in the anonymous cart, or was capped).
    # Paying takes this many out of the user's line, never what the user had already.
    merged_quantity: Mapped[int | None] = mapped_column(Integer)

    order: Mapped[Order] = relationship(back_populates="items", lazy="raise")

    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("line_total = quantity * unit_price", name="line_total"),
        CheckConstraint(
            "merged_quantity >= 0 AND merged_quantity <= quantity", name="merged_quantity"
        ),
    )


class OrderBooking(Base):
    """A calendar entry an order claimed, as it was then; kept after it is released."""

    __tablename__ = "order_bookings"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    entry_id: Mapped[int] = mapped_column(Integer, index=True)
    name: Mapped[str] = mapped_column(String(255))
    start_at: Mapped[datetime]
    cost: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    # Set when the entry went back to the cart (the order was cancelled or expired).
    released_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("order_id", "entry_id"),)

    @property
    def released(self) -> bool:
        """Whether the order no longer holds this booking."""
        return self.released_at is not None


class OrderTransition(Base):
    """One status change of an order: the order's history."""

    __tablename__ = "order_transitions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    cause: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(String(255))
    attempt_id: Mapped[int | None] = mapped_column(BigInteger)
    occurred_at: Mapped[datetime] = created_at_column()


class CheckoutKey(Base):
    """A checkout form's idempotency key and the order it led to (created or reused), so
    the same form sent again answers with the same order whatever the cart is now."""

    __tablename__ = "checkout_keys"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = created_at_column()
