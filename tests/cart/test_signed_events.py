"""SumUp's signed event notifications, accepted only with a valid signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from quart import Quart
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app import create_app
from config.settings import Secret
from models import Order
from tests.factories import make_product, make_shop
from tests.orders.factories import checkout_id
from tests.shopper import add, post_form

SIGNING_SECRET = "whsec_test_signing_secret"


@pytest.fixture
async def signed_app(settings: Any, sandbox_control: Any) -> AsyncIterator[Quart]:
    await sandbox_control.reset()
    sumup = replace(settings.sumup, webhook_signing_secret=Secret(SIGNING_SECRET))
    app = create_app(replace(settings, sumup=sumup))
    async with app.test_app() as test_app:
        yield test_app  # type: ignore[misc]


def _signed(body: bytes, secret: str = SIGNING_SECRET) -> dict[str, str]:
    stamp = str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v1:" + stamp.encode() + b":" + body, hashlib.sha256)
    return {
        "X-SumUp-Webhook-Signature": f"t={stamp},v1={digest.hexdigest()}",
        "Content-Type": "application/json",
    }


def _event(checkout_id: str) -> bytes:
    return json.dumps(
        {
            "id": "evt_1",
            "type": "checkouts.paid",
            "created_at": "2026-11-24T10:00:00Z",
            "object": {
                "id": checkout_id,
                "type": "checkout",
                "url": f"https://api.sumup.com/v0.1/checkouts/{checkout_id}",
            },
        }
    ).encode()


async def _paid_at_sumup_unnotified(
    app: Quart, db: AsyncSession, sandbox_control: Any
) -> tuple[Any, Order]:
    client = app.test_client()
    _, market = await make_shop(db)
    await add(client, (await make_product(db, market)).id)
    await post_form(client, "/cart/checkout/")
    order = await db.scalar(select(Order))
    assert order is not None and await checkout_id(db, order)
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay(await checkout_id(db, order))
    return client, order


async def test_signed_checkout_paid_event_marks_the_order_paid(
    signed_app: Quart, db: AsyncSession, sandbox_control: Any
) -> None:
    client, order = await _paid_at_sumup_unnotified(signed_app, db, sandbox_control)
    body = _event(await checkout_id(db, order) or "")
    response = await client.post("/cart/checkout/events/", data=body, headers=_signed(body))
    assert response.status_code == 204
    await db.refresh(order)
    assert order.status == "paid"


async def test_event_with_a_bad_signature_is_refused_and_changes_nothing(
    signed_app: Quart, db: AsyncSession, sandbox_control: Any
) -> None:
    client, order = await _paid_at_sumup_unnotified(signed_app, db, sandbox_control)
    body = _event(await checkout_id(db, order) or "")
    response = await client.post(
        "/cart/checkout/events/", data=body, headers=_signed(body, secret="not-the-secret")
    )
    assert response.status_code == 401
    await db.refresh(order)
    assert order.status == "pending"


async def test_signed_events_are_off_without_a_signing_secret(app: Quart) -> None:
    body = _event("anything")
    response = await app.test_client().post(
        "/cart/checkout/events/", data=body, headers=_signed(body)
    )
    assert response.status_code == 404
