"""Domain events: the transactional outbox and its relay to a Redis Stream.

`emit_event` writes an event into `domain_events` in the caller's transaction, so
an event exists if and only if its change committed. The relay (`publish_pending`,
`relay_forever`, `run_relay_in_app`, `quart --app app relay-events`) is the only
thing that publishes: it `XADD`s the rows to `settings.events.stream` in id order,
marks them published, and retries with backoff while Redis is away.

Delivery is at least once. In normal operation each event is published once, even
with a relay on every instance; a relay that dies after `XADD` but before its
commit publishes that batch again, so consumers dedupe by `event_id`.

Ordering. Ids come from a sequence when the row is inserted, but transactions
commit in any order: the one that drew id 5 may commit after the one that drew 6.
A relay that published 6 as soon as it was visible would put 6 before 5, and a
consumer keeping a high-water mark would lose 5. So the stream is kept in id order
with no late arrivals, which also puts every event after the events whose changes
its transaction had seen (a transaction only draws its id after it saw them):

* Every emitter holds `OUTBOX_WRITE_LOCK` in SHARED mode from before it draws its id
  until its transaction ends (a transaction-scoped advisory lock, so emitters never
  wait for one another).
* Before each batch the relay takes the same lock EXCLUSIVELY, in a transaction of
  its own that only reads `max(id)` and commits: at that instant no transaction
  holds an undecided id, so every id up to that *horizon* is final (committed and
  visible, or rolled back for good) and every id drawn later is larger. The relay
  publishes only rows up to the horizon.
* One relay publishes at a time (`PUBLISH_TURN_LOCK`, try-lock: the others skip the
  round instead of waiting), and it claims its batch with `FOR UPDATE SKIP LOCKED`
  so that no row is ever sent by two relays at once; if anything else holds a row
  inside the batch the relay publishes nothing rather than skip past it.

Why not the alternatives: comparing the rows' `xmin` with the snapshot's xmin
orders by transaction id, not by id (a transaction that started writing earlier
can draw a later id), needs care with xid wraparound, and cannot see transactions
that drew an id before they were assigned an xid; commit timestamps need
`track_commit_timestamp`, which is off by default. The price of the lock: while
the relay waits for the exclusive lock, new emitters queue behind it. The wait is
tried without blocking first and then bounded by `HORIZON_LOCK_WAIT_MS`, so an
emitter is delayed by at most that, and only when a transaction that emitted is
still open at the moment the relay looks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from quart import Quart
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
    wait_exponential_jitter,
)

from config.settings import EventSettings
from models.domain_event import DomainEvent
from models.order import Order
from services.event_schemas import OrderEventPayload, money_string, validate_payload
from services.metrics import EVENTS_PUBLISHED

log = logging.getLogger(__name__)

# Advisory lock keys (per database). Arbitrary values, but part of the contract:
# any writer of `domain_events` takes OUTBOX_WRITE_LOCK shared, as `emit_event` does.
OUTBOX_WRITE_LOCK = 0x636172742D6F7574  # "cart-out"
PUBLISH_TURN_LOCK = 0x636172742D72656C  # "cart-rel"
HORIZON_LOCK_WAIT_MS = 250
LOCK_NOT_AVAILABLE = "55P03"
# Tries of one batch's XADD before the batch is given up for this round.
PUBLISH_TRIES = 3
MAX_BACKOFF_SECONDS = 30.0
ERROR_TEXT_LIMIT = 1000

SessionFactory = async_sessionmaker[AsyncSession]


class EventRelayError(Exception):
    """A batch could not be published; its rows record `attempts` and `last_error`."""


async def emit_event(
    session: AsyncSession,
    event_type: str,
    payload: Mapping[str, Any],
    aggregate: tuple[str, str | int],
) -> DomainEvent:
    """Add a domain event to the outbox in the caller's transaction (flush, no commit)."""
    validate_payload(event_type, payload)
    aggregate_type, aggregate_id = aggregate
    if not aggregate_type or aggregate_id in (None, ""):
        raise ValueError(f"{event_type}: aggregate must be (type, id), got {aggregate!r}")
    # Taken before the id is drawn from the sequence, held until commit or rollback.
    await session.execute(select(func.pg_advisory_xact_lock_shared(OUTBOX_WRITE_LOCK)))
    event = DomainEvent(
        event_type=event_type,
        aggregate_type=aggregate_type,
        aggregate_id=str(aggregate_id),
        payload=dict(payload),
    )
    session.add(event)
    await session.flush()
    return event


