"""The reconcile sweep: lost webhooks, abandoned payments, several sweeps at once."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bp.cart.services.checkout_attempts import CheckoutContext
from bp.cart.services.reconcile import ReconcileReport, reconcile_orders
from models import CheckoutAttempt, Order
from tests.orders.factories import (
    PlacedOrder,
    checkout_id,
    event_count,
    latest_order,
    place_order,
    reload,
    sandbox_status,
)
from tests.shopper import page_text, post_form

ROOT = Path(__file__).resolve().parents[2]
EXPIRE_AFTER = timedelta(hours=1)


async def _sweep(
    sessions: async_sessionmaker[AsyncSession], context: CheckoutContext, batch_size: int = 50
) -> ReconcileReport:
    return await reconcile_orders(
        sessions, context, batch_size=batch_size, expire_after=EXPIRE_AFTER
    )


async def _orders_of_shoppers(app: Quart, db: AsyncSession, count: int) -> list[PlacedOrder]:
    """`count` orders, each placed by a shopper of its own, oldest first."""
    return [await place_order(app.test_client(), db) for _ in range(count)]


async def _age(db: AsyncSession, order_id: int, by: timedelta) -> None:
    """Pretend the order was placed, and its checkout started, `by` ago."""
    await db.execute(
        update(Order)
        .where(Order.id == order_id)
        .values(created_at=func.now() - by, checkout_started_at=func.now() - by)
    )
    await db.commit()


async def _statuses(db: AsyncSession) -> list[str]:
    query = select(Order.status).order_by(Order.id).execution_options(populate_existing=True)
    return list(await db.scalars(query))


async def test_sweep_marks_a_paid_order_whose_webhook_never_came_paid_once(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay(await checkout_id(db, placed.order))
    assert (await latest_order(db)).status == "pending"

    report = await _sweep(sessions, context)

    assert (report.checked, report.paid, report.expired) == (1, 1, 0)
    assert report.order_ids == [placed.order.id]
    order = await latest_order(db)
    assert order.status == "paid" and order.sumup_transaction_code
    assert (await reload(db, placed.entry)).state == "provisional"
    again = await _sweep(sessions, context)
    assert (again.checked, again.paid) == (0, 0)
    assert await event_count(db, "order.paid") == 1


async def test_sweep_records_a_declined_payment_whose_webhook_never_came(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.decline(await checkout_id(db, placed.order))

    report = await _sweep(sessions, context)

    assert (report.checked, report.failed) == (1, 1)
    assert (await latest_order(db)).status == "failed"
    assert await event_count(db, "order.failed") == 1
    assert (await reload(db, placed.entry)).state == "ordered"  # it may still be paid


async def test_sweep_leaves_a_recent_unpaid_order_alone(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    report = await _sweep(sessions, context)
    assert (report.checked, report.paid, report.failed, report.expired) == (1, 0, 0, 0)
    assert (await latest_order(db)).status == "pending"
    assert await sandbox_status(sandbox_control, await checkout_id(db, placed.order)) == "PENDING"


async def test_sweep_expires_an_old_unpaid_order_and_gives_its_bookings_back(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    await _age(db, placed.order.id, EXPIRE_AFTER + timedelta(minutes=1))

    report = await _sweep(sessions, context)

    assert report.expired == 1 and report.paid == 0
    order = await latest_order(db)
    assert order.status == "expired"
    assert await sandbox_status(sandbox_control, await checkout_id(db, order)) == "EXPIRED"
    entry = await reload(db, placed.entry)
    assert (entry.state, entry.order_id) == ("pending", None)
    assert placed.entry.name in await page_text(await client.get("/cart/"))
    again = await _sweep(sessions, context)
    assert again.expired == 0
    assert await event_count(db, "order.expired", order.id) == 1


async def test_order_expired_by_the_sweep_is_paid_again_while_its_bookings_are_free(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    await _age(db, placed.order.id, timedelta(days=1))
    await _sweep(sessions, context)

    response = await post_form(client, f"/orders/{placed.order.id}/pay/")

    assert response.status_code == 303
    order = await latest_order(db)
    assert order.status == "pending"
    entry = await reload(db, placed.entry)
    assert (entry.state, entry.order_id) == ("ordered", order.id)
    assert (await sandbox_control.stats())["created"] == 2


async def test_order_expired_by_the_sweep_whose_booking_left_the_cart_asks_for_a_new_checkout(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    await _age(db, placed.order.id, timedelta(days=1))
    await _sweep(sessions, context)
    removed = await post_form(client, f"/cart/entries/{placed.entry.id}/remove/")
    assert removed.status_code == 303

    response = await post_form(client, f"/orders/{placed.order.id}/pay/")

    assert response.status_code == 409
    assert "Please check out your cart again." in await page_text(response)
    assert (await sandbox_control.stats())["created"] == 1
    assert (await latest_order(db)).status == "expired"


async def test_order_expired_by_the_sweep_whose_product_was_repriced_asks_for_a_new_checkout(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    await _age(db, placed.order.id, timedelta(days=1))
    await _sweep(sessions, context)
    placed.product.regular_price = Decimal("5.00")
    await db.commit()

    response = await post_form(client, f"/orders/{placed.order.id}/pay/")

    assert response.status_code == 409
    assert "changed since order" in await page_text(response)
    assert (await sandbox_control.stats())["created"] == 1
    entry = await reload(db, placed.entry)
    assert (entry.state, entry.order_id) == ("pending", None)


async def test_old_order_paid_at_sumup_but_never_notified_is_paid_not_expired(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    await _age(db, placed.order.id, timedelta(days=1))
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay(await checkout_id(db, placed.order))

    report = await _sweep(sessions, context)

    assert (report.paid, report.expired) == (1, 0)
    assert (await latest_order(db)).status == "paid"
    assert await event_count(db, "order.expired") == 0
    assert (await reload(db, placed.entry)).state == "provisional"


async def test_old_order_is_not_expired_while_sumup_cannot_be_asked(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    await _age(db, placed.order.id, timedelta(days=1))
    await sandbox_control.behave(fail_status=503)

    report = await _sweep(sessions, context)

    assert report.errors == 2 and report.expired == 0  # the re-check and the deactivation
    assert (await latest_order(db)).status == "pending"
    assert (await reload(db, placed.entry)).state == "ordered"


async def test_two_sweeps_at_once_do_each_order_once(
    app: Quart,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await _orders_of_shoppers(app, db, 8)
    unnotified, abandoned = placed[:4], placed[4:]
    await sandbox_control.behave(webhook="drop")
    for paid in unnotified:
        await sandbox_control.pay(await checkout_id(db, paid.order))
    for old in abandoned:
        await _age(db, old.order.id, timedelta(days=1))

    reports = await asyncio.gather(_sweep(sessions, context), _sweep(sessions, context))

    checked = [order_id for report in reports for order_id in report.order_ids]
    assert sorted(checked) == [p.order.id for p in placed]  # each once, by one sweep
    assert sum(r.checked for r in reports) == 8
    assert sum(r.paid for r in reports) == 4 and sum(r.expired for r in reports) == 4
    assert await _statuses(db) == ["paid"] * 4 + ["expired"] * 4
    assert await event_count(db, "order.paid") == 4
    assert await event_count(db, "order.expired") == 4
    for old in abandoned:
        assert (await reload(db, old.entry)).state == "pending"


async def test_a_sweep_does_at_most_a_batch_of_each_kind_oldest_first(
    app: Quart,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
) -> None:
    placed = await _orders_of_shoppers(app, db, 5)
    for age, each in enumerate(reversed(placed), start=2):  # the first placed is the oldest
        await _age(db, each.order.id, timedelta(hours=age))

    report = await _sweep(sessions, context, batch_size=2)

    assert report.order_ids == [placed[0].order.id, placed[1].order.id]
    assert (report.checked, report.expired) == (2, 2)
    assert await _statuses(db) == ["expired"] * 2 + ["pending"] * 3
    assert (await _sweep(sessions, context, batch_size=2)).expired == 2
    assert (await _sweep(sessions, context, batch_size=2)).expired == 1


async def test_reconcile_command_sweeps_and_prints_its_report(
    client: Client, db: AsyncSession, settings: Any, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay(await checkout_id(db, placed.order))
    env = {
        **os.environ,
        "DATABASE_URL_ASYNC": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SECRET_KEY": settings.secret_key.reveal(),
        "INTERNAL_API_TOKEN": settings.internal_api_token.reveal(),
        "SUMUP_BASE_URL": settings.sumup.base_url,
        "SUMUP_API_KEY": settings.sumup.api_key.reveal(),
        "SUMUP_MERCHANT_CODE": settings.sumup.merchant_code,
        "PUBLIC_URL": settings.public_url,
        "RECONCILE_IN_APP": "false",
        "EVENTS_RELAY_IN_APP": "false",
    }
    quart = Path(sys.executable).with_name("quart")

    process = await asyncio.create_subprocess_exec(
        str(quart),
        "--app",
        "app",
        "reconcile",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)

    assert process.returncode == 0, stderr.decode()
    assert (
        stdout.decode().strip()
        == "reconcile: checked 1, paid 1, failed 0, expired 0, retired 0, refunds 0, errors 0"
    )
    assert (await latest_order(db)).status == "paid"
    assert await event_count(db, "order.paid") == 1


async def test_sweep_does_not_expire_a_fresh_pay_again_attempt_of_an_old_order(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.decline(await checkout_id(db, placed.order))
    await _age(db, placed.order.id, EXPIRE_AFTER + timedelta(minutes=5))
    response = await post_form(client, f"/orders/{placed.order.id}/pay/")
    assert response.status_code == 303
    fresh = await checkout_id(db, await latest_order(db))

    await _sweep(sessions, context)

    assert await sandbox_status(sandbox_control, fresh) == "PENDING"
    assert (await latest_order(db)).status == "pending"


async def test_an_order_whose_checkout_outlived_sumups_lifetime_expires_with_it_at_once(
    client: Client,
    db: AsyncSession,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
    sandbox_control: Any,
) -> None:
    placed = await place_order(client, db)
    checkout = await checkout_id(db, placed.order)
    await db.execute(
        update(CheckoutAttempt)
        .where(CheckoutAttempt.order_id == placed.order.id)
        .values(created_at=func.now() - timedelta(minutes=31))
    )
    await db.commit()

    report = await _sweep(sessions, context)

    assert (report.retired, report.expired) == (1, 1)
    assert await sandbox_status(sandbox_control, checkout) == "EXPIRED"
    order = await latest_order(db)
    assert order.status == "expired"
    entry = await reload(db, placed.entry)
    assert (entry.state, entry.order_id) == ("pending", None)
    assert await event_count(db, "order.expired", order.id) == 1
