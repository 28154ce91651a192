"""The per-request database session: reads without a transaction, lost connections
survived (a GET is retried once, anything else is a 503), bounded statements and
transactions."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from config import ConfigError, load_settings
from services.db import create_engine
from tests.factories import make_market, make_page, make_product, make_user
from tests.shopper import add, csrf_token, login

JSON = {"Accept": "application/json"}


async def _terminate_app_backends(engine: AsyncEngine) -> None:
    """What a PostgreSQL restart does to the app: every backend of this database dies."""
    async with engine.connect() as connection:
        pids = (
            await connection.scalars(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
            )
        ).all()
        assert pids, "the app holds no pooled connection to kill"
        await connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM unnest(CAST(:pids AS int[])) AS pid"),
            {"pids": list(pids)},
        )
        for _ in range(100):  # until the backends are gone, not merely signalled
            alive = await connection.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(CAST(:p AS int[]))"),
                {"p": list(pids)},
            )
            if not alive:
                break
            await asyncio.sleep(0.02)
    # The test's own engine lost its connections too; start it afresh.
    await engine.dispose()


@pytest.fixture
async def fresh_app_pool(app: Quart) -> None:
    """The app's pool starts empty: the connections a test kills are the ones it made.

    (A connection older than the pool's last invalidation is replaced silently on
    checkout, so one left from an earlier test would hide the dead one.)
    """
    await app.extensions["db_engine"].dispose()


async def _shopper_with_a_line(client: Client, db: AsyncSession) -> int:
    page = await make_page(db, "farm")
    product = await make_product(db, await make_market(db, page), title="Eggs")
    await add(client, product.id)
    return product.id


@pytest.mark.parametrize(
    "path", ["/cart/", "/cart/farm/", "/internal/cart/summary", "/orders/"], ids=str
)
@pytest.mark.usefixtures("fresh_app_pool")
async def test_a_read_after_postgres_dropped_the_connections_is_retried_not_a_500(
    path: str, app: Quart, client: Client, db: AsyncSession, engine: AsyncEngine, settings: Any
) -> None:
    await _shopper_with_a_line(client, db)
    headers = {"Authorization": f"Bearer {settings.internal_api_token.reveal()}"}
    assert (await client.get(path, headers=headers)).status_code == 200  # a pooled connection
    await _terminate_app_backends(engine)

    response = await client.get(path, headers=headers)

    assert response.status_code == 200, await response.get_data(as_text=True)
    if path == "/internal/cart/summary":
        assert (await response.get_json())["product_count"] == 1


@pytest.mark.usefixtures("fresh_app_pool")
async def test_an_order_page_after_postgres_dropped_the_connections_is_retried(
    app: Quart, client: Client, db: AsyncSession, engine: AsyncEngine
) -> None:
    # A GET that runs in a transaction (not marked read-only) is retried as well.
    await login(client, (await make_user(db)).email)
    assert (await client.get("/orders/")).status_code == 200
    await _terminate_app_backends(engine)

    response = await client.get("/orders/999999/")

    assert response.status_code == 404  # the order does not exist: a real answer, not a 500


@pytest.mark.usefixtures("fresh_app_pool")
async def test_a_write_after_postgres_dropped_the_connections_is_a_503_json_answer(
    app: Quart, client: Client, db: AsyncSession, engine: AsyncEngine
) -> None:
    product_id = await _shopper_with_a_line(client, db)
    token = await csrf_token(client)
    await _terminate_app_backends(engine)

    response = await client.post(
        f"/cart/add/{product_id}/", form={"csrf_token": token}, headers=JSON
    )

    assert response.status_code == 503
    assert response.headers["Retry-After"].isdigit()
    body = await response.get_json()
    assert body["status"] == 503 and "try again" in body["message"]
    # Nothing half-done: the next write goes through on a fresh connection.
    again = await client.post(f"/cart/add/{product_id}/", form={"csrf_token": token}, headers=JSON)
    assert again.status_code == 200
    assert (await again.get_json())["summary"]["product_count"] == 2


@pytest.mark.usefixtures("fresh_app_pool")
async def test_a_form_post_after_postgres_dropped_the_connections_is_a_503_page(
    app: Quart, client: Client, db: AsyncSession, engine: AsyncEngine
) -> None:
    product_id = await _shopper_with_a_line(client, db)
    token = await csrf_token(client)
    await _terminate_app_backends(engine)

    response = await client.post(
        f"/cart/update/{product_id}/",
        form={"csrf_token": token, "quantity": "3"},
        headers={"Accept": "text/html"},
    )

    assert response.status_code == 503
    page = await response.get_data(as_text=True)
    assert "<html" in page.lower() and "try again" in page


@contextmanager
def _protocol_log(app: Quart) -> Iterator[list[str]]:
    """Every query the app's connections send outside prepared statements (BEGIN …)."""
    sent: list[str] = []
    attached: set[int] = set()

    def attach(dbapi_connection: Any, *_: Any) -> None:
        driver = dbapi_connection.driver_connection
        if id(driver) not in attached:
            attached.add(id(driver))
            driver.add_query_logger(lambda record: sent.append(record.query.strip().upper()))

    engine = app.extensions["db_engine"].sync_engine
    event.listen(engine, "checkout", attach)
    try:
        yield sent
    finally:
        event.remove(engine, "checkout", attach)


