"""Bugs the soak found, each shrunk to the smallest test that shows it.

Each was a strict xfail until its fix landed; they pass now and guard the fix.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sandbox.embedded import asyncpg_dsn
from tests.factories import make_product, make_shop
from tests.shopper import add


async def _terminate_backends(database_url: str) -> int:
    """What the soak's fault does: end every other connection to the test database."""
    from sqlalchemy.engine import make_url

    connection = await asyncpg.connect(
        **asyncpg_dsn(database_url, make_url(database_url).database or "")
    )
    try:
        killed = await connection.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return int(killed or 0)


async def test_cart_page_after_postgres_drops_connections_is_not_a_500(
    app: Quart, client: Client, db: AsyncSession, engine: AsyncEngine, settings: Any
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    assert (await add(client, product.id, 2)).status_code == 303
    assert (await client.get("/cart/")).status_code == 200  # the pool holds a live connection
    await db.close()
    assert await _terminate_backends(settings.database_url) >= 1
    await engine.dispose()  # the tests' own pool: its connections died too
    try:
        statuses = [(await client.get("/cart/")).status_code for _ in range(3)]
    finally:
        await app.extensions["db_engine"].dispose()
    # A read is retried on a fresh connection (200), or at worst refused with 503.
    assert all(status in (200, 503) for status in statuses), statuses
    assert statuses[-1] == 200, statuses
