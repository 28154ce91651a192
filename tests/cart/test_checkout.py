"""Checkout through the SumUp sandbox over HTTP: exactly once, whatever races or fails."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.checkout import CheckoutRequest, create_order_from_cart
from bp.cart.services.identity import Identity
from bp.cart.services.webhook_tokens import webhook_token
from models import CalendarEntry, CartItem, DomainEvent, Order
from services.db import create_sessionmaker
from tests.factories import (
    make_calendar,
    make_entry,
    make_page_config,
    make_product,
    make_shop,
)
from tests.orders.factories import checkout_id, current_attempt
from tests.shopper import add, csrf_token, page_text, post_form


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


async def _checkout(client: Client, path: str = "/cart/checkout/", key: str | None = None) -> Any:
    data = {"idempotency_key": key} if key else {}
    return await post_form(client, path, data)


async def _orders(db: AsyncSession) -> list[Order]:
    query = select(Order).order_by(Order.id).execution_options(populate_existing=True)
    return list(await db.scalars(query))


async def _events(db: AsyncSession, event_type: str) -> int:
    count = await db.scalar(
        select(func.count()).select_from(DomainEvent).where(DomainEvent.event_type == event_type)
    )
    return int(count or 0)


def _sumup_gets() -> float:
    value = REGISTRY.get_sample_value(
        "cart_sumup_calls_total", {"operation": "get", "outcome": "ok"}
    )
    return value or 0.0


async def _cart_with_entry(client: Client, db: AsyncSession) -> tuple[Any, CalendarEntry]:
    page, market = await make_shop(db, "farm")
    product = await make_product(db, market, price="4.50")
    await add(client, product.id, 2)
    line = await db.scalar(select(CartItem))
    assert line is not None
    entry = await make_entry(db, await make_calendar(db, page), session_id=line.session_id)
    return product, entry


async def test_whole_happy_path_pays_the_order_once(
    client: Client, db: AsyncSession, sandbox_control: Any, sumup_sandbox: Any
) -> None:
    _, entry = await _cart_with_entry(client, db)
    response = await _checkout(client)
    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"{sumup_sandbox.base_url}/pay/")
    [order] = await _orders(db)
    assert order.status == "pending" and order.total_amount == 19  # 2 × 4.50 + 10.00
    await db.refresh(entry)
    assert entry.state == "ordered" and entry.order_id == order.id
    assert await _events(db, "order.created") == 1

    await sandbox_control.pay(await checkout_id(db, order))  # the sandbox POSTs our webhook

    [order] = await _orders(db)
    assert order.status == "paid" and order.sumup_transaction_code
    await db.refresh(entry)
    assert entry.state == "provisional"
    assert await _events(db, "order.paid") == 1
    assert await db.scalar(select(CartItem).where(CartItem.deleted_at.is_(None))) is None
    page = await page_text(await client.get(f"/cart/checkout/return/{order.id}/"))
    assert "Thank you" in page and "Workshop" in page


async def test_decline_then_pay_again_ends_paid_with_one_paid_event(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    await _cart_with_entry(client, db)
    await _checkout(client)
    [order] = await _orders(db)
    first_checkout = await checkout_id(db, order)
    await sandbox_control.decline(first_checkout)
    [order] = await _orders(db)
    assert order.status == "failed"
    page = await page_text(await client.get(f"/cart/checkout/return/{order.id}/"))
    assert "did not go through" in page and "Pay again" in page

    response = await post_form(client, f"/orders/{order.id}/pay/")
    assert response.status_code == 303
    [order] = await _orders(db)
    assert (
        await checkout_id(db, order) != first_checkout
        and (await current_attempt(db, order)).number == 2
    )
    await sandbox_control.pay(await checkout_id(db, order))
    [order] = await _orders(db)
    assert order.status == "paid"
    assert await _events(db, "order.paid") == 1
    assert await _events(db, "order.failed") == 1


async def test_ten_concurrent_checkout_posts_make_one_order_and_one_sumup_checkout(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    await _cart_with_entry(client, db)
    token = await csrf_token(client)
    responses = await asyncio.gather(
        *(
            client.post(
                "/cart/checkout/", form={"csrf_token": token, "idempotency_key": f"key-{n:04d}"}
            )
            for n in range(10)
        )
    )
    assert {r.status_code for r in responses} == {303}
    assert len({r.headers["Location"] for r in responses}) == 1
    assert len(await _orders(db)) == 1
    assert await _events(db, "order.created") == 1
    assert (await sandbox_control.stats())["created"] == 1


async def test_double_click_with_the_same_form_returns_the_same_order(
    client: Client, db: AsyncSession
) -> None:
    await _cart_with_entry(client, db)
    first = await _checkout(client, key="same-form-key-1")
    second = await _checkout(client, key="same-form-key-1")
    assert first.headers["Location"] == second.headers["Location"]
    assert len(await _orders(db)) == 1


async def test_second_checkout_of_unchanged_cart_reuses_order(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    await _cart_with_entry(client, db)
    first = await _checkout(client)
    second = await _checkout(client)
    assert first.headers["Location"] == second.headers["Location"]
    assert len(await _orders(db)) == 1
    assert (await sandbox_control.stats())["created"] == 1


async def test_changed_cart_replaces_the_unpaid_order(client: Client, db: AsyncSession) -> None:
    product, entry = await _cart_with_entry(client, db)
    await _checkout(client)
    await add(client, product.id, 1)
    await _checkout(client)
    old, new = await _orders(db)
    assert old.status == "cancelled" and new.status == "pending"
    assert new.total_amount == 3 * 4.5 + 10
    await db.refresh(entry)
    assert entry.order_id == new.id and entry.state == "ordered"


async def test_webhook_twice_at_once_and_return_page_confirm_once(
    client: Client, db: AsyncSession, sandbox_control: Any, live_url: str
) -> None:
    _, entry = await _cart_with_entry(client, db)
    await _checkout(client)
    [order] = await _orders(db)
    await sandbox_control.behave(webhook="twice")
    await asyncio.gather(
        sandbox_control.pay(await checkout_id(db, order)),
        client.get(f"/cart/checkout/return/{order.id}/"),
        client.get(f"/cart/checkout/return/{order.id}/"),
    )
    token = webhook_token(client.app.config["SECRET_KEY"], order.id)
    checkout = await checkout_id(db, order)
    async with httpx.AsyncClient() as http:
        await asyncio.gather(
            *(
                http.post(
                    f"{live_url}/cart/checkout/webhook/{order.id}/?token={token}",
                    json={"event_type": "CHECKOUT_STATUS_CHANGED", "id": checkout},
                )
                for _ in range(3)
            )
        )
    [order] = await _orders(db)
    assert order.status == "paid"
    assert await _events(db, "order.paid") == 1
    await db.refresh(entry)
    assert entry.state == "provisional"


async def test_webhook_with_a_wrong_token_is_refused_without_asking_sumup(
    client: Client, db: AsyncSession, sandbox_control: Any, live_url: str
) -> None:
    await _cart_with_entry(client, db)
    await _checkout(client)
    [order] = await _orders(db)
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay(await checkout_id(db, order))
    before = _sumup_gets()
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{live_url}/cart/checkout/webhook/{order.id}/?token=forged",
            json={"event_type": "CHECKOUT_STATUS_CHANGED", "id": await checkout_id(db, order)},
        )
    assert response.status_code == 404
    assert _sumup_gets() == before
    [order] = await _orders(db)
    assert order.status == "pending"


async def test_unknown_webhook_event_type_is_acknowledged_and_ignored(
    client: Client, db: AsyncSession, live_url: str
) -> None:
    await _cart_with_entry(client, db)
    await _checkout(client)
    [order] = await _orders(db)
    token = webhook_token(client.app.config["SECRET_KEY"], order.id)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{live_url}/cart/checkout/webhook/{order.id}/?token={token}",
            json={"event_type": "SOMETHING_NEW"},
        )
    assert response.status_code == 204


async def test_webhook_naming_another_orders_paid_checkout_does_not_pay_this_one(
    client: Client, db: AsyncSession, sandbox_control: Any, app: Quart, live_url: str
) -> None:
    await _cart_with_entry(client, db)
    await _checkout(client)
    other_shopper = app.test_client()
    _, market = await make_shop(db)
    await add(other_shopper, (await make_product(db, market)).id)
    await _checkout(other_shopper)
    mine, theirs = await _orders(db)
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay(await checkout_id(db, theirs))
    token = webhook_token(app.config["SECRET_KEY"], mine.id)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{live_url}/cart/checkout/webhook/{mine.id}/?token={token}",
            json={"event_type": "CHECKOUT_STATUS_CHANGED", "id": await checkout_id(db, theirs)},
        )
    assert response.status_code == 204
    mine, _ = await _orders(db)
    assert mine.status == "pending"


async def test_tampered_amount_at_sumup_never_marks_the_order_paid(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    await _cart_with_entry(client, db)
    await _checkout(client)
    [order] = await _orders(db)
    await sandbox_control.tamper(await checkout_id(db, order), amount=Decimal("0.01"))
    await sandbox_control.pay(await checkout_id(db, order))
    [order] = await _orders(db)
    assert order.status == "pending"
    assert await _events(db, "order.paid") == 0


async def test_sumup_timeout_during_create_recovers_without_a_second_checkout(
    client: Client, db: AsyncSession, sandbox_control: Any, sumup_sandbox: Any
) -> None:
    await _cart_with_entry(client, db)
    # Longer than the client's 2 s timeout; the create lands, its answer is lost.
    await sandbox_control.behave(delay_seconds=3, delay_only_create=True, fail_count=1)
    response = await _checkout(client)
    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"{sumup_sandbox.base_url}/pay/")
    again = await _checkout(client)
    assert again.headers["Location"] == response.headers["Location"]
    stats = await sandbox_control.stats()
    assert stats["created"] == 1
    [order] = await _orders(db)
    assert await checkout_id(db, order) and order.status == "pending"


async def test_sumup_down_keeps_the_order_unpaid_and_offers_try_again(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    await _cart_with_entry(client, db)
    await sandbox_control.behave(fail_status=503)
    response = await _checkout(client)
    assert response.status_code == 502
    page = await page_text(response)
    assert "Try again" in page and "not paid" in page
    [order] = await _orders(db)
    assert order.status == "pending"
    assert (await current_attempt(db, order)).sumup_checkout_id is None
    await sandbox_control.reset()
    retry = await post_form(client, f"/orders/{order.id}/pay/")
    assert retry.status_code == 303
    assert (await sandbox_control.stats())["created"] == 1


async def test_page_checkout_uses_the_pages_own_merchant(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    page, market = await make_shop(db, "farm")
    await make_page_config(db, page, merchant="MFARM0001", key="sup_sk_sandbox_farm")
    await add(client, (await make_product(db, market)).id)
    response = await _checkout(client, f"/cart/{page.slug}/checkout/")
    assert response.status_code == 303
    [order] = await _orders(db)
    assert order.page_post_id == page.id and order.sumup_merchant_code == "MFARM0001"
    [checkout] = (await sandbox_control.stats())["checkouts"]
    assert checkout["merchant_code"] == "MFARM0001"
    assert re.match(rf"PG-{order.id}-1-[0-9a-f]{{16}}$", checkout["checkout_reference"])


async def test_whole_cart_of_one_page_with_its_own_account_uses_that_account(
    client: Client, db: AsyncSession
) -> None:
    page, market = await make_shop(db, "farm")
    await make_page_config(db, page)
    await add(client, (await make_product(db, market)).id)
    await _checkout(client)
    [order] = await _orders(db)
    assert order.sumup_merchant_code == "MFARM0001"


async def test_whole_cart_of_several_pages_uses_the_coops_account(
    client: Client, db: AsyncSession
) -> None:
    farm, farm_market = await make_shop(db, "farm")
    await make_page_config(db, farm)
    _, cafe_market = await make_shop(db, "cafe")
    await add(client, (await make_product(db, farm_market)).id)
    await add(client, (await make_product(db, cafe_market)).id)
    await _checkout(client)
    [order] = await _orders(db)
    assert order.sumup_merchant_code == "MCOOP0001"


async def test_empty_cart_checkout_explains_and_creates_nothing(
    client: Client, db: AsyncSession
) -> None:
    response = await _checkout(client)
    assert response.status_code == 409
    assert "empty" in await page_text(response)
    assert await _orders(db) == []


async def test_product_deleted_since_added_blocks_checkout(
    client: Client, db: AsyncSession
) -> None:
    product, _ = await _cart_with_entry(client, db)
    product.deleted_at = datetime.now(UTC)
    await db.commit()
    response = await _checkout(client)
    assert response.status_code == 409
    assert "can no longer be bought" in await page_text(response)
    assert await _orders(db) == []


async def test_rolled_back_checkout_leaves_no_order_no_event_and_no_claim(
    client: Client, db: AsyncSession, engine: Any, settings: Any
) -> None:
    _, entry = await _cart_with_entry(client, db)
    identity = Identity(session_id=entry.session_id)
    async with create_sessionmaker(engine)() as session:
        result = await create_order_from_cart(
            session, CheckoutRequest(identity, None, None), settings=settings
        )
        assert result.order.id
        await session.rollback()
    assert await _orders(db) == []
    assert await _events(db, "order.created") == 0
    await db.refresh(entry)
    assert entry.state == "pending" and entry.order_id is None


async def test_mixed_currencies_are_refused_with_a_clear_message(
    client: Client, db: AsyncSession
) -> None:
    page, market = await make_shop(db)
    await add(client, (await make_product(db, market)).id)
    line = await db.scalar(select(CartItem))
    assert line is not None
    await make_entry(db, await make_calendar(db, page), session_id=line.session_id, currency="EUR")
    response = await _checkout(client)
    assert response.status_code == 409
    assert "different currencies" in await page_text(response)
    assert await _orders(db) == []


async def test_return_page_is_only_for_the_owner(
    client: Client, db: AsyncSession, app: Quart
) -> None:
    await _cart_with_entry(client, db)
    await _checkout(client)
    [order] = await _orders(db)
    stranger = app.test_client()
    assert (await stranger.get(f"/cart/checkout/return/{order.id}/")).status_code == 404
    assert (await stranger.get(f"/orders/{order.id}/")).status_code == 404


async def test_return_page_while_pending_polls_with_js_offers_check_again_and_says_when_it_stops(
    client: Client, db: AsyncSession, settings: Any
) -> None:
    await _cart_with_entry(client, db)
    await _checkout(client)
    [order] = await _orders(db)
    page = await page_text(await client.get(f"/cart/checkout/return/{order.id}/"))
    assert "Confirming your payment" in page and 'http-equiv="refresh"' not in page
    assert f'hx-get="/cart/checkout/return/{order.id}/?check=1"' in page  # polled with JS
    assert ">Check again</button>" in page and 'name="check" value="1"' in page  # without
    limit = settings.orders.return_page_rechecks
    last = await page_text(await client.get(f"/cart/checkout/return/{order.id}/?check={limit}"))
    assert "hx-get" not in last and "checks again by itself" not in last
    assert "We have stopped checking" in last and "taking longer than usual" in last
    assert ">Pay now</button>" in last and "Back to your cart</a>" in last
