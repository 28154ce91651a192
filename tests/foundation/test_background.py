"""Background loops stop with the server without cutting their round."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

import services.background
from tests.orders.factories import current_attempt, place_order


def _sweep_runs() -> float:
    return REGISTRY.get_sample_value("cart_reconcile_runs_total", {"result": "ok"}) or 0.0


def _sweeping_app(settings: Any) -> Any:
    from app import create_app

    return create_app(
        replace(settings, reconcile=replace(settings.reconcile, in_app=True, interval_seconds=60))
    )


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


async def test_stopping_lets_the_sweep_finish_the_round_it_is_in(
    client: Client,
    db: AsyncSession,
    settings: Any,
    sandbox_control: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.behave(delay_seconds=1.5)  # each SumUp call of the round is slow
    runs = _sweep_runs()
    caplog.set_level(logging.INFO, logger="services.background")
    app = _sweeping_app(settings)
    async with app.test_app():
        await asyncio.sleep(0.3)  # the round has started and waits on SumUp
        stopping = time.monotonic()
    assert time.monotonic() - stopping >= 1.0  # the stop waited for the round
    attempt = await current_attempt(db, placed.order)
    assert attempt.checked_at is not None  # the round asked SumUp and recorded it
    assert _sweep_runs() == runs + 1
    assert "reconcile sweep: stopped" in caplog.text
    assert "cancelling" not in caplog.text


async def test_a_round_longer_than_the_grace_is_cancelled_and_said_so(
    client: Client,
    db: AsyncSession,
    settings: Any,
    sandbox_control: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await place_order(client, db)
    await sandbox_control.behave(delay_seconds=5)
    monkeypatch.setattr(services.background, "STOP_GRACE_SECONDS", 0.5)
    caplog.set_level(logging.INFO, logger="services.background")
    app = _sweeping_app(settings)
    async with app.test_app():
        await asyncio.sleep(0.3)
        stopping = time.monotonic()
    assert time.monotonic() - stopping < 3
    assert "did not finish its round in time; cancelling it" in caplog.text