def order_event_payload(
    order: Order,
    *,
    entry_ids: Sequence[int],
    reason: str | None = None,
    sumup_checkout_id: str | None = None,
) -> dict[str, Any]:
    """The payload of an `order.*` event; `order.items` must be loaded (selectinload).

    `sumup_checkout_id` is the SumUp checkout of the attempt the change is about.
    """
    payload: OrderEventPayload = {
        "order_id": order.id,
        "number": order.number,
        "user_id": order.user_id,
        "session_id": order.session_id,
        "page_post_id": order.page_post_id,
        "status": order.status,
        "currency": order.currency,
        "total": money_string(order.total_amount),
        "items": [
            {
                "product_id": item.product_id,
                "title": item.product_title,
                "quantity": item.quantity,
                "unit_price": money_string(item.unit_price),
                "line_total": money_string(item.line_total),
            }
            for item in order.items
        ],
        "entry_ids": [int(entry_id) for entry_id in entry_ids],
        "sumup_checkout_id": sumup_checkout_id,
        "sumup_transaction_code": order.sumup_transaction_code,
        "created_at": order.created_at.isoformat() if order.created_at else None,
        "paid_at": order.paid_at.isoformat() if order.paid_at else None,
        "reason": reason,
    }
    return dict(payload)


# --- the relay ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Row:
    id: int
    event_type: str
    aggregate_type: str
    aggregate_id: str
    payload: dict[str, Any]
    occurred_at: datetime

    def stream_fields(self) -> dict[str, str]:
        return {
            "event_id": str(self.id),
            "type": self.event_type,
            "aggregate_type": self.aggregate_type,
            "aggregate_id": self.aggregate_id,
            "payload": json.dumps(self.payload, separators=(",", ":"), ensure_ascii=False),
            "occurred_at": self.occurred_at.isoformat(),
        }


