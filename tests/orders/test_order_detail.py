"""`GET /orders/<id>/`: one order as its owner sees it; 404 for everyone else."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_product, make_shop, make_user
from tests.orders.factories import (
    checkout_id,
    current_attempt,
    latest_order,
    make_order,
    place_order,
)
from tests.shopper import add, login, page_text, post_form

ACTIONS = ("pay", "recheck", "cancel")


def _history(html: str) -> list[str]:
    match = re.search(r'<ul data-testid="order-history">(.*?)</ul>', html, re.S)
    assert match, "no history on the page"
    return [item.split(": ", 1)[1] for item in re.findall(r"<li>(.*?)</li>", match.group(1))]


async def _detail(client: Client, order_id: int) -> str:
    response = await client.get(f"/orders/{order_id}/")
    assert response.status_code == 200
    return await page_text(response)


async def test_items_keep_the_price_frozen_at_checkout_after_the_product_price_changes(
    client: Client, db: AsyncSession
) -> None:
    placed = await place_order(client, db)
    placed.product.regular_price = Decimal("9.99")
    await db.commit()

    html = await _detail(client, placed.order.id)

    items = html[html.index('data-testid="order-items"') :]
    assert placed.product.title in items and "£4.50" in items and "£9.00" in items
    assert "£9.99" not in html
    assert placed.entry.name in items and "£10.00" in items
    assert "Total: £19.00" in html


async def test_unpaid_order_offers_pay_now_cancel_and_check_payment_status(
    client: Client, db: AsyncSession
) -> None:
    placed = await place_order(client, db)
    html = await _detail(client, placed.order.id)
    assert 'data-status="pending"' in html and "Awaiting payment" in html
    assert ">Pay now</button>" in html and "Check payment status</button>" in html
    # Cancelling goes through a confirmation step first.
    assert f'href="/orders/{placed.order.id}/cancel/"' in html
    assert f'action="/orders/{placed.order.id}/cancel/"' not in html
    assert _history(html) == ["Order placed"]
    assert "SumUp transaction" not in html


async def test_paid_order_shows_its_sumup_transaction_code_and_history_and_no_actions(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    placed = await place_order(client, db)
    await sandbox_control.decline(await checkout_id(db, placed.order))
    await post_form(client, f"/orders/{placed.order.id}/pay/")
    order = await latest_order(db)
    await sandbox_control.pay(await checkout_id(db, order))
    order = await latest_order(db)
    assert order.status == "paid" and order.sumup_transaction_code

    html = await _detail(client, order.id)

    assert 'data-status="paid"' in html
    assert f"<code>{order.sumup_transaction_code}</code>" in html
    assert _history(html) == ["Order placed", "Payment failed", "Payment started again", "Paid"]
    for button in ("Pay now", "Cancel order", "Check payment status"):
        assert button not in html
    # The booking is held for the events app to confirm, in the shopper's words.
    assert "Booking confirmed on payment" in html


async def test_another_users_order_is_a_404_not_a_403_for_every_action(
    client: Client, app: Quart, db: AsyncSession, sandbox_control: Any
) -> None:
    owner = await make_user(db)
    await login(client, owner.email)
    placed = await place_order(client, db)
    stranger = app.test_client()
    await login(stranger, (await make_user(db)).email)

    response = await stranger.get(f"/orders/{placed.order.id}/")
    assert response.status_code == 404
    assert placed.order.number not in await page_text(response)
    for action in ACTIONS:
        response = await post_form(stranger, f"/orders/{placed.order.id}/{action}/")
        assert response.status_code == 404, action

    order = await latest_order(db)
    assert order.status == "pending" and (await current_attempt(db, order)).number == 1
    assert [c["status"] for c in (await sandbox_control.stats())["checkouts"]] == ["PENDING"]


async def test_another_anonymous_sessions_order_is_a_404(
    client: Client, app: Quart, db: AsyncSession
) -> None:
    placed = await place_order(client, db)
    stranger = app.test_client()
    _, market = await make_shop(db)
    await add(stranger, (await make_product(db, market)).id)  # a cart of its own

    assert (await stranger.get(f"/orders/{placed.order.id}/")).status_code == 404
    for action in ACTIONS:
        response = await post_form(stranger, f"/orders/{placed.order.id}/{action}/")
        assert response.status_code == 404, action
    assert (await client.get(f"/orders/{placed.order.id}/")).status_code == 200


async def test_signed_in_user_cannot_see_an_anonymous_order_with_no_owner_in_their_session(
    client: Client, db: AsyncSession
) -> None:
    order = await make_order(db, session_id="someone-elses-anonymous-cart")
    assert (await client.get(f"/orders/{order.id}/")).status_code == 404
    await login(client, (await make_user(db)).email)
    assert (await client.get(f"/orders/{order.id}/")).status_code == 404


@pytest.mark.parametrize("path", ["/orders/999/", "/orders/0/", "/orders/99999999999999999999/"])
async def test_missing_or_impossible_order_is_a_404(
    client: Client, db: AsyncSession, path: str
) -> None:
    await login(client, (await make_user(db)).email)
    assert (await client.get(path)).status_code == 404
