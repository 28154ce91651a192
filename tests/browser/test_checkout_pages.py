"""Checkout in a browser: the cart's buttons, SumUp's hosted page, the way back, the order
page and its cancel step, on a desktop and a phone, with and without JavaScript.
Every page state is checked with axe-core."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession

from tests.browser.conftest import Shopper
from tests.browser.shop import (
    add_to_cart,
    book,
    expect_badge,
    messages,
    no_sideways_scroll,
    open_cart,
    page_group,
)
from tests.orders.factories import checkout_id, latest_order

RETURN_PAGE = re.compile(r"/cart/checkout/return/(\d+)/(\?check=\d+)?$")
EGGS = "Free-range eggs (6)"


@pytest.fixture
async def fresh_sandbox(sandbox_control: Any) -> AsyncIterator[None]:
    """SumUp's sandbox with no checkouts (order ids restart with every test)."""
    await sandbox_control.reset()
    yield


async def pay_on_sumup(page: Page, sandbox_url: str, *, amount: str, button: str) -> None:
    """On SumUp's hosted page: check the amount, press Pay or Decline, go back to the shop."""
    await expect(page).to_have_url(re.compile(rf"^{re.escape(sandbox_url)}/pay/"))
    await expect(page.get_by_text(amount, exact=True)).to_be_visible()
    await page.get_by_role("button", name=button, exact=True).click()
    outcome = "Payment successful" if button == "Pay" else "Payment failed"
    await expect(page.get_by_role("heading", level=1)).to_have_text(outcome)
    await page.get_by_role("link", name="Back to merchant").click()
    await expect(page).to_have_url(RETURN_PAGE)


async def expect_paid(page: Page, *items: str) -> None:
    """The return page thanks the shopper, says the order is paid and lists what it bought."""
    main = page.get_by_role("main")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Thank you: your payment was received"
    )
    await expect(main.get_by_text(re.compile(r"^Order \S+ is paid"))).to_be_visible()
    for item in items:
        await expect(main.get_by_test_id("order-items").get_by_text(item)).to_be_visible()


async def test_whole_cart_checkout_pays_on_sumup_and_thanks_the_shopper(
    shopper: Shopper, demo_shop: None, fresh_sandbox: None, sumup_sandbox: Any
) -> None:
    page = shopper.page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await add_to_cart(page, "House coffee beans 250g")
    await book(page, "Bread-making workshop")
    await open_cart(page)
    await expect(page.get_by_test_id("grand-total")).to_have_text("£49.35")

    await page.get_by_role("button", name="Checkout", exact=True).click()
    await pay_on_sumup(page, sumup_sandbox.base_url, amount="£49.35", button="Pay")

    await expect_paid(page, EGGS, "House coffee beans 250g", "Bread-making workshop")
    await expect(page.get_by_role("main")).to_contain_text("£49.35")
    await expect(page.get_by_test_id("booking-state")).to_have_text("Booking confirmed on payment")
    await expect_badge(page, 0)
    await no_sideways_scroll(page)
    await shopper.audit("paid")

    await page.get_by_role("link", name="See your order").click()
    await expect(page.get_by_test_id("order-status-label")).to_have_text("Paid")
    await expect(page.get_by_test_id("order-status")).to_contain_text(re.compile(r"(GMT|BST)"))
    await expect(
        page.get_by_role("button", name=re.compile("Pay now|Check payment"))
    ).to_have_count(0)
    await no_sideways_scroll(page)
    await shopper.audit("order page, paid")
    await page.get_by_role("link", name="← Your orders").click()
    await expect(page.get_by_test_id("order-row")).to_contain_text("Paid")
    await shopper.audit("orders")


async def test_declined_page_checkout_offers_to_pay_again_and_then_pays(
    phone_shopper: Shopper, demo_shop: None, fresh_sandbox: None, sumup_sandbox: Any
) -> None:
    shopper, page = phone_shopper, phone_shopper.page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await add_to_cart(page, "Damson jam")
    await open_cart(page)

    farm = page_group(page, "Hill Farm Shop")
    await expect(farm.get_by_test_id("merchant")).to_contain_text("Hill Farm Shop directly")
    await farm.get_by_role("button", name="Pay for Hill Farm Shop only").click()
    await pay_on_sumup(page, sumup_sandbox.base_url, amount="£6.40", button="Decline")

    main = page.get_by_role("main")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Your payment did not go through"
    )
    await expect(main).to_contain_text("failed. Nothing has been charged.")
    await expect(main.get_by_test_id("order-items")).to_contain_text(EGGS)
    await expect_badge(page, 3)  # nothing bought: the cart is as it was
    await shopper.audit("payment declined")

    await main.get_by_role("button", name="Pay again").click()
    await pay_on_sumup(page, sumup_sandbox.base_url, amount="£6.40", button="Pay")
    await expect_paid(page, EGGS)
    await expect_badge(page, 1)  # the café's jam stays in the cart

    await open_cart(page)
    await expect(page_group(page, "Hill Farm Shop")).to_have_count(0)
    await expect(page.get_by_test_id("grand-total")).to_have_text("£4.50")


