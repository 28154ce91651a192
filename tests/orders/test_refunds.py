"""Refunds through SumUp: the admin's API and money an order could not take, exactly once."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bp.cart.services.checkout_attempts import (
    CheckoutContext,
    add_attempt,
    create_or_recover,
    record_created,
)
from bp.cart.services.order_queries import load_order
from bp.cart.services.reconcile import reconcile_orders
from models import CalendarEntry, Refund
from services.sumup import account_for_merchant
from tests.orders.factories import (
    PlacedOrder,
    checkout_id,
    event_count,
    latest_order,
    place_order,
    reload,
)

URL = "/internal/orders/{}/refund"


async def _paid_order(client: Client, db: AsyncSession, sandbox_control: Any) -> PlacedOrder:
    """A £19 order (2 × £4.50 and a £10 booking), paid."""
    placed = await place_order(client, db)
    await sandbox_control.pay(await checkout_id(db, placed.order))
    assert (await latest_order(db)).status == "paid"
    return placed


async def _refund(
    app: Quart,
    settings: Any,
    order_id: int,
    key: str | None,
    body: Any = None,
    *,
    token: str | None = "",
) -> tuple[int, dict[str, Any]]:
    """The blog app's admin asking for a refund (its own client: no shopper cookies)."""
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token or settings.internal_api_token.reveal()}"
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await app.test_client().post(URL.format(order_id), json=body, headers=headers)
    return response.status_code, await response.get_json()


async def _refunds(db: AsyncSession, order_id: int) -> list[Refund]:
    query = (
        select(Refund)
        .where(Refund.order_id == order_id)
        .order_by(Refund.id)
        .execution_options(populate_existing=True)
    )
    return list(await db.scalars(query))


async def test_partial_then_full_refund_ends_refunded_with_the_bookings_released(
    app: Quart, client: Client, db: AsyncSession, sandbox_control: Any, settings: Any
) -> None:
    placed = await _paid_order(client, db, sandbox_control)

    status, body = await _refund(
        app, settings, placed.order.id, "k-1", {"amount": "4.50", "reason": "eggs broken"}
    )

    assert status == 200
    assert (body["status"], body["refunded_total"]) == ("partially_refunded", "4.50")
    assert [r["amount"] for r in body["refunds"]] == ["4.50"]
    assert (await reload(db, placed.entry)).state == "provisional"

    status, body = await _refund(app, settings, placed.order.id, "k-2", {"reason": "the rest"})

    assert status == 200
    assert (body["status"], body["refunded_total"]) == ("refunded", "19.00")
    assert [r["amount"] for r in body["refunds"]] == ["4.50", "14.50"]
    order = await latest_order(db)
    assert order.refunded_amount == Decimal("19.00")
    assert (await reload(db, placed.entry)).state == "cancelled"
    money = (await sandbox_control.money())["GBP"]
    assert money.taken == money.refunded == Decimal("19.00")
    assert await event_count(db, "order.refunded", order.id) == 2
    html = await (await client.get(f"/orders/{order.id}/")).get_data(as_text=True)
    assert "eggs broken" in html and 'data-status="refunded"' in html


async def test_the_same_key_again_answers_the_same_and_refunds_nothing_more(
    app: Quart, client: Client, db: AsyncSession, sandbox_control: Any, settings: Any
) -> None:
    placed = await _paid_order(client, db, sandbox_control)

    first = await _refund(app, settings, placed.order.id, "same", {"amount": "1.50"})
    again = await _refund(app, settings, placed.order.id, "same", {"amount": "1.50"})

    assert first == again
    assert first[0] == 200 and first[1]["refunded_total"] == "1.50"
    assert (await sandbox_control.stats())["refunds_applied"] == 1
    assert len(await _refunds(db, placed.order.id)) == 1


async def test_six_racing_refunds_never_give_back_more_than_was_paid(
    app: Quart, client: Client, db: AsyncSession, sandbox_control: Any, settings: Any
) -> None:
    placed = await _paid_order(client, db, sandbox_control)

    answers = await asyncio.gather(
        *(
            _refund(app, settings, placed.order.id, f"race-{n}", {"amount": "5.00"})
            for n in range(6)
        )
    )

    statuses = sorted(status for status, _ in answers)
    assert statuses == [200, 200, 200, 409, 409, 409]  # 3 × 5.00 of 19.00 fit
    assert (await latest_order(db)).refunded_amount == Decimal("15.00")
    assert (await sandbox_control.money())["GBP"].refunded == Decimal("15.00")
    assert await event_count(db, "order.refunded") == 3


async def test_six_racing_requests_with_one_key_refund_once(
    app: Quart, client: Client, db: AsyncSession, sandbox_control: Any, settings: Any
) -> None:
    placed = await _paid_order(client, db, sandbox_control)

    answers = await asyncio.gather(
        *(_refund(app, settings, placed.order.id, "one-key", {"amount": "2.00"}) for _ in range(6))
    )

    assert {status for status, _ in answers} == {200}
    assert {body["refunded_total"] for _, body in answers} == {"2.00"}
    assert (await sandbox_control.stats())["refunds_applied"] == 1


