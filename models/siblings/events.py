"""Events app tables: calendars and their bookable entries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, created_at_column, updated_at_column

ENTRY_STATES = ("pending", "ordered", "provisional", "confirmed", "cancelled")


class Calendar(Base):
    __tablename__ = "calendars"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(Integer, index=True)
    slug: Mapped[str] = mapped_column(String(191), unique=True)
    name: Mapped[str] = mapped_column(String(255))


class CalendarEntry(Base):
    __tablename__ = "calendar_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("calendars.id"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    start_at: Mapped[datetime]
    end_at: Mapped[datetime | None]
    cost: Mapped[Decimal]
    currency: Mapped[str] = mapped_column(String(3), server_default="GBP")
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    user_id: Mapped[int | None] = mapped_column(Integer, index=True)
    session_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The order that claimed this entry; orders belong to the cart app, so no FK.
    order_id: Mapped[int | None] = mapped_column(Integer, index=True)
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()
    deleted_at: Mapped[datetime | None]

    calendar: Mapped[Calendar] = relationship(lazy="raise")

    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'ordered', 'provisional', 'confirmed', 'cancelled')",
            name="state",
        ),
        CheckConstraint("num_nonnulls(user_id, session_id) = 1", name="one_identity"),
        CheckConstraint("cost >= 0", name="cost"),
    )
