"""Branch-aware Alembic migrations: `cart` (ours, production) and `siblings` (dev/test)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
BRANCHES = ("siblings", "cart")


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the project's migrations against `database_url`."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, branches: tuple[str, ...] = BRANCHES) -> None:
    """Bring each named branch to its head (siblings before cart)."""
    config = alembic_config(database_url)
    for branch in branches:
        command.upgrade(config, f"{branch}@head")


def downgrade(database_url: str, branches: tuple[str, ...] = BRANCHES) -> None:
    """Take each named branch back to empty (cart before siblings)."""
    config = alembic_config(database_url)
    for branch in reversed(branches):
        command.downgrade(config, f"{branch}@base")
