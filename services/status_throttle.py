"""At most one SumUp status check per order every few seconds from page loads.

Every load of the return page and every "check payment status" asks SumUp, so one
shopper reloading (or a script) could spend the coop's SumUp quota. The first load
in a window claims it (Redis `SET NX PX`) and asks SumUp; the others show the order
as the database has it, which the webhook and the claimant keep current.
"""

from __future__ import annotations

import logging

from quart import current_app
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


async def claim_status_check(redis: Redis, *, key: str, interval_ms: int) -> bool:
    """Whether this caller may ask SumUp now: it holds `key` for `interval_ms`."""
    return bool(await redis.set(key, b"1", nx=True, px=interval_ms))


async def status_check_due(order_id: int) -> bool:
    """For routes: may this page load ask SumUp about `order_id` now?"""
    config = current_app.config["SETTINGS"].rate_limits
    interval_ms = int(config.status_check_seconds * 1000)
    if interval_ms <= 0:
        return True
    key = f"{config.redis_prefix}status-check:{order_id}"
    try:
        return await claim_status_check(
            current_app.extensions["redis"], key=key, interval_ms=interval_ms
        )
    except RedisError:
        # Pages that get here had their session read from Redis a moment ago.
        log.warning("status throttle unavailable; order %s checked anyway", order_id)
        return True
