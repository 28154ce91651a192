"""The payment lifecycle from outside: every SumUp checkout followed to its end.

Each numbered case of issue 9 is a test here: a superseded order's checkout is retired
(and money paid on it anyway is refunded), a checkout found by reference is verified,
expired orders let go of their bookings and cannot be paid at old prices, a cancel
during a slow create never sends the shopper on, and the cart shows what a checkout
charges.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bp.cart.services.checkout_attempts import CheckoutContext, add_attempt, create_or_recover
from bp.cart.services.hosted_checkout import start_hosted_checkout
from bp.cart.services.order_queries import load_order
from bp.cart.services.reconcile import reconcile_orders
from models import CartItem, CheckoutAttempt, Order, Refund
from services.errors import CheckoutError, PaymentProviderError
from services.order_lifecycle import release_entries_for_order
from services.sumup import account_for_merchant
from tests.factories import make_calendar, make_entry, make_product, make_shop
from tests.orders.factories import (
    attempts_of,
    checkout_id,
    current_attempt,
    event_count,
    latest_order,
    place_order,
    reload,
    sandbox_status,
)
from tests.shopper import add, csrf_token, page_text, post_form

EXPIRE_AFTER = timedelta(hours=1)


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


async def _sweep(sessions: async_sessionmaker[AsyncSession], context: CheckoutContext) -> Any:
    return await reconcile_orders(sessions, context, batch_size=50, expire_after=EXPIRE_AFTER)


async def _orders(db: AsyncSession) -> list[Order]:
    query = select(Order).order_by(Order.id).execution_options(populate_existing=True)
    return list(await db.scalars(query))


def _shown_total(html: str) -> str:
    match = re.search(r'name="shown_total" value="([^"]+)"', html)
    assert match, "the checkout form carries the total it shows"
    return match.group(1)


# --- 1. a superseded order's checkout ----------------------------------------------


async def test_a_checkout_superseded_by_a_new_one_is_retired_at_sumup(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    first = await checkout_id(db, placed.order)
    await add(client, placed.product.id, 1)

    response = await post_form(client, "/cart/checkout/")

    assert response.status_code == 303
    old, new = await _orders(db)
    assert (old.status, new.status) == ("cancelled", "pending")
    assert await sandbox_status(sandbox_control, first) == "EXPIRED"
    with pytest.raises(httpx.HTTPStatusError):
        await sandbox_control.pay(first)  # the first tab's page can no longer take money
    [attempt] = await attempts_of(db, old.id)
    assert attempt.retired_at is not None and attempt.settled_at is not None


async def test_money_paid_on_a_superseded_checkout_sumup_kept_open_is_found_and_refunded(
    client: Client,
    db: AsyncSession,
    sandbox_control: Any,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
) -> None:
    placed = await place_order(client, db)
    first = await checkout_id(db, placed.order)
    await add(client, placed.product.id, 1)
    await sandbox_control.behave(only="deactivate", fail_status=503)
    assert (await post_form(client, "/cart/checkout/")).status_code == 303
    assert await sandbox_status(sandbox_control, first) == "PENDING"
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay(first)  # the first tab, and its webhook is lost

    report = await _sweep(sessions, context)

    assert report.refunds == 1
    old = await load_order(db, placed.order.id)
    assert old.status == "cancelled"
    [attempt] = await attempts_of(db, old.id)
    assert attempt.sumup_status == "PAID" and attempt.surplus_reason == "order was cancelled"
    [refund] = list(await db.scalars(select(Refund).where(Refund.order_id == old.id)))
    assert (refund.status, refund.requested_by, refund.amount) == ("succeeded", "auto", 19)
    money = (await sandbox_control.money())["GBP"]
    assert money.taken == money.refunded == Decimal("19.00")
    assert await event_count(db, "order.refunded", old.id) == 1
    assert await event_count(db, "order.paid", old.id) == 0
    html = await page_text(await client.get(f"/orders/{old.id}/"))
    assert 'data-testid="auto-refund"' in html and "£19.00 automatically" in html


# --- 2. a checkout found by reference ------------------------------------------------


async def test_a_checkout_found_by_reference_that_does_not_match_is_never_adopted(
    client: Client,
    db: AsyncSession,
    context: CheckoutContext,
    caplog: pytest.LogCaptureFixture,
) -> None:
    placed = await place_order(client, db)
    order = await load_order(db, placed.order.id)
    account = await account_for_merchant(db, context.settings, order.sumup_merchant_code or "")
    attempt = await add_attempt(db, order, account)
    await db.commit()
    # Someone else's checkout under this attempt's reference, for another amount.
    await context.clients.for_account(account).checkouts.create(
        checkout_reference=attempt.reference,
        amount=1.0,
        currency="GBP",
        merchant_code=account.merchant_code,
    )

    with caplog.at_level(logging.ERROR), pytest.raises(PaymentProviderError):
        await create_or_recover(context, account, attempt, order)

    assert "does not match" in caplog.text and "amount" in caplog.text


async def test_a_paid_checkout_of_a_restored_backup_is_never_taken_for_a_new_order(
    client: Client, db: AsyncSession, sandbox_control: Any, context: CheckoutContext
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market, price="4.50")
    await add(client, product.id, 2)
    account = await account_for_merchant(db, context.settings, "MCOOP0001")
    sdk = context.clients.for_account(account)
    # A backup or a staging copy on the same SumUp account made the references the
    # old scheme gives order 1 ("RA-1-1", "RA-1-2") and was paid for them.
    for reference in ("RA-1-1", "RA-1-2"):
        made = await sdk.checkouts.create(
            checkout_reference=reference, amount=9.0, currency="GBP", merchant_code="MCOOP0001"
        )
        await sandbox_control.pay(made.id)
    await sandbox_control.behave(only="create", delay_seconds=3)  # our create times out

    response = await post_form(client, "/cart/checkout/")

    assert response.status_code == 303
    order = await latest_order(db)
    attempt = await current_attempt(db, order)
    assert attempt.origin == "recovered" and attempt.reference not in ("RA-1-1", "RA-1-2")
    assert order.status == "pending"
    assert await sandbox_status(sandbox_control, attempt.sumup_checkout_id) == "PENDING"


# --- 3. expired orders -----------------------------------------------------------


async def test_an_order_whose_checkout_sumup_expired_lets_go_of_its_bookings_at_once(
    client: Client, db: AsyncSession, context: CheckoutContext
) -> None:
    placed = await place_order(client, db)
    account = await account_for_merchant(db, context.settings, "MCOOP0001")
    await context.clients.for_account(account).checkouts.deactivate(
        await checkout_id(db, placed.order)
    )  # SumUp's own expiry, which sends no webhook

    response = await post_form(client, f"/orders/{placed.order.id}/recheck/")

    assert response.status_code == 303
    order = await latest_order(db)
    assert order.status == "expired"
    entry = await reload(db, placed.entry)
    assert (entry.state, entry.order_id) == ("pending", None)
    assert await event_count(db, "order.expired", order.id) == 1
    html = await page_text(await client.get(f"/orders/{order.id}/"))
    assert "released" in html and "Total: £9.00" in html


async def test_an_expired_order_is_superseded_by_the_next_checkout_of_its_cart(
    client: Client,
    db: AsyncSession,
    sandbox_control: Any,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
) -> None:
    placed = await place_order(client, db)
    await db.execute(
        update(Order)
        .where(Order.id == placed.order.id)
        .values(checkout_started_at=func.now() - timedelta(days=1))
    )
    await db.commit()
    await _sweep(sessions, context)
    await add(client, placed.product.id, 1)

    response = await post_form(client, "/cart/checkout/")

    assert response.status_code == 303
    old, new = await _orders(db)
    assert (old.status, new.status) == ("cancelled", "pending")
    assert new.total_amount == Decimal("23.50")  # 3 × 4.50 + the booking, once
    entry = await reload(db, placed.entry)
    assert (entry.state, entry.order_id) == ("ordered", new.id)
    with pytest.raises(CheckoutError, match="cancelled"):
        await start_hosted_checkout(sessions, old.id, context, reuse_open=False)


async def test_an_expired_order_whose_product_was_withdrawn_cannot_be_paid_again(
    client: Client,
    db: AsyncSession,
    sandbox_control: Any,
    context: CheckoutContext,
) -> None:
    placed = await place_order(client, db)
    account = await account_for_merchant(db, context.settings, "MCOOP0001")
    await context.clients.for_account(account).checkouts.deactivate(
        await checkout_id(db, placed.order)
    )
    await post_form(client, f"/orders/{placed.order.id}/recheck/")
    placed.product.deleted_at = func.now()
    await db.commit()

    response = await post_form(client, f"/orders/{placed.order.id}/pay/")

    assert response.status_code == 409
    assert "no longer sold" in await page_text(response)
    assert (await sandbox_control.stats())["created"] == 1


# --- 4. cancels and sweeps racing a checkout ------------------------------------------


async def test_a_cancel_during_a_slow_sumup_create_never_sends_the_shopper_to_a_live_checkout(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market, price="4.50")
    await add(client, product.id, 2)
    token = await csrf_token(client)
    await sandbox_control.behave(only="create", delay_seconds=1.0)
    checkout = asyncio.create_task(client.post("/cart/checkout/", form={"csrf_token": token}))
    for _ in range(100):
        attempt = await db.scalar(select(CheckoutAttempt).execution_options(populate_existing=True))
        if attempt is not None:
            break
        await asyncio.sleep(0.02)
    assert attempt is not None
    await asyncio.sleep(0.2)  # SumUp has the create and is slow to answer

    cancel = await client.post(f"/orders/{attempt.order_id}/cancel/", form={"csrf_token": token})
    response = await checkout

    assert cancel.status_code == 303
    assert response.status_code == 409
    assert "cancelled" in await page_text(response)
    order = await latest_order(db)
    assert order.status == "cancelled"
    [checkout_row] = (await sandbox_control.stats())["checkouts"]
    assert checkout_row["status"] == "EXPIRED"
    [stored] = await attempts_of(db, order.id)
    assert stored.settled_at is not None


async def test_a_sweep_expiring_an_order_while_it_is_paid_again_leaves_it_whole(
    client: Client,
    db: AsyncSession,
    sandbox_control: Any,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.decline(await checkout_id(db, placed.order))
    await db.execute(
        update(Order)
        .where(Order.id == placed.order.id)
        .values(checkout_started_at=func.now() - timedelta(days=1))
    )
    await db.commit()
    token = await csrf_token(client)

    pay, _ = await asyncio.gather(
        client.post(f"/orders/{placed.order.id}/pay/", form={"csrf_token": token}),
        _sweep(sessions, context),
    )

    assert pay.status_code in (303, 409)
    order = await latest_order(db)
    entry = await reload(db, placed.entry)
    open_attempts = [a for a in await attempts_of(db, order.id) if a.settled_at is None]
    if order.status == "pending":
        assert (entry.state, entry.order_id) == ("ordered", order.id)
        assert len(open_attempts) == 1
        await sandbox_control.pay(open_attempts[0].sumup_checkout_id)
        assert (await latest_order(db)).status == "paid"
        assert (await reload(db, placed.entry)).state == "provisional"
    else:
        assert order.status == "expired"
        assert (entry.state, entry.order_id) == ("pending", None)
        assert open_attempts == []


async def test_a_payment_landing_after_our_expiry_is_kept_while_its_bookings_are_free(
    client: Client,
    db: AsyncSession,
    sandbox_control: Any,
    sessions: async_sessionmaker[AsyncSession],
    context: CheckoutContext,
) -> None:
    placed = await place_order(client, db)
    attempt = await current_attempt(db, placed.order)
    await sandbox_control.behave(only="deactivate", fail_status=503, webhook="drop")
    # Our expiry could not retire the checkout: an expiry with SumUp down keeps the
    # order; so expire it as SumUp would have (the status check below sees PAID).
    await sandbox_control.pay(attempt.sumup_checkout_id)
    order = await load_order(db, placed.order.id)
    await db.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(status="expired", version=Order.version + 1)
    )
    await release_entries_for_order(db, order_id=order.id)
    await db.commit()
    await sandbox_control.behave()

    response = await post_form(client, f"/orders/{placed.order.id}/recheck/")

    assert response.status_code == 303
    order = await latest_order(db)
    assert order.status == "paid"
    entry = await reload(db, placed.entry)
    assert (entry.state, entry.order_id) == ("provisional", order.id)
    assert await event_count(db, "order.paid", order.id) == 1


# --- 5. the cart shows what checkout charges ------------------------------------------


async def test_after_a_decline_the_cart_shows_the_held_booking_and_checkout_charges_it(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.decline(await checkout_id(db, placed.order))

    cart = await (await client.get("/cart/")).get_data(as_text=True)

    assert placed.entry.name in cart
    assert "Unpaid order RA-000001" in cart
    assert _shown_total(cart) == "19.00"
    response = await post_form(client, "/cart/checkout/", {"shown_total": _shown_total(cart)})
    assert response.status_code == 303
    [order] = await _orders(db)
    attempt = await current_attempt(db, order)
    assert attempt.amount == Decimal("19.00") and attempt.number == 2
    checkouts = (await sandbox_control.stats())["checkouts"]
    assert [c["amount"] for c in checkouts if c["status"] == "PENDING"] == [19.0]


async def test_a_checkout_never_charges_more_than_the_cart_showed(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    page, market = await make_shop(db)
    product = await make_product(db, market, price="4.50")
    await add(client, product.id, 2)
    cart = await (await client.get("/cart/")).get_data(as_text=True)
    owner = await db.scalar(select(CartItem.session_id))
    await make_entry(db, await make_calendar(db, page), session_id=owner)  # behind the page

    response = await post_form(client, "/cart/checkout/", {"shown_total": _shown_total(cart)})

    assert response.status_code == 409
    assert "now comes to £19.00." in await page_text(response)  # money as people read it
    assert await _orders(db) == []
    assert (await sandbox_control.stats())["created"] == 0


async def test_the_badge_and_summary_count_a_booking_an_unpaid_order_holds(
    client: Client, db: AsyncSession, sandbox_control: Any, settings: Any
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.decline(await checkout_id(db, placed.order))
    response = await client.get(
        "/internal/cart/summary",
        headers={"Authorization": f"Bearer {settings.internal_api_token.reveal()}"},
    )

    body = await response.get_json()
    assert (body["count"], body["total"]) == (3, "19.00")
