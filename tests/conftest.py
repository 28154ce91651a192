"""Test set-up: real PostgreSQL and Redis, a database per run, a clean state per test.

With `DATABASE_URL_ASYNC` / `REDIS_URL` set, the tests use those servers; otherwise
they start the embedded ones under `.data/test-servers`. Either way each run gets
its own database (`cart_test_<run>`, built by the migrations and dropped at the end)
and its own Redis key prefix; every test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from sandbox.embedded import asyncpg_dsn

ROOT = Path(__file__).resolve().parent.parent
RUN_ID = uuid.uuid4().hex[:10]
TEST_DATABASE = f"cart_test_{RUN_ID}"
REDIS_PREFIX = f"test:{RUN_ID}:"
_stack = ExitStack()


async def _create_database(base_url: str) -> None:
    connection = await asyncpg.connect(**asyncpg_dsn(base_url, "postgres"))
    try:
        await connection.execute(f'CREATE DATABASE "{TEST_DATABASE}"')
    finally:
        await connection.close()


async def _drop_database(base_url: str) -> None:
    connection = await asyncpg.connect(**asyncpg_dsn(base_url, "postgres"))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{TEST_DATABASE}" WITH (FORCE)')
    finally:
        await connection.close()


def pytest_configure(config: pytest.Config) -> None:
    """Servers, a fresh migrated database and test settings, before any import of app."""
    from sandbox.embedded import embedded_servers
    from services.schema import upgrade

    _stack.enter_context(embedded_servers(os.environ, ROOT / ".data" / "test-servers"))
    base_url = os.environ["DATABASE_URL_ASYNC"]
    os.environ["CART_TEST_BASE_DATABASE_URL"] = base_url
    asyncio.run(_create_database(base_url))
    _stack.callback(lambda: asyncio.run(_drop_database(base_url)))
    test_url = make_url(base_url).set(database=TEST_DATABASE)
    os.environ["DATABASE_URL_ASYNC"] = test_url.render_as_string(hide_password=False)
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
    os.environ.setdefault("INTERNAL_API_TOKEN", secrets.token_urlsafe(32))
    os.environ["APP_ENV"] = "test"
    os.environ["EVENTS_RELAY_IN_APP"] = "false"
    os.environ["RECONCILE_IN_APP"] = "false"
    upgrade(os.environ["DATABASE_URL_ASYNC"])


def pytest_unconfigure(config: pytest.Config) -> None:
    _stack.close()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# --- servers the tests talk to ----------------------------------------------------


@pytest.fixture(scope="session")
def sumup_sandbox() -> Iterator[Any]:
    """The SumUp sandbox, over HTTP in its own process."""
    from sandbox.sumup_sandbox import running_sandbox

    with running_sandbox(port=0) as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
async def sandbox_control(sumup_sandbox: Any) -> AsyncIterator[Any]:
    """The sandbox's control API (behaviour, pay/decline, stats)."""
    from sandbox.sumup_sandbox import SandboxControl

    control = SandboxControl(sumup_sandbox.base_url)
    yield control
    await control.aclose()


@pytest.fixture(scope="session")
def app_port() -> int:
    return free_port()


@pytest.fixture(scope="session")
def settings(sumup_sandbox: Any, app_port: int) -> Any:
    """Settings of the app under test: this run's database, Redis prefix, the sandbox."""
    from config import load_settings

    env = dict(os.environ)
    env.update(
        SUMUP_BASE_URL=sumup_sandbox.base_url,
        SUMUP_API_KEY="sup_sk_sandbox_coop",
        SUMUP_MERCHANT_CODE="MCOOP0001",
        SUMUP_TIMEOUT_SECONDS="2",
        PUBLIC_URL=f"http://127.0.0.1:{app_port}",
    )
    base = load_settings(env)
    return replace(
        base,
        session=replace(base.session, redis_prefix=f"{REDIS_PREFIX}session:"),
        events=replace(base.events, stream=f"{REDIS_PREFIX}events"),
        rate_limits=replace(base.rate_limits, redis_prefix=REDIS_PREFIX),
    )


async def _serve(app: Quart, port: int) -> tuple[asyncio.Task[None], asyncio.Event]:
    config = HypercornConfig()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.include_server_header = False  # as config/hypercorn.toml does for the real servers
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.05)
    return task, stop


@pytest.fixture(scope="session")
async def app(settings: Any, app_port: int) -> AsyncIterator[Quart]:
    """The app, served over real HTTP (SumUp's webhooks and the browser reach it)."""
    from app import create_app

    application = create_app(settings)
    task, stop = await _serve(application, app_port)
    yield application
    stop.set()
    await task


@pytest.fixture(scope="session")
def live_url(app: Quart, app_port: int) -> str:
    return f"http://127.0.0.1:{app_port}"


@pytest.fixture
def client(app: Quart) -> Client:
    """A shopper: a test client with its own cookie jar."""
    return app.test_client()


@pytest.fixture(scope="session")
async def engine(settings: Any) -> AsyncIterator[AsyncEngine]:
    from services.db import create_engine

    db_engine = create_engine(settings.database_url, pool_size=5)
    yield db_engine
    await db_engine.dispose()


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncIterator[AsyncSession]:
    """A session for arranging and asserting; commit what the app must see."""
    from services.db import create_sessionmaker

    async with create_sessionmaker(engine)() as session:
        yield session


@pytest.fixture
def sessions(engine: AsyncEngine) -> Any:
    """A session factory, as the services that commit their own steps are given."""
    from services.db import create_sessionmaker

    return create_sessionmaker(engine)


@pytest.fixture
async def context(settings: Any) -> AsyncIterator[Any]:
    """What talking to SumUp needs besides the database: settings and SumUp clients."""
    from bp.cart.services.checkout_attempts import CheckoutContext
    from services.sumup import SumUpClients

    clients = SumUpClients(
        base_url=settings.sumup.base_url, timeout_seconds=settings.sumup.timeout_seconds
    )
    yield CheckoutContext(settings, clients)
    await clients.aclose()


@pytest.fixture(scope="session")
async def redis(settings: Any) -> AsyncIterator[Redis]:
    from services.redis_client import create_redis

    client = create_redis(settings.redis_url)
    yield client
    async for key in client.scan_iter(match=f"{REDIS_PREFIX}*"):
        await client.delete(key)
    await client.aclose()


TABLES = (
    "refunds, checkout_attempts, order_transitions, order_bookings, order_items, orders, "
    "page_configs, cart_items, calendar_entries, calendars, products, market_places, posts, "
    "users, domain_events"
)


@pytest.fixture(autouse=True)
async def clean_state(engine: AsyncEngine, redis: Redis) -> AsyncIterator[None]:
    """Every test starts with empty tables and no Redis keys of this run."""
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    async for key in redis.scan_iter(match=f"{REDIS_PREFIX}*"):
        await redis.delete(key)
    yield
