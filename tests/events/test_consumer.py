"""The example consumer: a consumer group reads, acknowledges, and moves on."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from quart import Quart
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.event_consumer import StreamEvent, consume_events
from services.events import publish_pending
from tests.events.factories import emit_committed, outbox_rows, unpublished_count


async def read_all(redis: Redis, stream: str, group: str, consumer: str) -> list[StreamEvent]:
    seen: list[StreamEvent] = []

    async def collect(event: StreamEvent) -> None:
        seen.append(event)

    handled = await consume_events(
        redis,
        stream=stream,
        group=group,
        consumer=consumer,
        handle=collect,
        count=100,
        block_ms=50,
    )
    assert handled == len(seen)
    return seen


async def test_consumer_reads_with_a_group_acknowledges_and_a_second_run_sees_nothing_new(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    stream = settings.events.stream
    ids = await emit_committed(sessions, 3)
    await publish_pending(sessions, redis, settings.events)

    first = await read_all(redis, stream, "audit", "worker-1")

    assert [event.event_id for event in first] == ids
    assert {event.type for event in first} == {"order.created"}
    (row, *_) = await outbox_rows(sessions)
    assert first[0].payload == row.payload
    assert first[0].aggregate_id == row.aggregate_id
    assert (await redis.xpending(stream, "audit"))["pending"] == 0
    assert await read_all(redis, stream, "audit", "worker-1") == []
    assert await read_all(redis, stream, "audit", "worker-2") == []
    # Another group reads the whole stream on its own.
    assert [event.event_id for event in await read_all(redis, stream, "mailer", "m")] == ids


async def test_consumer_first_handles_what_it_was_given_but_never_acknowledged(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    stream = settings.events.stream
    ids = await emit_committed(sessions, 2)
    await publish_pending(sessions, redis, settings.events)

    async def crash(event: StreamEvent) -> None:
        raise RuntimeError("handler crashed")

    with pytest.raises(RuntimeError, match="handler crashed"):
        await consume_events(
            redis, stream=stream, group="audit", consumer="w", handle=crash, count=1, block_ms=50
        )

    again = await read_all(redis, stream, "audit", "w")
    assert [event.event_id for event in again] == ids


async def test_consumer_with_an_empty_stream_creates_it_and_returns_nothing(
    redis: Redis, settings: Any
) -> None:
    assert await read_all(redis, settings.events.stream, "audit", "w") == []
    assert await redis.exists(settings.events.stream)


def test_event_is_printed_as_one_json_line() -> None:
    event = StreamEvent(
        entry_id="1-0",
        event_id=7,
        type="order.paid",
        aggregate_type="order",
        aggregate_id="3",
        payload={"total": "12.50"},
        occurred_at="2026-11-24T10:00:00+00:00",
    )
    line = event.to_json_line()
    assert "\n" not in line
    assert json.loads(line) == {
        "entry_id": "1-0",
        "event_id": 7,
        "type": "order.paid",
        "aggregate_type": "order",
        "aggregate_id": "3",
        "payload": {"total": "12.50"},
        "occurred_at": "2026-11-24T10:00:00+00:00",
    }


async def test_cli_relays_once_then_consumes_as_json_lines(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    from app import create_app

    ids = await emit_committed(sessions, 2)
    runner = create_app(settings).test_cli_runner()

    # The commands run their own event loop (asyncio.run), so not on this one.
    relayed = await asyncio.to_thread(runner.invoke, args=["relay-events", "--once"])
    assert relayed.exit_code == 0, relayed.output
    assert "events published: 2" in relayed.output
    assert await unpublished_count(sessions) == 0

    args = ["consume-events", "--group", "cli", "--count", "5", "--block-ms", "50"]
    consumed = await asyncio.to_thread(runner.invoke, args=args)
    assert consumed.exit_code == 0, consumed.output
    lines = consumed.output.splitlines()
    assert [json.loads(line)["event_id"] for line in lines] == ids
    again = await asyncio.to_thread(runner.invoke, args=args)
    assert (again.exit_code, again.output) == (0, "")


def test_cli_commands_are_registered() -> None:
    from app import create_app

    app: Quart = create_app()
    commands = app.cli.list_commands(None)  # type: ignore[arg-type]
    assert {"relay-events", "consume-events"} <= set(commands)
