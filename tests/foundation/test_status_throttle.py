"""One order asks SumUp for its status at most once per few seconds from page loads."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import REGISTRY
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from services.status_throttle import claim_status_check
from tests.conftest import REDIS_PREFIX
from tests.orders.factories import checkout_id, latest_order, place_order
from tests.shopper import page_text, post_form


def _sumup_gets() -> float:
    value = REGISTRY.get_sample_value(
        "cart_sumup_calls_total", {"operation": "get", "outcome": "ok"}
    )
    return value or 0.0


async def test_fifty_return_page_loads_at_once_and_in_a_row_ask_sumup_once(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    """Issue 11, case 3: 100 loads in 3 s were 100 SumUp calls (past 60 a minute the
    session's rate limit answers 429, tested with the limits)."""
    await sandbox_control.reset()
    order = (await place_order(client, db)).order
    before = _sumup_gets()
    responses = await asyncio.gather(
        *(client.get(f"/cart/checkout/return/{order.id}/") for _ in range(30))
    )
    responses += [await client.get(f"/cart/checkout/return/{order.id}/") for _ in range(20)]
    assert {response.status_code for response in responses} == {200}
    pages = [await page_text(response) for response in responses]
    assert all("Confirming your payment" in page for page in pages)
    assert _sumup_gets() - before == 1


async def test_recheck_right_after_a_return_page_load_does_not_ask_again(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    await sandbox_control.reset()
    order = (await place_order(client, db)).order
    before = _sumup_gets()
    await client.get(f"/cart/checkout/return/{order.id}/")
    response = await post_form(client, f"/orders/{order.id}/recheck/")
    assert response.status_code == 303
    assert _sumup_gets() - before == 1


async def test_once_the_window_passes_the_next_load_asks_sumup_and_sees_the_payment(
    client: Client, db: AsyncSession, sandbox_control: Any, redis: Redis
) -> None:
    await sandbox_control.reset()
    await sandbox_control.behave(webhook="drop")  # only our own checks can see the payment
    order = (await place_order(client, db)).order
    await client.get(f"/cart/checkout/return/{order.id}/")
    await sandbox_control.pay(await checkout_id(db, order))
    still = await page_text(await client.get(f"/cart/checkout/return/{order.id}/"))
    assert "Confirming your payment" in still  # within the window: the stored state
    await redis.delete(f"{REDIS_PREFIX}status-check:{order.id}")  # the window has passed
    paid = await page_text(await client.get(f"/cart/checkout/return/{order.id}/"))
    assert "your payment was received" in paid
    assert (await latest_order(db)).status == "paid"


async def test_the_claim_is_held_for_its_interval(redis: Redis) -> None:
    key = f"{REDIS_PREFIX}status-check:test"
    assert await claim_status_check(redis, key=key, interval_ms=200) is True
    assert await claim_status_check(redis, key=key, interval_ms=200) is False
    await asyncio.sleep(0.3)
    assert await claim_status_check(redis, key=key, interval_ms=200) is True