def _is_lock_timeout(error: DBAPIError) -> bool:
    return getattr(error.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE


async def _publish_horizon(session_factory: SessionFactory) -> int | None:
    """The largest id up to which every outbox row is final; None if none waits."""
    try:
        async with session_factory() as session, session.begin():
            waiting = await session.scalar(
                select(func.min(DomainEvent.id)).where(DomainEvent.published_at.is_(None))
            )
            if waiting is None:
                return None
            taken = await session.scalar(select(func.pg_try_advisory_xact_lock(OUTBOX_WRITE_LOCK)))
            if not taken:
                await session.execute(text(f"SET LOCAL lock_timeout = '{HORIZON_LOCK_WAIT_MS}ms'"))
                await session.execute(select(func.pg_advisory_xact_lock(OUTBOX_WRITE_LOCK)))
            horizon: int | None = await session.scalar(select(func.max(DomainEvent.id)))
            return horizon
    except DBAPIError as error:
        if not _is_lock_timeout(error):
            raise
        log.info("events relay: an emitting transaction is still open; trying again later")
        return None


async def _claim_batch(session: AsyncSession, *, horizon: int, limit: int) -> list[_Row]:
    """Lock the oldest unpublished rows up to `horizon`; [] if it is not our turn."""
    if not await session.scalar(select(func.pg_try_advisory_xact_lock(PUBLISH_TURN_LOCK))):
        return []
    unpublished = DomainEvent.published_at.is_(None)
    result = await session.execute(
        select(
            DomainEvent.id,
            DomainEvent.event_type,
            DomainEvent.aggregate_type,
            DomainEvent.aggregate_id,
            DomainEvent.payload,
            DomainEvent.occurred_at,
        )
        .where(unpublished, DomainEvent.id <= horizon)
        .order_by(DomainEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = [_Row(*row) for row in result]
    if not rows:
        return []
    # SKIP LOCKED may have jumped over a row someone else holds: publishing past it
    # would break the order, so wait for it instead.
    in_range = await session.scalar(
        select(func.count()).where(unpublished, DomainEvent.id <= rows[-1].id)
    )
    if in_range != len(rows):
        log.info("events relay: an unpublished event is locked elsewhere; trying again later")
        return []
    return rows


async def _xadd_batch(redis: Redis, settings: EventSettings, rows: Sequence[_Row]) -> int:
    """XADD the rows in one MULTI/EXEC, retrying with backoff; returns the tries used."""
    tries = 0
    async for attempt in AsyncRetrying(
        stop=stop_after_attempt(PUBLISH_TRIES),
        wait=wait_exponential(multiplier=0.05, max=1.0),
        retry=retry_if_exception_type(RedisError),
        reraise=True,
    ):
        with attempt:
            tries += 1
            async with redis.pipeline(transaction=True) as pipe:
                for row in rows:
                    # `~` trims whole radix-tree nodes only, so at least
                    # stream_min_length entries stay and trimming stays cheap.
                    pipe.xadd(
                        settings.stream,
                        row.stream_fields(),  # type: ignore[arg-type]
                        maxlen=settings.stream_min_length,
                        approximate=True,
                    )
                await pipe.execute()
    return tries


async def publish_pending(
    session_factory: SessionFactory, redis: Redis, settings: EventSettings
) -> int:
    """Publish one batch of unpublished events in order; returns how many were published."""
    horizon = await _publish_horizon(session_factory)
    if horizon is None:
        return 0
    failure: RedisError | None = None
    async with session_factory() as session, session.begin():
        rows = await _claim_batch(session, horizon=horizon, limit=settings.relay_batch_size)
        if not rows:
            return 0
        ids = [row.id for row in rows]
        try:
            tries = await _xadd_batch(redis, settings, rows)
        except RedisError as error:
            failure = error
            await session.execute(
                update(DomainEvent)
                .where(DomainEvent.id.in_(ids))
                .values(
                    attempts=DomainEvent.attempts + PUBLISH_TRIES,
                    last_error=f"{type(error).__name__}: {error}"[:ERROR_TEXT_LIMIT],
                )
            )
        else:
            # last_error is kept: it tells the engineer on call the event was late.
            await session.execute(
                update(DomainEvent)
                .where(DomainEvent.id.in_(ids))
                .values(
                    published_at=func.clock_timestamp(),
                    attempts=DomainEvent.attempts + tries,
                )
            )
    if failure is not None:
        raise EventRelayError(
            f"could not publish events {ids[0]}..{ids[-1]} to Redis: {failure}"
        ) from failure
    EVENTS_PUBLISHED.inc(len(rows))
    return len(rows)


async def _sleep_unless_stopped(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def relay_forever(
    session_factory: SessionFactory,
    redis: Redis,
    settings: EventSettings,
    stop: asyncio.Event,
    *,
    max_backoff_seconds: float = MAX_BACKOFF_SECONDS,
) -> None:
    """Publish batches until `stop` is set; a batch under way is finished first."""

    def log_failure(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0.0
        # A Redis outage is expected and explained in one line; anything else is a
        # bug or a database problem and gets its traceback.
        log.warning(
            "events relay: %s; retrying in %.1fs",
            error,
            delay,
            exc_info=None if isinstance(error, EventRelayError) else error,
        )

    async def one_round() -> int:
        if stop.is_set():  # asked to stop while backing off
            return 0
        return await publish_pending(session_factory, redis, settings)

    # Failed rounds (Redis or the database away) back off exponentially, with
    # jitter so that the relays of many instances do not retry in lockstep.
    retrying = AsyncRetrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_exponential_jitter(
            multiplier=settings.relay_interval_seconds,
            jitter=settings.relay_interval_seconds,
            max=max_backoff_seconds,
        ),
        stop=lambda _: stop.is_set(),
        sleep=lambda seconds: _sleep_unless_stopped(stop, seconds),
        before_sleep=log_failure,
    )
    log.info("events relay: publishing to %s", settings.stream)
    while not stop.is_set():
        try:
            published: int = await retrying(one_round)
        except RetryError:  # a round failed after stop was set: do not retry it
            break
        # A full batch means more are waiting: go on at once.
        if published < settings.relay_batch_size:
            await _sleep_unless_stopped(stop, settings.relay_interval_seconds)
    log.info("events relay: stopped")


async def run_relay_in_app(app: Quart, stop: asyncio.Event) -> None:
    """The relay as a background loop of the web app (`events.relay_in_app`)."""
    await relay_forever(
        app.extensions["db_sessionmaker"],
        app.extensions["redis"],
        app.config["SETTINGS"].events,
        stop,
    )
