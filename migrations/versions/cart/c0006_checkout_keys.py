"""checkout_keys: every checkout form's idempotency key and the order it led to

Revision ID: c0006
Revises: c0005
Create Date: 2026-12-02 19:05:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0006"
down_revision: str | None = "c0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "checkout_keys",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_checkout_keys_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_checkout_keys")),
    )
    op.create_index(op.f("ix_checkout_keys_order_id"), "checkout_keys", ["order_id"], unique=False)
    op.execute(
        "INSERT INTO checkout_keys (key, order_id, created_at) "
        "SELECT idempotency_key, id, created_at FROM orders WHERE idempotency_key IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_checkout_keys_order_id"), table_name="checkout_keys")
    op.drop_table("checkout_keys")
