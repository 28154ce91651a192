"""Bugs the lifecycle machine (test_lifecycle_machine.py) found, each as its shrunk sequence.

Each test is a strict xfail while the bug is in the service: once it is fixed the test
passes, the xfail turns into a failure, and the marker (and the bug's entry in the
machine's KNOWN_BUGS) is to be removed.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import CartItem
from tests.factories import make_calendar, make_entry, make_product, make_shop
from tests.orders.factories import current_attempt, latest_order
from tests.shopper import add, page_text, post_form

FORM = re.compile(r'<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', re.S)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


async def _checkout_form(client: Client, action: str = "/cart/checkout/") -> dict[str, str]:
    """The checkout form as the cart page renders it now (with its shown total)."""
    page = await page_text(await client.get("/cart/"))
    forms = {path: dict(HIDDEN.findall(body)) for path, body in FORM.findall(page)}
    assert action in forms, f"the cart page has no {action} form"
    return forms[action]


async def _cart_with_a_booking(client: Client, db: AsyncSession) -> None:
    """A £4.50 product and a £10 booking in the shopper's cart."""
    page, market = await make_shop(db, "alpha")
    product = await make_product(db, market, price="4.50")
    await add(client, product.id, 1)
    line = await db.scalar(select(CartItem))
    assert line is not None
    await make_entry(db, await make_calendar(db, page), session_id=line.session_id)


@pytest.mark.xfail(
    strict=True,
    reason="the cart page leaves out the bookings an unpaid order holds, so its checkout "
    "form's shown_total misses them and checkout refuses the unchanged cart (409)",
)
async def test_checking_out_an_unchanged_cart_with_a_booking_again_charges_what_the_cart_shows(
    client: Client, db: AsyncSession, sumup_sandbox: Any
) -> None:
    await _cart_with_a_booking(client, db)
    first = await post_form(client, "/cart/checkout/", await _checkout_form(client))
    assert first.status_code == 303

    # Back from SumUp's page without paying: the cart is unchanged; Checkout again.
    form = await _checkout_form(client)
    second = await post_form(client, "/cart/checkout/", form)

    assert second.status_code == 303, await page_text(second)
    order = await latest_order(db)
    assert second.headers["Location"] == (await current_attempt(db, order)).hosted_url
    assert order.total_amount == Decimal(form["shown_total"])


@pytest.mark.xfail(
    strict=True,
    reason="a checkout form's idempotency key is kept only when it creates the order: a "
    "resubmit after the first submit reused the unpaid order (and found it paid) is taken "
    "for a new checkout of an empty cart (409)",
)
async def test_double_click_on_checkout_of_an_order_found_paid_goes_to_its_return_page(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    _page, market = await make_shop(db, "alpha")
    product = await make_product(db, market, price="4.50")
    await add(client, product.id, 1)
    first = await post_form(client, "/cart/checkout/", await _checkout_form(client))
    order = await latest_order(db)
    await sandbox_control.behave(webhook="drop")
    await sandbox_control.pay((await current_attempt(db, order)).sumup_checkout_id)
    await sandbox_control.behave()

    # The cart still shows the product (the webhook was lost); Checkout, double-clicked.
    form = await _checkout_form(client)
    second = await post_form(client, "/cart/checkout/", form)
    third = await post_form(client, "/cart/checkout/", form)

    assert first.status_code == 303
    assert second.status_code == 303
    assert second.headers["Location"] == f"/cart/checkout/return/{order.id}/"
    assert third.status_code == 303, await page_text(third)
    assert third.headers["Location"] == second.headers["Location"]
