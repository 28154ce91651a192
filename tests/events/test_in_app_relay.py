"""The relay as a background loop of the web app."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.events.factories import emit_committed, stream_event_ids, unpublished_count, wait_until


async def test_in_app_relay_starts_with_the_app_and_stops_gracefully(
    sessions: async_sessionmaker[AsyncSession],
    redis: Redis,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from app import create_app

    relaying = replace(
        settings, events=replace(settings.events, relay_in_app=True, relay_interval_seconds=0.02)
    )
    application = create_app(relaying)
    caplog.set_level(logging.INFO, logger="services")

    async with application.test_app():
        (task,) = [t for t in asyncio.all_tasks() if t.get_name() == "events-relay"]
        ids = await emit_committed(sessions, 3)

        async def all_published() -> bool:
            return await unpublished_count(sessions) == 0

        await wait_until(all_published)
        assert not task.done()

    assert task.done()
    assert not task.cancelled()
    assert task.exception() is None
    assert await stream_event_ids(redis, settings.events.stream) == ids
    assert "events relay: stopped" in caplog.text
    assert "crashed" not in caplog.text


def test_relay_runs_in_app_by_default() -> None:
    from config.settings import CONFIG_FILE, _read_yaml

    assert _read_yaml(CONFIG_FILE)["events"]["relay_in_app"] is True
