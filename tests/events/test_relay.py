"""The relay: outbox rows reach the Redis Stream in order, once, despite outages."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.events import (
    HORIZON_LOCK_WAIT_MS,
    PUBLISH_TRIES,
    EventRelayError,
    publish_pending,
    relay_forever,
)
from services.redis_client import create_redis
from tests.conftest import free_port
from tests.events.factories import (
    PrivateRedis,
    emit_committed,
    emit_many,
    emit_order_created,
    outbox_rows,
    stream_entries,
    stream_event_ids,
    unpublished_count,
    wait_until,
)


async def test_relay_publishes_each_event_with_its_fields_and_marks_it_published(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    ids = await emit_committed(sessions, 2)

    assert await publish_pending(sessions, redis, settings.events) == 2

    entries = await stream_entries(redis, settings.events.stream)
    rows = await outbox_rows(sessions)
    assert [row.id for row in rows] == ids
    for (_, fields), row in zip(entries, rows, strict=True):
        assert fields == {
            "event_id": str(row.id),
            "type": "order.created",
            "aggregate_type": "order",
            "aggregate_id": row.aggregate_id,
            "payload": json.dumps(row.payload, separators=(",", ":")),
            "occurred_at": row.occurred_at.isoformat(),
        }
        assert json.loads(fields["payload"])["total"] == "12.50"
        assert row.published_at is not None
        assert row.attempts == 1
        assert row.last_error is None
    assert await publish_pending(sessions, redis, settings.events) == 0
    assert await stream_event_ids(redis, settings.events.stream) == ids


async def test_relay_publishes_one_batch_of_the_configured_size_at_a_time(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    ids = await emit_many(sessions, 7)
    small_batches = replace(settings.events, relay_batch_size=3)

    published = [await publish_pending(sessions, redis, small_batches) for _ in range(4)]

    assert published == [3, 3, 1, 0]
    assert await stream_event_ids(redis, settings.events.stream) == ids


async def test_overlapping_transactions_are_published_in_id_order_though_they_commit_reversed(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    async with sessions() as first, sessions() as second:
        await first.begin()
        await second.begin()
        first_id = await emit_order_created(first)
        second_id = await emit_order_created(second)
        assert first_id < second_id
        await second.commit()

        # The later id is committed, the earlier one may still commit: hold it back.
        assert await publish_pending(sessions, redis, settings.events) == 0
        assert await stream_event_ids(redis, settings.events.stream) == []

        await first.commit()

    assert await publish_pending(sessions, redis, settings.events) == 2
    assert await stream_event_ids(redis, settings.events.stream) == [first_id, second_id]


async def test_relay_that_waits_for_an_open_emitter_publishes_both_once_it_commits(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    async with sessions() as first, sessions() as second:
        await first.begin()
        await second.begin()
        first_id = await emit_order_created(first)
        second_id = await emit_order_created(second)
        await second.commit()

        relay = asyncio.create_task(publish_pending(sessions, redis, settings.events))
        await asyncio.sleep(HORIZON_LOCK_WAIT_MS / 1000 / 5)
        assert not relay.done()
        await first.commit()
        assert await relay == 2

    assert await stream_event_ids(redis, settings.events.stream) == [first_id, second_id]


async def test_rolled_back_emitter_does_not_hold_back_later_events(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    async with sessions() as doomed, sessions() as kept:
        await doomed.begin()
        await kept.begin()
        await emit_order_created(doomed)
        kept_id = await emit_order_created(kept)
        await kept.commit()
        await doomed.rollback()

    assert await publish_pending(sessions, redis, settings.events) == 1
    assert await stream_event_ids(redis, settings.events.stream) == [kept_id]


async def test_stream_is_trimmed_approximately_but_keeps_at_least_the_minimum(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    await emit_many(sessions, 450)
    short_stream = replace(settings.events, stream_min_length=50, relay_batch_size=150)

    while await publish_pending(sessions, redis, short_stream):
        pass

    length = await redis.xlen(settings.events.stream)
    assert 50 <= length < 450
    assert (await stream_event_ids(redis, settings.events.stream))[-1] == 450


async def test_failed_publish_records_attempts_and_error_and_leaves_events_waiting(
    sessions: async_sessionmaker[AsyncSession], settings: Any
) -> None:
    ids = await emit_committed(sessions, 2)
    nobody_home = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    try:
        try:
            await publish_pending(sessions, nobody_home, settings.events)
        except EventRelayError as error:
            assert f"events {ids[0]}..{ids[1]}" in str(error)
        else:
            raise AssertionError("publish_pending should have failed")
    finally:
        await nobody_home.aclose()

    for row in await outbox_rows(sessions):
        assert row.published_at is None
        assert row.attempts == PUBLISH_TRIES
        assert row.last_error is not None
        assert row.last_error.startswith("ConnectionError")


async def test_events_emitted_while_redis_is_down_all_arrive_once_when_it_is_back(
    sessions: async_sessionmaker[AsyncSession],
    private_redis: PrivateRedis,
    private_redis_client: Redis,
    settings: Any,
) -> None:
    stream = settings.events.stream
    fast = replace(settings.events, relay_interval_seconds=0.02)
    stop = asyncio.Event()
    relay = asyncio.create_task(
        relay_forever(sessions, private_redis_client, fast, stop, max_backoff_seconds=0.2)
    )

    async def all_published() -> bool:
        return await unpublished_count(sessions) == 0

    before = await emit_committed(sessions, 2)
    await wait_until(all_published)

    await asyncio.to_thread(private_redis.stop)
    during = await emit_committed(sessions, 3)

    async def failures_recorded() -> bool:
        rows = await outbox_rows(sessions)
        return all(row.attempts > 0 and row.last_error for row in rows if row.id in during)

    await wait_until(failures_recorded)
    assert all(row.published_at is None for row in await outbox_rows(sessions) if row.id in during)

    await asyncio.to_thread(private_redis.start)
    after = await emit_committed(sessions, 1)
    await wait_until(all_published)
    stop.set()
    await asyncio.wait_for(relay, timeout=5)

    assert await stream_event_ids(private_redis_client, stream) == before + during + after
    rows = {row.id: row for row in await outbox_rows(sessions)}
    assert all(rows[event_id].attempts > PUBLISH_TRIES for event_id in during)
    assert all(rows[event_id].last_error for event_id in during)
    assert all(rows[event_id].attempts == 1 for event_id in before + after)


async def test_two_relays_racing_over_a_thousand_events_publish_each_exactly_once_in_order(
    sessions: async_sessionmaker[AsyncSession], redis: Redis, settings: Any
) -> None:
    racing = replace(settings.events, relay_batch_size=50, relay_interval_seconds=0.01)
    stop = asyncio.Event()
    relays = [asyncio.create_task(relay_forever(sessions, redis, racing, stop)) for _ in range(2)]

    async def emitter() -> list[int]:
        ids: list[int] = []
        for _ in range(10):
            ids += await emit_many(sessions, 25)
        return ids

    # Four writers emit while the relays run, so batches race with open transactions.
    emitted = [
        event_id for ids in await asyncio.gather(*(emitter() for _ in range(4))) for event_id in ids
    ]
    assert len(emitted) == 1000

    async def all_published() -> bool:
        return await unpublished_count(sessions) == 0

    await wait_until(all_published, within=20)
    stop.set()
    await asyncio.wait_for(asyncio.gather(*relays), timeout=5)

    published = await stream_event_ids(redis, settings.events.stream)
    assert await redis.xlen(settings.events.stream) == 1000
    assert len(set(published)) == 1000
    assert set(published) == set(emitted)
    assert published == sorted(published)


async def test_relay_stops_promptly_while_backing_off_from_an_absent_redis(
    sessions: async_sessionmaker[AsyncSession], settings: Any
) -> None:
    await emit_committed(sessions, 1)
    nobody_home = create_redis(f"redis://127.0.0.1:{free_port()}/0")
    stop = asyncio.Event()
    relay = asyncio.create_task(relay_forever(sessions, nobody_home, settings.events, stop))

    async def failed_once() -> bool:
        return (await outbox_rows(sessions))[0].attempts > 0

    await wait_until(failed_once)
    stop.set()
    await asyncio.wait_for(relay, timeout=2)
    await nobody_home.aclose()
