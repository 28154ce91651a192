"""The shared Redis client (sessions, event stream)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

# One more try, on a fresh connection, for a command that failed on its connection: a
# pooled connection that Redis closed (a restart, a failover, an idle timeout) is only
# found dead when used, and without it the first request to draw each such connection
# answered 503 (seen by the soak 40 s after a Redis restart). A Redis that is really
# down still fails at once: the retry's connect is refused too.
RETRY = Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1)


def create_redis(url: str) -> Redis:
    """A pooled asyncio Redis client with bounded timeouts."""
    return Redis.from_url(
        url,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=RETRY,
        decode_responses=False,
    )
