"""Operator commands for domain events: `relay-events` and `consume-events`."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys

import click
from quart import Blueprint

from bp.ops.commands import command_settings
from config import Settings
from services.db import create_engine, create_sessionmaker
from services.event_consumer import StreamEvent, consume_events
from services.events import EventRelayError, publish_pending, relay_forever
from services.redis_client import create_redis

bp = Blueprint("event_commands", __name__, cli_group=None)


def _stop_on_signals(stop: asyncio.Event) -> None:
    """Ctrl-C and SIGTERM ask the loop to stop after what it is doing."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Only the main thread may handle signals (a test runs commands in another).
        with contextlib.suppress(RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)


async def _relay(settings: Settings, *, once: bool) -> int:
    engine = create_engine(settings.database_url, pool_size=2)
    redis = create_redis(settings.redis_url)
    session_factory = create_sessionmaker(engine)
    try:
        if not once:
            stop = asyncio.Event()
            _stop_on_signals(stop)
            await relay_forever(session_factory, redis, settings.events, stop)
            return 0
        total = 0
        while published := await publish_pending(session_factory, redis, settings.events):
            total += published
        return total
    finally:
        await redis.aclose()
        await engine.dispose()


@bp.cli.command("relay-events")
@click.option("--once", is_flag=True, help="Publish what is waiting now, then exit.")
def relay_events_command(once: bool) -> None:
    """Relay the outbox to the Redis Stream until Ctrl-C or SIGTERM (graceful)."""
    settings = command_settings()
    try:
        published = asyncio.run(_relay(settings, once=once))
    except EventRelayError as error:
        raise click.ClickException(str(error)) from None
    if once:
        click.echo(f"events published: {published}")


async def _consume(
    settings: Settings, *, group: str, consumer: str, count: int | None, block_ms: int
) -> int:
    redis = create_redis(settings.redis_url)
    stop = asyncio.Event()
    _stop_on_signals(stop)

    async def print_event(event: StreamEvent) -> None:
        click.echo(event.to_json_line())
        sys.stdout.flush()

    try:
        return await consume_events(
            redis,
            stream=settings.events.stream,
            group=group,
            consumer=consumer,
            handle=print_event,
            count=count,
            block_ms=block_ms,
            stop=stop,
        )
    finally:
        await redis.aclose()


@bp.cli.command("consume-events")
@click.option("--group", required=True, help="Consumer group; created if missing.")
@click.option("--consumer", default=None, help="Consumer name [default: host-pid].")
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Exit after N events, or when nothing new arrives within --block-ms.",
)
@click.option(
    "--block-ms",
    type=click.IntRange(min=1),
    default=5000,
    show_default=True,
    help="How long one read waits for new events.",
)
def consume_events_command(
    group: str, consumer: str | None, count: int | None, block_ms: int
) -> None:
    """Print the stream's events as JSON lines through a consumer group, acknowledging each."""
    settings = command_settings()
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    asyncio.run(_consume(settings, group=group, consumer=name, count=count, block_ms=block_ms))
