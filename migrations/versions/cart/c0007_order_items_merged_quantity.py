"""order_items.merged_quantity: what a sign-in moved into the user's line for an unpaid order

Revision ID: c0007
Revises: c0006
Create Date: 2026-12-03 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0007"
down_revision: str | None = "c0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("order_items", sa.Column("merged_quantity", sa.Integer(), nullable=True))
    op.create_check_constraint(
        op.f("ck_order_items_merged_quantity"),
        "order_items",
        "merged_quantity >= 0 AND merged_quantity <= quantity",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_order_items_merged_quantity"), "order_items", type_="check")
    op.drop_column("order_items", "merged_quantity")
