"""Abuse limits in Redis (the `limits` library, moving windows), per session and per IP.

A route names its policy with one decorator line, `@rate_limited("write")`; each
policy counts the request against one or more keys (the IP first, so a flood from
one address cannot mint keys per forged session). Over a limit the request is
refused with 429, a `Retry-After` header and a page (JSON for the APIs) that says
when to try again. The limits come from the settings (`RATE_LIMIT_*`).

Redis down: the policies that serve shoppers fail closed (the session store is down
too, so the page is a 503); the webhook's fail open, so SumUp can still settle a
payment while Redis is away.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from limits import RateLimitItem, parse_many
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter
from quart import Quart, current_app, request, session
from redis.asyncio import Redis
from redis.exceptions import RedisError

from config.settings import RateLimitSettings
from services.errors import ServiceError
from services.sessions import RedisSession

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
KeyFunction = Callable[[dict[str, Any]], "str | None"]


class RateLimited(ServiceError):
    """Too many requests of one kind from one shopper, address, order or token."""

    status_code = 429
    title = "Too many requests"

    def __init__(self, retry_after: int) -> None:
        seconds = "1 second" if retry_after == 1 else f"{retry_after} seconds"
        super().__init__(
            f"You have done this too often in a short time. Please try again in {seconds}."
        )
        self.retry_after = retry_after


def _client_ip(_: dict[str, Any]) -> str | None:
    # The proxy in front must pass the client's address (hypercorn's ProxyFixMiddleware).
    return f"ip:{request.remote_addr or 'unknown'}"


def _session(_: dict[str, Any]) -> str | None:
    sid = session.sid if isinstance(session, RedisSession) else None
    return f"session:{_digest(sid)}" if sid else None


def _webhook_order(view_args: dict[str, Any]) -> str | None:
    # Only notifications with the order's token count against the order: forged ones
    # (refused with 404 without Redis) must not use up SumUp's allowance for it.
    from bp.cart.services.webhook_tokens import webhook_token_is_valid

    order_id = view_args.get("order_id")
    token = request.args.get("token", "")
    secret = current_app.config["SETTINGS"].secret_key.reveal()
    if order_id is None or not webhook_token_is_valid(secret, order_id, token):
        return None
    return f"order:{order_id}"


def _user(_: dict[str, Any]) -> str | None:
    uid = session.get("uid")
    return f"user:{uid}" if uid is not None else None


def _internal_token(_: dict[str, Any]) -> str | None:
    # Only the real token is counted; a wrong one is refused with 401 without Redis.
    scheme, _sep, token = request.headers.get("Authorization", "").partition(" ")
    expected = current_app.config["SETTINGS"].internal_api_token.reveal()
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), expected.encode()
    ):
        return None
    return f"token:{_digest(expected)}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Policy:
    """Which limits (settings field names) count which keys, and whether Redis down blocks."""

    counts: tuple[tuple[str, KeyFunction], ...]
    fail_open: bool = False


POLICIES: dict[str, Policy] = {
    "write": Policy((("writes_per_ip", _client_ip), ("writes_per_session", _session))),
    "pay": Policy((("writes_per_ip", _client_ip), ("pay_per_session", _session))),
    "status": Policy((("status_per_ip", _client_ip), ("status_per_session", _session))),
    "webhook": Policy(
        (("webhook_per_ip", _client_ip), ("webhook_per_order", _webhook_order)), fail_open=True
    ),
    "internal": Policy((("internal_per_token", _internal_token),)),
    "merge": Policy((("merge_per_user", _user),)),
}


class RateLimiter:
    """The app's limiter: the shared Redis pool, the parsed limits, one `check` call."""

    def __init__(self, redis: Redis, settings: RateLimitSettings) -> None:
        self.settings = settings
        storage = RedisStorage(
            "async+redis://localhost:6379",  # unused: the shared pool below is
            implementation="redispy",
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            key_prefix=f"{settings.redis_prefix}limits",
        )
        self.strategy = MovingWindowRateLimiter(storage)
        self.items: dict[str, list[RateLimitItem]] = {}

    def limits_of(self, field_name: str) -> list[RateLimitItem]:
        """The parsed limits of one settings field."""
        if field_name not in self.items:
            self.items[field_name] = parse_many(getattr(self.settings, field_name))
        return self.items[field_name]

    async def check(self, policy_name: str, view_args: dict[str, Any]) -> None:
        """Count this request under `policy_name`; `RateLimited` when over a limit."""
        if not self.settings.enabled:
            return
        policy = POLICIES[policy_name]
        try:
            for field_name, key_of in policy.counts:
                key = key_of(view_args)
                if key is None:
                    continue
                for item in self.limits_of(field_name):
                    if not await self.strategy.hit(item, policy_name, key):
                        stats = await self.strategy.get_window_stats(item, policy_name, key)
                        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())))
        except RedisError:
            if not policy.fail_open:
                raise
            log.warning("rate limits unavailable; %s let through", policy_name)


def rate_limited(
    policy_name: str,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Decorate a view: count it under `policy_name` before it runs."""
    if policy_name not in POLICIES:
        raise ValueError(f"no rate limit policy called {policy_name!r}")

    def decorate(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @wraps(view)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            await enforce(policy_name, dict(kwargs))
            return await view(*args, **kwargs)

        return limited

    return decorate


async def enforce(policy_name: str, view_args: dict[str, Any] | None = None) -> None:
    """Count the current request under `policy_name` (for hooks that are not views)."""
    limiter: RateLimiter = current_app.extensions["rate_limiter"]
    await limiter.check(policy_name, view_args or {})


def init_rate_limits(app: Quart) -> None:
    """Build the limiter once Redis is open (`before_serving`)."""

    @app.before_serving
    async def _open_limiter() -> None:
        settings = app.config["SETTINGS"]
        app.extensions["rate_limiter"] = RateLimiter(app.extensions["redis"], settings.rate_limits)