async def _unpaid_order_on_the_return_page(page: Page, db: AsyncSession) -> Any:
    """Check out, leave SumUp's page without paying, and come back to the return page."""
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await open_cart(page)
    await page.get_by_role("button", name="Checkout", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/pay/[^/]+$"))  # SumUp's page
    order = await latest_order(db)
    await page.goto(f"/cart/checkout/return/{order.id}/")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Confirming your payment…")
    return order


async def test_return_page_polls_with_js_and_announces_the_payment(
    js_shopper: Shopper,
    demo_shop: None,
    fresh_sandbox: None,
    sandbox_control: Any,
    db: AsyncSession,
) -> None:
    page = js_shopper.page
    order = await _unpaid_order_on_the_return_page(page, db)
    await expect(page.get_by_role("main")).to_contain_text("checks again by itself")
    assert await page.locator("meta[http-equiv=refresh]").count() == 0
    await js_shopper.audit("confirming")

    await sandbox_control.pay(await checkout_id(db, order))

    heading = page.get_by_role("heading", level=1)
    await expect(heading).to_have_text("Thank you: your payment was received", timeout=10_000)
    await expect(page).to_have_url(re.compile(rf"/cart/checkout/return/{order.id}/$"))  # polled
    await expect(page.locator("#live-status")).to_have_text("Thank you: your payment was received")
    await expect(heading).to_be_focused()
    await js_shopper.audit("confirmed by polling")


async def test_return_page_without_js_checks_again_on_request_and_says_when_it_stops(
    desktop_shopper: Shopper,
    demo_shop: None,
    fresh_sandbox: None,
    sandbox_control: Any,
    db: AsyncSession,
    settings: Any,
) -> None:
    shopper, page = desktop_shopper, desktop_shopper.page
    order = await _unpaid_order_on_the_return_page(page, db)
    await page.get_by_role("button", name="Check again").click()
    await expect(page).to_have_url(re.compile(r"\?check=1$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Confirming your payment…")

    await page.goto(
        f"/cart/checkout/return/{order.id}/?check={settings.orders.return_page_rechecks}"
    )
    stopped = page.get_by_test_id("stopped-checking")
    await expect(stopped).to_contain_text("We have stopped checking")
    await expect(page.get_by_role("main")).not_to_contain_text("checks again by itself")
    await expect(stopped.get_by_role("button", name="Pay now")).to_be_visible()
    await expect(stopped.get_by_role("link", name="Back to your cart")).to_be_visible()
    await shopper.audit("stopped checking")

    await sandbox_control.pay(await checkout_id(db, order))
    await stopped.get_by_role("link", name="See your order").click()
    await expect(page.get_by_test_id("order-status-label")).to_have_text("Paid")


async def test_cancelling_an_unpaid_order_asks_first_and_gives_the_bookings_back(
    phone_shopper: Shopper, demo_shop: None, fresh_sandbox: None, db: AsyncSession
) -> None:
    shopper, page = phone_shopper, phone_shopper.page
    await page.goto("/dev/shop")
    await book(page, "Barn dance ticket")
    await open_cart(page)
    await page.get_by_role("button", name="Checkout", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/pay/[^/]+$"))  # SumUp's page
    order = await latest_order(db)
    await page.goto(f"/orders/{order.id}/")
    await expect(page.get_by_test_id("order-status-label")).to_have_text("Awaiting payment")
    await expect(page.get_by_test_id("booking-state")).to_have_text("Held for this order")
    await expect(page.get_by_role("button", name="Pay now")).to_be_visible()
    await no_sideways_scroll(page)
    await shopper.audit("order page, unpaid")

    await page.get_by_role("link", name="Cancel order").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Cancel order {order.number}?")
    await shopper.audit("cancel, asked first")
    await page.get_by_role("link", name="No, keep it").click()
    await expect(page.get_by_test_id("order-status-label")).to_have_text("Awaiting payment")

    await page.get_by_role("link", name="Cancel order").click()
    await page.get_by_role("button", name=f"Yes, cancel order {order.number}").click()
    await expect(messages(page).filter(has_text="is cancelled")).to_be_visible()
    await expect(page.get_by_test_id("order-status-label")).to_have_text("Cancelled")
    await expect(page.get_by_role("button", name=re.compile("Pay|Check"))).to_have_count(0)
    await shopper.audit("order page, cancelled")
    await expect_badge(page, 1)  # the booking is back in the cart
