"""Fixtures of the event tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.db import create_sessionmaker
from services.redis_client import create_redis
from tests.events.factories import PrivateRedis


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """The session factory the relay is given."""
    return create_sessionmaker(engine)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own (never the shared one) that it may stop."""
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def private_redis_client(private_redis: PrivateRedis) -> AsyncIterator[Redis]:
    client = create_redis(private_redis.url)
    yield client
    await client.aclose()