async def test_read_only_pages_send_no_begin_or_commit_and_writes_still_do(
    app: Quart, client: Client, db: AsyncSession, settings: Any
) -> None:
    product_id = await _shopper_with_a_line(client, db)
    bearer = {"Authorization": f"Bearer {settings.internal_api_token.reveal()}"}
    token = await csrf_token(client)
    with _protocol_log(app) as sent:
        for path in ("/cart/", "/cart/farm/", "/internal/cart/summary", "/orders/"):
            assert (await client.get(path, headers=bearer)).status_code == 200
    assert not [q for q in sent if q.startswith(("BEGIN", "COMMIT"))], sent

    with _protocol_log(app) as sent:
        response = await client.post(
            f"/cart/add/{product_id}/", form={"csrf_token": token}, headers=JSON
        )
    assert response.status_code == 200
    assert any(q.startswith("BEGIN") for q in sent), sent
    assert any(q.startswith("COMMIT") for q in sent), sent


async def test_the_apps_connections_carry_the_statement_and_idle_transaction_timeouts(
    app: Quart, settings: Any
) -> None:
    async with app.extensions["db_engine"].connect() as connection:
        statement = await connection.scalar(text("SHOW statement_timeout"))
        idle = await connection.scalar(text("SHOW idle_in_transaction_session_timeout"))
    assert (statement, idle) == ("30s", "1min")
    assert settings.db_statement_timeout_ms == 30_000
    assert settings.db_idle_in_transaction_timeout_ms == 60_000


async def test_a_statement_past_the_timeout_is_cancelled(settings: Any) -> None:
    engine = create_engine(settings.database_url, pool_size=1, statement_timeout_ms=200)
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError, match="statement timeout"):
                await connection.execute(text("SELECT pg_sleep(2)"))
    finally:
        await engine.dispose()


async def test_a_transaction_left_idle_is_ended_by_the_server_and_frees_its_locks(
    settings: Any,
) -> None:
    engine = create_engine(settings.database_url, pool_size=2, idle_in_transaction_timeout_ms=300)
    try:
        async with engine.connect() as stuck:
            await stuck.execute(text("SELECT pg_advisory_xact_lock(424242)"))
            async with engine.connect() as other:
                # Blocked behind the stuck transaction until the server ends it.
                await asyncio.wait_for(
                    other.execute(text("SELECT pg_advisory_xact_lock(424242)")), timeout=5
                )
                await other.rollback()
            with pytest.raises(DBAPIError):
                await stuck.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def test_database_timeouts_are_settings_and_bad_values_are_refused(settings: Any) -> None:
    env = {
        "DATABASE_URL_ASYNC": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": "s" * 32,
        "INTERNAL_API_TOKEN": "t" * 32,
        "APP_ENV": "development",
        "DB_STATEMENT_TIMEOUT_MS": "5000",
        "DB_IDLE_IN_TRANSACTION_TIMEOUT_MS": "15000",
    }
    loaded = load_settings(env)
    assert (loaded.db_statement_timeout_ms, loaded.db_idle_in_transaction_timeout_ms) == (
        5000,
        15000,
    )
    with pytest.raises(ConfigError, match="DB_STATEMENT_TIMEOUT_MS"):
        load_settings({**env, "DB_STATEMENT_TIMEOUT_MS": "soon"})
