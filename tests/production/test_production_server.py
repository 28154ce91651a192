"""A production instance with two workers: one metrics view, JSON logs, no secrets in them."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from tests.orders.factories import make_order
from tests.production.servers import (
    SECRETS,
    Instance,
    Shopper,
    checkout_id_from,
    production_env,
    running,
    shopper_with_a_line,
    unused_port,
    wait_until_paid,
)

WORKERS = 2


@pytest.fixture(scope="module")
async def instance(
    sumup_sandbox: Any, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Instance]:
    folder = tmp_path_factory.mktemp("production")
    env = production_env(
        database_url=os.environ["DATABASE_URL_ASYNC"],
        port=unused_port(),
        sandbox_url=sumup_sandbox.base_url,
        workers=WORKERS,
        RUN_MIGRATIONS="false",
        PROMETHEUS_MULTIPROC_DIR=str(folder / "metrics"),
    )
    with running(env, folder / "server.log") as server:
        await server.wait_ready()
        yield server


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def _scrape(base_url: str, token: str | None = SECRETS["METRICS_TOKEN"]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    # A new connection each time, so the scrapes are spread over the workers.
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(f"{base_url}/metrics", headers=headers)


def _worker_pids(instance: Instance, route: str) -> set[int]:
    return {
        record["pid"]
        for record in instance.log_records()
        if record.get("logger") == "cart.access" and record.get("route") == route
    }


async def test_metrics_count_the_requests_of_every_worker_in_every_scrape(
    instance: Instance,
) -> None:
    before = _samples((await _scrape(instance.base_url)).text, "cart_http_requests_total")
    key = (("method", "GET"), ("route", "/healthz"), ("status", "200"))
    sent = 0
    # Fresh connections land on either worker; go on until both have served some.
    while sent < 20 or len(_worker_pids(instance, "/healthz")) < WORKERS:
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"{instance.base_url}/healthz")).status_code == 200
        sent += 1
        assert sent < 400, "one worker never served a request"
    await asyncio.sleep(0.2)  # the last access lines are written after the answer
    assert len(_worker_pids(instance, "/healthz")) == WORKERS

    seen = []
    for _ in range(8):
        response = await _scrape(instance.base_url)
        assert response.status_code == 200
        seen.append(_samples(response.text, "cart_http_requests_total")[key] - before.get(key, 0))
    assert seen == [sent] * 8
    assert len(_worker_pids(instance, "/metrics")) == WORKERS


async def test_metrics_read_orders_and_the_outbox_from_the_database(
    instance: Instance, db: AsyncSession
) -> None:
    await make_order(db, session_id="shopper-a", status="paid")
    await make_order(db, session_id="shopper-b", status="pending")
    text = (await _scrape(instance.base_url)).text
    orders = _samples(text, "cart_orders")
    assert orders[(("status", "paid"),)] == 1
    assert orders[(("status", "pending"),)] == 1
    assert orders[(("status", "cancelled"),)] == 0
    assert _samples(text, "cart_metrics_database_up") == {(): 1}
    for gauge in (
        "cart_outbox_unpublished",
        "cart_outbox_oldest_unpublished_seconds",
        "cart_outbox_oldest_open_emitter_seconds",
        "cart_outbox_relay_waiting",
    ):
        assert () in _samples(text, gauge), gauge


@pytest.mark.parametrize(
    "token", [None, "wrong-token", SECRETS["INTERNAL_API_TOKEN"]], ids=["none", "wrong", "internal"]
)
async def test_metrics_need_the_metrics_token(instance: Instance, token: str | None) -> None:
    response = await _scrape(instance.base_url, token)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "cart_http_requests_total" not in response.text


async def test_the_log_of_a_whole_checkout_is_json_with_request_ids_and_no_secrets(
    instance: Instance, db: AsyncSession, redis: Redis, sandbox_control: Any
) -> None:
    cookie = await shopper_with_a_line(db, redis)
    shopper = Shopper(instance.base_url, cookie, request_id="shopper-req-0001")
    try:
        checkout_id = checkout_id_from(await shopper.checkout())
        await sandbox_control.pay(checkout_id)  # SumUp's webhook reaches the instance
        order = await wait_until_paid(db)
        back = await shopper.client.get(f"/cart/checkout/return/{order.id}/")
        assert back.status_code == 200
    finally:
        await shopper.aclose()
    await asyncio.sleep(0.3)

    text = instance.log()
    records = instance.log_records()  # every line parses as JSON
    access = [r for r in records if r.get("logger") == "cart.access"]
    assert all(r.get("request_id") for r in access)
    ours = {r["route"] for r in access if r["request_id"] == "shopper-req-0001"}
    assert {"/cart/", "/cart/checkout/", "/cart/checkout/return/<bigid:order_id>/"} <= ours
    webhook = [r for r in access if r["route"] == "/cart/checkout/webhook/<bigid:order_id>/"]
    assert webhook and all(len(r["request_id"]) == 32 for r in webhook)  # made here
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} is in the log"
    running_lines = [r for r in records if str(r.get("message", "")).startswith("Running on")]
    assert len(running_lines) == WORKERS  # hypercorn's lines once each, not twice
