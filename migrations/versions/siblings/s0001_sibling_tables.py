"""sibling tables

Revision ID: s0001
Revises:
Create Date: 2026-11-24 09:07:57.570201
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "s0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("siblings",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "calendars",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=191), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendars")),
        sa.UniqueConstraint("slug", name=op.f("uq_calendars_slug")),
    )
    op.create_index(op.f("ix_calendars_post_id"), "calendars", ["post_id"], unique=False)
    op.create_table(
        "market_places",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("post_id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=191), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_market_places")),
        sa.UniqueConstraint("slug", name=op.f("uq_market_places_slug")),
    )
    op.create_index(op.f("ix_market_places_post_id"), "market_places", ["post_id"], unique=False)
    op.create_table(
        "posts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=191), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("is_page", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="published", nullable=False),
        sa.Column("nav_order", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts")),
        sa.UniqueConstraint("slug", name=op.f("uq_posts_slug")),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "calendar_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("calendar_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cost", sa.Numeric(precision=12, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), server_default="GBP", nullable=False),
        sa.Column("state", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("order_id", sa.Integer(), nullable=True),
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
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'ordered', 'provisional', 'confirmed', 'cancelled')",
            name=op.f("ck_calendar_entries_state"),
        ),
        sa.CheckConstraint("cost >= 0", name=op.f("ck_calendar_entries_cost")),
        sa.CheckConstraint(
            "num_nonnulls(user_id, session_id) = 1", name=op.f("ck_calendar_entries_one_identity")
        ),
        sa.ForeignKeyConstraint(
            ["calendar_id"],
            ["calendars.id"],
            name=op.f("fk_calendar_entries_calendar_id_calendars"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_entries")),
    )
    op.create_index(
        op.f("ix_calendar_entries_calendar_id"), "calendar_entries", ["calendar_id"], unique=False
    )
    op.create_index(
        op.f("ix_calendar_entries_order_id"), "calendar_entries", ["order_id"], unique=False
    )
    op.create_index(
        op.f("ix_calendar_entries_session_id"), "calendar_entries", ["session_id"], unique=False
    )
    op.create_index(
        op.f("ix_calendar_entries_user_id"), "calendar_entries", ["user_id"], unique=False
    )
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("market_place_id", sa.Integer(), nullable=True),
        sa.Column("slug", sa.String(length=191), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("image", sa.String(length=512), nullable=True),
        sa.Column("regular_price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("special_price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), server_default="GBP", nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "regular_price IS NULL OR regular_price >= 0", name=op.f("ck_products_regular_price")
        ),
        sa.CheckConstraint(
            "special_price IS NULL OR special_price >= 0", name=op.f("ck_products_special_price")
        ),
        sa.ForeignKeyConstraint(
            ["market_place_id"],
            ["market_places.id"],
            name=op.f("fk_products_market_place_id_market_places"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_products")),
        sa.UniqueConstraint("slug", name=op.f("uq_products_slug")),
    )
    op.create_index(
        op.f("ix_products_market_place_id"), "products", ["market_place_id"], unique=False
    )
    op.create_table(
        "cart_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("session_id", sa.String(length=64), nullable=True),
        sa.Column("product_id", sa.Integer(), nullable=False),
        sa.Column("market_place_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
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
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "num_nonnulls(user_id, session_id) = 1", name=op.f("ck_cart_items_one_identity")
        ),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_cart_items_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["market_place_id"],
            ["market_places.id"],
            name=op.f("fk_cart_items_market_place_id_market_places"),
        ),
        sa.ForeignKeyConstraint(
            ["product_id"], ["products.id"], name=op.f("fk_cart_items_product_id_products")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cart_items")),
    )
    op.create_index(
        op.f("ix_cart_items_market_place_id"), "cart_items", ["market_place_id"], unique=False
    )
    op.create_index(op.f("ix_cart_items_product_id"), "cart_items", ["product_id"], unique=False)
    op.create_index(op.f("ix_cart_items_session_id"), "cart_items", ["session_id"], unique=False)
    op.create_index(op.f("ix_cart_items_user_id"), "cart_items", ["user_id"], unique=False)
    op.create_index(
        "uq_cart_items_live_session_line",
        "cart_items",
        ["session_id", "product_id", "market_place_id"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL AND session_id IS NOT NULL"),
    )
    op.create_index(
        "uq_cart_items_live_user_line",
        "cart_items",
        ["user_id", "product_id", "market_place_id"],
        unique=True,
        postgresql_where=sa.text("deleted_at IS NULL AND user_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_cart_items_live_user_line",
        table_name="cart_items",
        postgresql_where=sa.text("deleted_at IS NULL AND user_id IS NOT NULL"),
    )
    op.drop_index(
        "uq_cart_items_live_session_line",
        table_name="cart_items",
        postgresql_where=sa.text("deleted_at IS NULL AND session_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_cart_items_user_id"), table_name="cart_items")
    op.drop_index(op.f("ix_cart_items_session_id"), table_name="cart_items")
    op.drop_index(op.f("ix_cart_items_product_id"), table_name="cart_items")
    op.drop_index(op.f("ix_cart_items_market_place_id"), table_name="cart_items")
    op.drop_table("cart_items")
    op.drop_index(op.f("ix_products_market_place_id"), table_name="products")
    op.drop_table("products")
    op.drop_index(op.f("ix_calendar_entries_user_id"), table_name="calendar_entries")
    op.drop_index(op.f("ix_calendar_entries_session_id"), table_name="calendar_entries")
    op.drop_index(op.f("ix_calendar_entries_order_id"), table_name="calendar_entries")
    op.drop_index(op.f("ix_calendar_entries_calendar_id"), table_name="calendar_entries")
    op.drop_table("calendar_entries")
    op.drop_table("users")
    op.drop_table("posts")
    op.drop_index(op.f("ix_market_places_post_id"), table_name="market_places")
    op.drop_table("market_places")
    op.drop_index(op.f("ix_calendars_post_id"), table_name="calendars")
    op.drop_table("calendars")
