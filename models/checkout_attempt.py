"""Every SumUp checkout the cart created or adopted for an order (the cart owns them)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column

# SumUp's checkout statuses; None until SumUp has answered the create.
SUMUP_STATUSES = ("PENDING", "FAILED", "PAID", "EXPIRED")


class CheckoutAttempt(Base):
    """One SumUp checkout of an order, followed until it is final.

    An attempt is final once it is settled: SumUp said PAID or EXPIRED, or we retired it
    (DELETE at SumUp) because its order was superseded, cancelled, expired or paid again.
    FAILED is not final: SumUp's hosted page lets the payer try again.
    """

    __tablename__ = "checkout_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    # `<prefix>-<order>-<attempt>-<random>`: the random part means no other environment,
    # restored backup or earlier attempt can ever have made a checkout with it.
    reference: Mapped[str] = mapped_column(String(64), unique=True)
    merchant_code: Mapped[str] = mapped_column(String(32))
    amount: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3))
    sumup_checkout_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    hosted_url: Mapped[str | None] = mapped_column(Text)
    sumup_status: Mapped[str | None] = mapped_column(String(16))
    transaction_id: Mapped[str | None] = mapped_column(String(64))
    transaction_code: Mapped[str | None] = mapped_column(String(64))
    # How the checkout was found: made by our create, or looked up by reference after
    # a timeout or a 409 (and verified before it was stored).
    origin: Mapped[str] = mapped_column(String(16), server_default="created")
    created_at: Mapped[datetime] = created_at_column()
    checked_at: Mapped[datetime | None]
    retired_at: Mapped[datetime | None]
    settled_at: Mapped[datetime | None]
    # Why a payment on this attempt cannot be kept (superseded, cancelled, paid twice).
    surplus_reason: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        CheckConstraint(
            "sumup_status IS NULL OR sumup_status IN ('PENDING', 'FAILED', 'PAID', 'EXPIRED')",
            name="sumup_status",
        ),
        CheckConstraint("amount >= 0", name="amount"),
        Index("uq_checkout_attempts_order_number", "order_id", "number", unique=True),
        # The sweep's work list: open attempts, least recently checked first.
        Index(
            "ix_checkout_attempts_open_checked_at",
            "checked_at",
            postgresql_where=text("settled_at IS NULL"),
        ),
    )

    @property
    def is_open(self) -> bool:
        """Whether SumUp may still take a payment on this attempt."""
        return self.settled_at is None
