"""SIGTERM with two workers: every request in flight gets its answer, none is cut.

hypercorn's own `--workers 2` ended the busy worker as soon as the idle one had
stopped: a checkout whose SumUp create took seconds was dropped after about one.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import CheckoutAttempt
from tests.production.servers import (
    Shopper,
    checkout_id_from,
    production_env,
    running,
    shopper_with_a_line,
    unused_port,
)

SUMUP_CREATE_SECONDS = 3.0


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


async def _creates_started(sandbox_control: Any, count: int, within: float = 10) -> None:
    """Until SumUp has been asked `count` times: every checkout is in its slow call."""
    deadline = time.monotonic() + within
    while (await sandbox_control.stats())["create_attempts"] < count:
        assert time.monotonic() < deadline, "the checkouts never reached SumUp"
        await asyncio.sleep(0.05)


async def _checkouts_across_sigterm(
    *, shoppers: int, db: AsyncSession, redis: Redis, sandbox: Any, control: Any, log: Path
) -> tuple[list[httpx.Response], int, float]:
    cookies = [await shopper_with_a_line(db, redis) for _ in range(shoppers)]
    port = unused_port()
    env = production_env(
        database_url=os.environ["DATABASE_URL_ASYNC"],
        port=port,
        sandbox_url=sandbox.base_url,
        workers=2,
        RUN_MIGRATIONS="false",
    )
    await control.behave(delay_seconds=SUMUP_CREATE_SECONDS, delay_only_create=True)
    with running(env, log) as instance:
        await instance.wait_ready()
        clients = [Shopper(instance.base_url, cookie) for cookie in cookies]
        try:
            answers = [asyncio.create_task(client.checkout()) for client in clients]
            await _creates_started(control, shoppers)
            instance.terminate()
            stopped_at = time.monotonic()
            responses = await asyncio.gather(*answers)
        finally:
            for client in clients:
                await client.aclose()
        code = await asyncio.to_thread(instance.wait)
        return responses, code, time.monotonic() - stopped_at


async def test_a_slow_sumup_create_still_gets_its_answer_after_sigterm_with_two_workers(
    db: AsyncSession, redis: Redis, sumup_sandbox: Any, sandbox_control: Any, tmp_path: Path
) -> None:
    (response,), code, _ = await _checkouts_across_sigterm(
        shoppers=1,
        db=db,
        redis=redis,
        sandbox=sumup_sandbox,
        control=sandbox_control,
        log=tmp_path / "server.log",
    )
    checkout_id = checkout_id_from(response)
    attempt = await db.scalar(select(CheckoutAttempt).execution_options(populate_existing=True))
    assert attempt is not None and attempt.sumup_checkout_id == checkout_id
    assert code == 0


async def test_sigterm_under_load_with_two_workers_loses_no_request(
    db: AsyncSession, redis: Redis, sumup_sandbox: Any, sandbox_control: Any, tmp_path: Path
) -> None:
    responses, code, stop_seconds = await _checkouts_across_sigterm(
        shoppers=6,
        db=db,
        redis=redis,
        sandbox=sumup_sandbox,
        control=sandbox_control,
        log=tmp_path / "server.log",
    )
    checkout_ids = {checkout_id_from(response) for response in responses}
    recorded = set(
        await db.scalars(
            select(CheckoutAttempt.sumup_checkout_id).execution_options(populate_existing=True)
        )
    )
    assert len(checkout_ids) == 6
    assert recorded == checkout_ids
    assert code == 0
    assert stop_seconds < SUMUP_CREATE_SECONDS + 15


async def test_while_workers_drain_new_connections_are_refused_not_left_hanging(
    db: AsyncSession, redis: Redis, sumup_sandbox: Any, sandbox_control: Any, tmp_path: Path
) -> None:
    cookie = await shopper_with_a_line(db, redis)
    port = unused_port()
    env = production_env(
        database_url=os.environ["DATABASE_URL_ASYNC"],
        port=port,
        sandbox_url=sumup_sandbox.base_url,
        workers=2,
        RUN_MIGRATIONS="false",
    )
    await sandbox_control.behave(delay_seconds=SUMUP_CREATE_SECONDS, delay_only_create=True)
    with running(env, tmp_path / "server.log") as instance:
        await instance.wait_ready()
        shopper = Shopper(instance.base_url, cookie)
        try:
            answer = asyncio.create_task(shopper.checkout())
            await _creates_started(sandbox_control, 1)
            instance.terminate()
            await asyncio.sleep(1.0)  # the workers and the supervisor close their listeners
            started = time.monotonic()
            with pytest.raises(httpx.ConnectError):
                async with httpx.AsyncClient(timeout=5) as client:
                    await client.get(f"{instance.base_url}/healthz")
            refused_after = time.monotonic() - started
            assert not answer.done()  # the checkout is still being served meanwhile
            checkout_id_from(await answer)
        finally:
            await shopper.aclose()
        assert await asyncio.to_thread(instance.wait) == 0
    assert refused_after < 1
    lines = [record["message"] for record in instance.log_records()]
    assert "stopping: workers finish their requests" in lines
    assert lines[-1] == "stopped"