async def test_a_refund_whose_answer_sumup_lost_is_settled_once_without_sending_it_again(
    app: Quart, client: Client, db: AsyncSession, sandbox_control: Any, settings: Any
) -> None:
    placed = await _paid_order(client, db, sandbox_control)
    # SumUp applies the refund, then answers after our 2 s timeout.
    await sandbox_control.behave(only="refund", delay_seconds=3, fail_count=1)

    status, body = await _refund(app, settings, placed.order.id, "slow", {"amount": "3.00"})

    assert status == 200 and body["refunded_total"] == "3.00"
    assert (await sandbox_control.stats())["refunds_applied"] == 1
    again = await _refund(app, settings, placed.order.id, "slow", {"amount": "3.00"})
    assert again == (status, body)
    assert (await sandbox_control.stats())["refunds_applied"] == 1


async def test_a_refund_sumup_could_not_take_stays_pending_and_the_sweep_settles_it(
    app: Quart,
    client: Client,
    db: AsyncSession,
    sandbox_control: Any,
    settings: Any,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
) -> None:
    placed = await _paid_order(client, db, sandbox_control)
    await sandbox_control.behave(only="refund", fail_status=503)

    status, body = await _refund(app, settings, placed.order.id, "later", {"amount": "3.00"})

    assert status == 202 and body["refund"]["status"] == "pending"
    assert "same Idempotency-Key" in body["message"]
    await sandbox_control.behave()
    report = await reconcile_orders(
        sessions, context, batch_size=10, expire_after=timedelta(hours=1)
    )
    assert report.refunds == 1
    status, body = await _refund(app, settings, placed.order.id, "later", {"amount": "3.00"})
    assert status == 200 and body["refunded_total"] == "3.00"
    assert (await sandbox_control.stats())["refunds_applied"] == 1


async def test_an_order_paid_twice_gets_the_second_payment_back_and_the_first_on_request(
    app: Quart,
    client: Client,
    db: AsyncSession,
    sandbox_control: Any,
    settings: Any,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
) -> None:
    placed = await _paid_order(client, db, sandbox_control)
    # A second checkout of the same order that SumUp also took money on (two tabs,
    # a retire SumUp never applied): made and paid here as SumUp would see it.
    order = await load_order(db, placed.order.id)
    account = await account_for_merchant(db, settings, order.sumup_merchant_code or "")
    second = await add_attempt(db, order, account)
    await db.commit()
    made, origin = await create_or_recover(context, account, second, order)
    await record_created(db, second, made, origin)
    await db.commit()
    await sandbox_control.pay(made.id)  # its webhook settles it: a surplus, refunded

    await reconcile_orders(sessions, context, batch_size=10, expire_after=timedelta(hours=1))

    order = await latest_order(db)
    assert order.status == "paid" and order.refunded_amount == 0
    [auto] = await _refunds(db, order.id)
    assert (auto.requested_by, auto.status, auto.amount) == ("auto", "succeeded", 19)
    assert auto.reason == "automatic: order was already paid"
    status, body = await _refund(app, settings, order.id, "all", {})
    assert status == 200 and body["status"] == "refunded"
    assert body["refunded_total"] == "38.00"
    money = (await sandbox_control.money())["GBP"]
    assert money.taken == money.refunded == Decimal("38.00")
    assert await event_count(db, "order.paid", order.id) == 1


@pytest.mark.parametrize(
    ("body", "key", "status", "words"),
    [
        ({"amount": "20.00"}, "too-much", 409, "left to refund"),
        ({"amount": "0"}, "zero", 422, "more than 0"),
        ({"amount": "1.234"}, "pence", 422, "two decimals"),
        ({"amount": "lots"}, "words", 422, "number of pounds"),
        ({"amount": True}, "bool", 422, "number of pounds"),
        ([1, 2], "list", 400, "JSON object"),
        ({"amount": "1.00"}, None, 400, "Idempotency-Key"),
        ({"amount": "1.00"}, "x" * 101, 400, "Idempotency-Key"),
        ({"reason": "r" * 256}, "long", 400, "reason"),
    ],
)
async def test_a_refund_asked_wrong_is_refused_with_a_json_reason_and_changes_nothing(
    app: Quart,
    client: Client,
    db: AsyncSession,
    sandbox_control: Any,
    settings: Any,
    body: Any,
    key: str | None,
    status: int,
    words: str,
) -> None:
    placed = await _paid_order(client, db, sandbox_control)

    answer = await _refund(app, settings, placed.order.id, key, body)

    assert answer[0] == status and words in answer[1]["message"]
    assert await _refunds(db, placed.order.id) == []
    assert (await sandbox_control.stats())["refund_attempts"] == 0


async def test_refunds_of_unpaid_unknown_or_unauthorised_orders_are_refused(
    app: Quart, client: Client, db: AsyncSession, settings: Any
) -> None:
    placed = await place_order(client, db)

    assert (await _refund(app, settings, placed.order.id, "unpaid", {}))[0] == 409
    assert (await _refund(app, settings, 999999, "unknown", {}))[0] == 404
    assert (await _refund(app, settings, placed.order.id, "anon", {}, token=None))[0] == 401
    assert (await _refund(app, settings, placed.order.id, "bad", {}, token="nope" * 8))[0] == 401
    entry = await db.scalar(select(CalendarEntry).execution_options(populate_existing=True))
    assert entry is not None and entry.state == "ordered"
    assert (await latest_order(db)).status == "pending"
