"""Per-page SumUp settings (the cart app owns them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, created_at_column, updated_at_column


class PageConfig(Base):
    __tablename__ = "page_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    post_id: Mapped[int] = mapped_column(Integer, unique=True)
    sumup_merchant_code: Mapped[str | None] = mapped_column(String(32))
    # Never logged, never rendered: repr is overridden below.
    sumup_api_key: Mapped[str | None] = mapped_column(String(255))
    sumup_checkout_prefix: Mapped[str | None] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(String(3), server_default="GBP")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = updated_at_column()

    @property
    def has_own_merchant(self) -> bool:
        """Whether the page takes payments with its own SumUp account."""
        return bool(self.sumup_merchant_code and self.sumup_api_key)

    def __repr__(self) -> str:
        return f"PageConfig(post_id={self.post_id}, merchant={self.sumup_merchant_code!r})"
