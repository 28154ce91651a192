"""Money given back through SumUp's refund API (the cart owns refunds)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, updated_at_column

REFUND_STATUSES = ("pending", "succeeded", "failed")


class Refund(Base):
    """One refund of one attempt's payment.

    `pending` from the moment it is reserved until SumUp's answer (or, after a timeout,
    the transaction's refunded amount) settles it as `succeeded` or `failed`.
    """

    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("checkout_attempts.id"), index=True)
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str] = mapped_column(String(255))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    sumup_transaction_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    # `admin` (the blog app's refund API) or `auto` (money an order could not take).
    requested_by: Mapped[str] = mapped_column(String(16))
    # Whether the refund counts against the order's kept payment (False for a surplus).
    of_order_payment: Mapped[bool] = mapped_column(server_default=text("true"))
    error: Mapped[str | None] = mapped_column(Text)
    # A pending refund's worker holds it until then; after, another may settle it.
    lease_until: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    settled_at: Mapped[datetime | None]

    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'succeeded', 'failed')", name="status"),
        CheckConstraint("requested_by IN ('admin', 'auto')", name="requested_by"),
        Index("ix_refunds_pending", "created_at", postgresql_where=text("status = 'pending'")),
    )
