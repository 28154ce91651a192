"""Checkout in a browser: the cart's buttons, SumUp's hosted page, and the way back."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.shop import add_to_cart, book, expect_badge, open_cart, page_group

RETURN_PAGE = re.compile(r"/cart/checkout/return/(\d+)/$")


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
        await expect(main.get_by_role("row").filter(has_text=item)).to_be_visible()


async def test_whole_cart_checkout_pays_on_sumup_and_thanks_the_shopper(
    page: Page, demo_shop: None, fresh_sandbox: None, sumup_sandbox: Any
) -> None:
    await page.goto("/dev/shop")
    await add_to_cart(page, "Free-range eggs (6)", quantity=2)
    await add_to_cart(page, "House coffee beans 250g")
    await book(page, "Bread-making workshop")
    await open_cart(page)
    await expect(page.get_by_test_id("grand-total")).to_have_text("£49.35")

    await page.get_by_role("button", name="Checkout", exact=True).click()
    await pay_on_sumup(page, sumup_sandbox.base_url, amount="£49.35", button="Pay")

    await expect_paid(
        page, "Free-range eggs (6)", "House coffee beans 250g", "Bread-making workshop"
    )
    await expect(page.get_by_role("main")).to_contain_text("£49.35")
    await expect_badge(page, 0)


async def test_declined_page_checkout_offers_to_pay_again_and_then_pays(
    page: Page, demo_shop: None, fresh_sandbox: None, sumup_sandbox: Any
) -> None:
    await page.goto("/dev/shop")
    await add_to_cart(page, "Free-range eggs (6)", quantity=2)
    await add_to_cart(page, "Damson jam")
    await open_cart(page)

    await (
        page_group(page, "Hill Farm Shop")
        .get_by_role("button", name="Check out Hill Farm Shop")
        .click()
    )
    await pay_on_sumup(page, sumup_sandbox.base_url, amount="£6.40", button="Decline")

    main = page.get_by_role("main")
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Your payment did not go through"
    )
    await expect(main).to_contain_text("failed. Nothing has been charged.")
    await expect(main.get_by_role("row").filter(has_text="Free-range eggs (6)")).to_be_visible()
    await expect_badge(page, 3)  # nothing bought: the cart is as it was

    await main.get_by_role("button", name="Pay again").click()
    await pay_on_sumup(page, sumup_sandbox.base_url, amount="£6.40", button="Pay")
    await expect_paid(page, "Free-range eggs (6)")
    await expect_badge(page, 1)  # the café's jam stays in the cart

    await open_cart(page)
    await expect(page_group(page, "Hill Farm Shop")).to_have_count(0)
    await expect(page.get_by_test_id("grand-total")).to_have_text("£4.50")
