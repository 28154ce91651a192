"""payment lifecycle: checkout attempts, refunds, bookings and history of orders

Every SumUp checkout becomes a row of `checkout_attempts` (the order points at its
current one), refunds get their table, an order keeps the bookings it claimed (also
after they are released) and the history of its status changes.

Revision ID: c0005
Revises: c0004
Create Date: 2026-12-02 17:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c0005"
down_revision: str | None = "c0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "'pending', 'paid', 'failed', 'expired', 'cancelled', 'partially_refunded', 'refunded'"


def _timestamp(name: str, *, default: bool = False) -> sa.Column:
    if default:
        return sa.Column(
            name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        )
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


def upgrade() -> None:
    op.create_table(
        "checkout_attempts",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=64), nullable=False),
        sa.Column("merchant_code", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("sumup_checkout_id", sa.String(length=255), nullable=True),
        sa.Column("hosted_url", sa.Text(), nullable=True),
        sa.Column("sumup_status", sa.String(length=16), nullable=True),
        sa.Column("transaction_id", sa.String(length=64), nullable=True),
        sa.Column("transaction_code", sa.String(length=64), nullable=True),
        sa.Column("origin", sa.String(length=16), server_default="created", nullable=False),
        _timestamp("created_at", default=True),
        _timestamp("checked_at"),
        _timestamp("retired_at"),
        _timestamp("settled_at"),
        sa.Column("surplus_reason", sa.String(length=64), nullable=True),
        sa.CheckConstraint("amount >= 0", name=op.f("ck_checkout_attempts_amount")),
        sa.CheckConstraint(
            "sumup_status IS NULL OR sumup_status IN ('PENDING', 'FAILED', 'PAID', 'EXPIRED')",
            name=op.f("ck_checkout_attempts_sumup_status"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_checkout_attempts_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_checkout_attempts")),
        sa.UniqueConstraint("reference", name=op.f("uq_checkout_attempts_reference")),
        sa.UniqueConstraint(
            "sumup_checkout_id", name=op.f("uq_checkout_attempts_sumup_checkout_id")
        ),
    )
    op.create_index(
        op.f("ix_checkout_attempts_order_id"), "checkout_attempts", ["order_id"], unique=False
    )
    op.create_index(
        "uq_checkout_attempts_order_number",
        "checkout_attempts",
        ["order_id", "number"],
        unique=True,
    )
    op.create_index(
        "ix_checkout_attempts_open_checked_at",
        "checkout_attempts",
        ["checked_at"],
        unique=False,
        postgresql_where=sa.text("settled_at IS NULL"),
    )
    op.create_table(
        "refunds",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("attempt_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=False),
        sa.Column("sumup_transaction_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("requested_by", sa.String(length=16), nullable=False),
        sa.Column("of_order_payment", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _timestamp("lease_until"),
        _timestamp("created_at", default=True),
        _timestamp("updated_at", default=True),
        _timestamp("settled_at"),
        sa.CheckConstraint("amount > 0", name=op.f("ck_refunds_amount_positive")),
        sa.CheckConstraint(
            "requested_by IN ('admin', 'auto')", name=op.f("ck_refunds_requested_by")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed')", name=op.f("ck_refunds_status")
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["checkout_attempts.id"],
            name=op.f("fk_refunds_attempt_id_checkout_attempts"),
        ),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name=op.f("fk_refunds_order_id_orders"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_refunds_idempotency_key")),
    )
    op.create_index(op.f("ix_refunds_attempt_id"), "refunds", ["attempt_id"], unique=False)
    op.create_index(op.f("ix_refunds_order_id"), "refunds", ["order_id"], unique=False)
    op.create_index(
        "ix_refunds_pending",
        "refunds",
        ["created_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "order_bookings",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cost", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        _timestamp("released_at"),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_bookings_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_bookings")),
        sa.UniqueConstraint(
            "order_id", "entry_id", name=op.f("uq_order_bookings_order_id_entry_id")
        ),
    )
    op.create_index(
        op.f("ix_order_bookings_entry_id"), "order_bookings", ["entry_id"], unique=False
    )
    op.create_index(
        op.f("ix_order_bookings_order_id"), "order_bookings", ["order_id"], unique=False
    )
    op.create_table(
        "order_transitions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=False),
        sa.Column("cause", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=255), nullable=True),
        sa.Column("attempt_id", sa.BigInteger(), nullable=True),
        _timestamp("occurred_at", default=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_order_transitions_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_order_transitions")),
    )
    op.create_index(
        op.f("ix_order_transitions_order_id"), "order_transitions", ["order_id"], unique=False
    )

    op.add_column("orders", sa.Column("current_attempt_id", sa.BigInteger(), nullable=True))
    op.add_column("orders", sa.Column("paid_attempt_id", sa.BigInteger(), nullable=True))
    op.add_column(
        "orders",
        sa.Column(
            "refunded_amount",
            sa.Numeric(precision=12, scale=2),
            server_default=sa.text("0"),
            nullable=False,
        ),
    )
    op.add_column("orders", sa.Column("version", sa.Integer(), server_default="0", nullable=False))
    op.create_index(
        op.f("ix_orders_current_attempt_id"), "orders", ["current_attempt_id"], unique=False
    )
    op.alter_column(
        "orders",
        "status",
        type_=sa.String(length=20),
        existing_type=sa.String(length=16),
        existing_nullable=False,
        existing_server_default="pending",
    )
    op.drop_constraint(op.f("ck_orders_status"), "orders", type_="check")
    op.create_check_constraint(op.f("ck_orders_status"), "orders", f"status IN ({STATUSES})")
    op.create_check_constraint(
        op.f("ck_orders_refunded_amount"),
        "orders",
        "refunded_amount >= 0 AND refunded_amount <= total_amount",
    )
    # Orders made before attempts had a table: their latest checkout becomes attempt 1..n.
    op.execute(
        """
        INSERT INTO checkout_attempts (order_id, number, reference, merchant_code, amount,
            currency, sumup_checkout_id, hosted_url, sumup_status, transaction_id,
            transaction_code, created_at, settled_at)
        SELECT id, checkout_attempts, sumup_reference, coalesce(sumup_merchant_code, ''),
            total_amount, currency, sumup_checkout_id, sumup_hosted_url, sumup_status,
            sumup_transaction_id, sumup_transaction_code,
            coalesce(checkout_started_at, created_at),
            CASE WHEN sumup_status IN ('PAID', 'EXPIRED') THEN now() END
        FROM orders WHERE sumup_reference IS NOT NULL
        """
    )
    op.execute(
        """
        UPDATE orders SET current_attempt_id = a.id,
            paid_attempt_id = CASE WHEN orders.status = 'paid' THEN a.id END
        FROM checkout_attempts a WHERE a.order_id = orders.id
        """
    )
    for name in ("sumup_reference", "sumup_checkout_id"):
        op.drop_constraint(op.f(f"uq_orders_{name}"), "orders", type_="unique")
    for name in (
        "checkout_attempts",
        "sumup_checkout_id",
        "sumup_reference",
        "sumup_hosted_url",
        "sumup_status",
        "needs_refund",
        "last_checked_at",
    ):
        op.drop_column("orders", name)


def downgrade() -> None:
    op.add_column("orders", sa.Column("last_checked_at", sa.DateTime(timezone=True)))
    op.add_column(
        "orders",
        sa.Column("needs_refund", sa.Boolean(), server_default=sa.text("false"), nullable=False),
    )
    op.add_column("orders", sa.Column("sumup_status", sa.String(length=16)))
    op.add_column("orders", sa.Column("sumup_hosted_url", sa.Text()))
    op.add_column("orders", sa.Column("sumup_reference", sa.String(length=64)))
    op.add_column("orders", sa.Column("sumup_checkout_id", sa.String(length=255)))
    op.add_column(
        "orders",
        sa.Column("checkout_attempts", sa.Integer(), server_default="0", nullable=False),
    )
    op.execute(
        """
        UPDATE orders SET checkout_attempts = a.number, sumup_reference = a.reference,
            sumup_checkout_id = a.sumup_checkout_id, sumup_hosted_url = a.hosted_url,
            sumup_status = a.sumup_status
        FROM checkout_attempts a WHERE a.id = orders.current_attempt_id
        """
    )
    op.execute(
        "UPDATE orders SET status = 'paid' WHERE status IN ('partially_refunded', 'refunded')"
    )
    op.create_unique_constraint(
        op.f("uq_orders_sumup_checkout_id"), "orders", ["sumup_checkout_id"]
    )
    op.create_unique_constraint(op.f("uq_orders_sumup_reference"), "orders", ["sumup_reference"])
    op.drop_constraint(op.f("ck_orders_refunded_amount"), "orders", type_="check")
    op.drop_constraint(op.f("ck_orders_status"), "orders", type_="check")
    op.create_check_constraint(
        op.f("ck_orders_status"),
        "orders",
        "status IN ('pending', 'paid', 'failed', 'expired', 'cancelled')",
    )
    op.alter_column(
        "orders",
        "status",
        type_=sa.String(length=16),
        existing_type=sa.String(length=20),
        existing_nullable=False,
        existing_server_default="pending",
    )
    op.drop_index(op.f("ix_orders_current_attempt_id"), table_name="orders")
    for name in ("version", "refunded_amount", "paid_attempt_id", "current_attempt_id"):
        op.drop_column("orders", name)
    op.drop_index(op.f("ix_order_transitions_order_id"), table_name="order_transitions")
    op.drop_table("order_transitions")
    op.drop_index(op.f("ix_order_bookings_order_id"), table_name="order_bookings")
    op.drop_index(op.f("ix_order_bookings_entry_id"), table_name="order_bookings")
    op.drop_table("order_bookings")
    op.drop_index(
        "ix_refunds_pending", table_name="refunds", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_index(op.f("ix_refunds_order_id"), table_name="refunds")
    op.drop_index(op.f("ix_refunds_attempt_id"), table_name="refunds")
    op.drop_table("refunds")
    op.drop_index(
        "ix_checkout_attempts_open_checked_at",
        table_name="checkout_attempts",
        postgresql_where=sa.text("settled_at IS NULL"),
    )
    op.drop_index("uq_checkout_attempts_order_number", table_name="checkout_attempts")
    op.drop_index(op.f("ix_checkout_attempts_order_id"), table_name="checkout_attempts")
    op.drop_table("checkout_attempts")
