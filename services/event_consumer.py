"""An example consumer of the domain event stream, with a Redis consumer group.

Other apps (or `quart --app app consume-events`) read the stream the same way:

1. `XGROUP CREATE <stream> <group> 0 MKSTREAM` once (a group that exists is fine);
   the group starts at the beginning of the stream, so nothing kept is missed.
2. `XREADGROUP GROUP <group> <consumer> STREAMS <stream> 0` first: the entries this
   consumer was given before but never acknowledged (it crashed mid-way).
3. Then `XREADGROUP ... BLOCK <ms> STREAMS <stream> >`: entries never given to any
   consumer of the group.
4. `XACK` each entry after it was handled.

Delivery is at least once: a relay may publish an event twice after a crash and a
consumer may handle an entry again after its own, so a handler must be idempotent;
dedupe by `event_id` (not by the stream entry id, which differs between copies).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

READ_COUNT = 100


@dataclass(frozen=True)
class StreamEvent:
    """One domain event as read from the stream."""

    entry_id: str
    event_id: int
    type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    occurred_at: str

    def to_json_line(self) -> str:
        """The event as one line of JSON."""
        return json.dumps(asdict(self), separators=(",", ":"), ensure_ascii=False)


EventHandler = Callable[[StreamEvent], Awaitable[None]]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_entry(entry_id: bytes | str, fields: Mapping[Any, Any]) -> StreamEvent:
    """A stream entry written by the relay, as a `StreamEvent`."""
    values = {_text(key): _text(value) for key, value in fields.items()}
    return StreamEvent(
        entry_id=_text(entry_id),
        event_id=int(values["event_id"]),
        type=values["type"],
        aggregate_type=values["aggregate_type"],
        aggregate_id=values["aggregate_id"],
        payload=json.loads(values["payload"]),
        occurred_at=values["occurred_at"],
    )


async def ensure_group(redis: Redis, *, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) unless it exists."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as error:
        if "BUSYGROUP" not in str(error):
            raise


async def consume_events(
    redis: Redis,
    *,
    stream: str,
    group: str,
    consumer: str,
    handle: EventHandler,
    count: int | None = None,
    block_ms: int = 5000,
    stop: asyncio.Event | None = None,
) -> int:
    """Hand the group's events to `handle`, acknowledging each; returns how many.

    Without `count` it tails the stream until `stop` is set. With `count` it is a
    one-shot read: it returns after `count` events, or once a read waited `block_ms`
    and found nothing new.
    """
    await ensure_group(redis, stream=stream, group=group)
    handled = 0
    cursor = "0"  # our own unacknowledged entries first, then new ones (">")
    while not (stop and stop.is_set()) and (count is None or handled < count):
        wanted = READ_COUNT if count is None else min(READ_COUNT, count - handled)
        response = await redis.xreadgroup(
            group,
            consumer,
            {stream: cursor},
            count=wanted,
            block=block_ms if cursor == ">" else None,
        )
        entries = _entries(response)
        if not entries:
            if cursor == "0":
                cursor = ">"
                continue
            if count is not None:
                break
            continue
        for entry_id, fields in entries:
            # A pending entry trimmed from the stream comes back without fields.
            if fields:
                await handle(parse_entry(entry_id, fields))
                handled += 1
            await redis.xack(stream, group, entry_id)
    return handled


def _entries(response: Any) -> list[tuple[Any, Any]]:
    """The entries of a one-stream XREADGROUP reply: `[[stream, [(id, fields), ...]]]`."""
    return list(response[0][1]) if response else []
