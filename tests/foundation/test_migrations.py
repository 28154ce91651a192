"""Migrations: both branches go up, down and up again, and agree with the models."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from models import CART_TABLES, Base
from sandbox.embedded import asyncpg_dsn
from services.schema import downgrade, upgrade


async def _with_empty_database() -> tuple[str, str]:
    base = os.environ["CART_TEST_BASE_DATABASE_URL"]
    name = f"cart_mig_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(**asyncpg_dsn(base, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    return name, make_url(base).set(database=name).render_as_string(hide_password=False)


async def _drop(name: str) -> None:
    admin = await asyncpg.connect(
        **asyncpg_dsn(os.environ["CART_TEST_BASE_DATABASE_URL"], "postgres")
    )
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


async def _tables(url: str) -> set[str]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
        names = {row[0] for row in rows}
    await engine.dispose()
    return names - {"alembic_version"}


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_upgrade_downgrade_upgrade_on_an_empty_database() -> None:
    name, url = await _with_empty_database()
    try:
        await asyncio.to_thread(upgrade, url)
        assert await _tables(url) == set(Base.metadata.tables)
        await asyncio.to_thread(downgrade, url)
        assert await _tables(url) == set()
        await asyncio.to_thread(upgrade, url)
        engine = create_async_engine(url)
        async with engine.connect() as connection:
            assert await connection.run_sync(_diff) == []
        await engine.dispose()
    finally:
        await _drop(name)


async def test_production_applies_the_cart_branch_alone() -> None:
    name, url = await _with_empty_database()
    try:
        await asyncio.to_thread(upgrade, url, ("cart",))
        assert await _tables(url) == set(CART_TABLES)
    finally:
        await _drop(name)
