"""The refund API under arbitrary input: never a 5xx, and a refused request changes nothing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as run_settings
from hypothesis import strategies as st
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Order, Refund
from tests.orders.factories import checkout_id, latest_order, place_order

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
AMOUNTS = (
    st.none()
    | st.decimals(min_value=-5, max_value=50, places=3, allow_nan=False).map(str)
    | st.text(max_size=12)
    | st.floats(allow_nan=True)
    | st.integers(min_value=-(10**30), max_value=10**30)
    | JSON_VALUES
)
BODIES = (
    st.fixed_dictionaries({}, optional={"amount": AMOUNTS, "reason": JSON_VALUES | st.text()})
    | JSON_VALUES
)
KEYS = st.none() | st.text(max_size=120) | st.binary(max_size=40).map(lambda b: b.decode("latin-1"))


async def _state(db: AsyncSession) -> tuple[Any, ...]:
    order = await latest_order(db)
    count = await db.scalar(select(func.count()).select_from(Refund))
    return order.status, order.refunded_amount, count


@run_settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=BODIES, key=KEYS, raw=st.none() | st.binary(max_size=200))
async def test_any_refund_request_gets_a_json_answer_below_500_and_refusals_change_nothing(
    app: Quart,
    paid_order: Order,
    db: AsyncSession,
    settings: Any,
    body: Any,
    key: str | None,
    raw: bytes | None,
) -> None:
    headers = {"Authorization": f"Bearer {settings.internal_api_token.reveal()}"}
    if key is not None and all(32 <= ord(c) < 127 or c == "\t" for c in key):
        headers["Idempotency-Key"] = key
    before = await _state(db)
    client = app.test_client()
    url = f"/internal/orders/{paid_order.id}/refund"
    if raw is not None:
        response = await client.post(url, data=raw, headers=headers)
    else:
        response = await client.post(url, data=json.dumps(body, allow_nan=True), headers=headers)
    answer = await response.get_json()
    assert response.status_code < 500, answer
    assert isinstance(answer, dict) and (response.status_code < 400 or "message" in answer)
    after = await _state(db)
    if response.status_code >= 400:
        assert after == before
    else:
        assert after[1] <= Decimal("19.00")


async def _paid(client: Client, db: AsyncSession, sandbox_control: Any) -> Order:
    placed = await place_order(client, db)
    await sandbox_control.pay(await checkout_id(db, placed.order))
    return await latest_order(db)


@pytest.fixture
async def paid_order(client: Client, db: AsyncSession, sandbox_control: Any) -> Order:
    """One paid £19 order for the whole property run (refunds only ever lower it)."""
    return await _paid(client, db, sandbox_control)
