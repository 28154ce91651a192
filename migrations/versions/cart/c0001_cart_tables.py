"""cart tables

Revision ID: c0001
Revises:
Create Date: 2026-11-24 09:08:06.141314
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("cart",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("page_post_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total_amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("description", sa.String(length=255), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=True),
        sa.Column("cart_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("checkout_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sumup_merchant_code", sa.String(length=32), nullable=True),
        sa.Column("sumup_checkout_id", sa.String(length=255), nullable=True),
        sa.Column("sumup_reference", sa.String(length=64), nullable=True),
        sa.Column("sumup_hosted_url", sa.Text(), nullable=True),
        sa.Column("sumup_status", sa.String(length=16), nullable=True),
        sa.Column("sumup_transaction_code", sa.String(length=64), nullable=True),
        sa.Column("sumup_transaction_id", sa.String(length=64), nullable=True),
        sa.Column("needs_refund", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status <> 'paid' OR paid_at IS NOT NULL", name=op.f("ck_orders_paid_has_paid_at")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'paid', 'failed', 'expired', 'cancelled')",
            name=op.f("ck_orders_status"),
        ),
        sa.CheckConstraint(
            "num_nonnulls(user_id, session_id) >= 1", name=op.f("ck_orders_has_identity")
        ),
        sa.CheckConstraint("total_amount >= 0", name=op.f("ck_orders_total_amount")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_orders")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_orders_idempotency_key")),
        sa.UniqueConstraint("sumup_checkout_id", name=op.f("uq_orders_sumup_checkout_id")),
        sa.UniqueConstraint("sumup_reference", name=op.f("uq_orders_sumup_reference")),
    )
    op.create_index(
        op.f("ix_orders_cart_fingerprint"), "orders", ["cart_fingerprint"], unique=False
    )
    op.create_index(op.f("ix_orders_page_post_id"), "orders", ["page_post_id"], unique=False)
    op.create_index(op.f("ix_orders_session_id"), "orders", ["session_id"], unique=False)
    op.create_index(
        "ix_orders_unpaid_created_at",
        "orders",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('pending', 'failed', 'expired')"),
    )
    op.create_index(op.f("ix_orders_user_id"), "orders", ["user_id"], unique=False)
    op.create_table(
        "page_configs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("sumup_merchant_code", sa.String(length=32), nullable=True),
        sa.Column("sumup_api_key", sa.String(length=255), nullable=True),
        sa.Column("sumup_checkout_prefix", sa.String(length=16), nullable=True),
        sa.Column("currency", sa.String(length=3), server_default="GBP", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_page_configs")),
        sa.UniqueConstraint("post_id", name=op.f("uq_page_configs_post_id")),
    )
    op.create_table(
        "order_items",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("product_title", sa.String(length=255), nullable=False),
        sa.Column("product_slug", sa.String(length=191), nullable=False),
        sa.Column("product_image", sa.String(length=512), nullable=True),
        sa.Column("market_place_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("line_total", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.CheckConstraint(
            "line_total = quantity * unit_price", name=op.f("ck_order_items_line_total")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_order_items_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_items_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_items")),
    )
    op.create_index(op.f("ix_order_items_order_id"), "order_items", ["order_id"], unique=False)
    op.create_index(op.f("ix_order_items_product_id"), "order_items", ["product_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_order_items_product_id"), table_name="order_items")
    op.drop_index(op.f("ix_order_items_order_id"), table_name="order_items")
    op.drop_table("order_items")
    op.drop_table("page_configs")
    op.drop_index(op.f("ix_orders_user_id"), table_name="orders")
    op.drop_index(
        "ix_orders_unpaid_created_at",
        table_name="orders",
        postgresql_where=sa.text("status IN ('pending', 'failed', 'expired')"),
    )
    op.drop_index(op.f("ix_orders_session_id"), table_name="orders")
    op.drop_index(op.f("ix_orders_page_post_id"), table_name="orders")
    op.drop_index(op.f("ix_orders_cart_fingerprint"), table_name="orders")
    op.drop_table("orders")
