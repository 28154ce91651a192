"""Alembic environment: async engine, two independent branches (cart, siblings).

Every online run holds `MIGRATION_LOCK` for its whole transaction: instances that
start together on one database migrate one after another, and each one reads the
version table only once it holds the lock, so the later ones find the work done.
"""

from __future__ import annotations

import asyncio
import logging
import os

from alembic import context
from sqlalchemy import func, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from models import Base
from services.schema import MIGRATION_LOCK

config = context.config
target_metadata = Base.metadata
log = logging.getLogger("services.schema")


def _database_url() -> str:
    url = config.attributes.get("database_url") or os.environ.get("DATABASE_URL_ASYNC")
    if not url:
        raise SystemExit("DATABASE_URL_ASYNC is not set")
    return str(url)


def _take_migration_lock(connection: Connection) -> None:
    """Wait for any other instance's migration to end (the lock ends with the transaction)."""
    if connection.scalar(select(func.pg_try_advisory_xact_lock(MIGRATION_LOCK))):
        return
    log.info("another instance is migrating this database; waiting for it")
    connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
        include_object=config.attributes.get("include_object"),
    )
    with context.begin_transaction():
        _take_migration_lock(connection)
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_database_url())
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
    await engine.dispose()


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of running it."""
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:
        asyncio.run(_run_async())
