"""The shared Redis client survives connections that Redis closed behind its back."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from services.redis_client import create_redis
from tests.conftest import REDIS_PREFIX

KEY = f"{REDIS_PREFIX}survivor"


async def test_a_command_on_a_connection_redis_closed_is_tried_again_on_a_new_one(
    redis: Redis, settings: Any
) -> None:
    """As after a Redis restart: the pooled connection is dead but not known to be."""
    client = create_redis(settings.redis_url)
    try:
        await client.set(KEY, b"still here", ex=60)
        [connection_id] = [await client.client_id()]
        assert await redis.client_kill_filter(_id=str(connection_id)) == 1
        assert await client.get(KEY) == b"still here"
        assert await client.client_id() != connection_id  # a new connection answered
    finally:
        await client.delete(KEY)
        await client.aclose()
