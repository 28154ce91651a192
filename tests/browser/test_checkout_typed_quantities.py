"""Checkout takes the quantities a shopper typed into account, without JavaScript too.

Each line's quantity box used to be its own form, so a quantity typed and not "Updated"
was silently dropped when a shopper without JavaScript pressed a checkout button (issue
13: "Checkout submits pending quantity changes first"). Now every checkout button sends
the typed quantities; when one changed the cart, checkout saves it and comes back to the
cart with the new total instead of going on to SumUp, so nobody pays for what they did
not see. Every page state is checked with axe-core.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Order
from tests.browser.conftest import Device, Shopper, ShopperFactory
from tests.browser.shop import (
    add_to_cart,
    cart_line,
    expect_badge,
    messages,
    no_sideways_scroll,
    open_cart,
    page_group,
)

EGGS, JAM = "Free-range eggs (6)", "Damson jam"
CART_UPDATED = re.compile(r"/cart/(hill-farm/)?#cart-updated$")


@pytest.fixture
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


async def expect_sumup_page(page: Page, amount: str) -> None:
    """SumUp's hosted page asks for `amount`."""
    await expect(page).to_have_url(re.compile(r"/pay/[^/]+$"))
    await expect(page.get_by_text(amount, exact=True)).to_be_visible()


async def test_checkout_without_js_saves_a_typed_quantity_and_shows_the_new_total_first(
    new_shopper: ShopperFactory, device: Device, demo_shop: None, fresh_sandbox: None
) -> None:
    shopper = await new_shopper(device, False)
    page = shopper.page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await open_cart(page)
    await expect(page.get_by_test_id("grand-total")).to_have_text("£6.40")

    await cart_line(page, EGGS).get_by_role("spinbutton").fill("4")  # typed, not "Updated"
    await page.get_by_role("button", name="Checkout", exact=True).click()

    await expect(page).to_have_url(CART_UPDATED)  # back to the cart, not on to SumUp
    told = messages(page).filter(has_text="We updated your cart")
    await expect(told).to_have_text(
        f"We updated your cart: 4 × {EGGS}. Your new total is £12.80 — check it and press Checkout."
    )
    await expect(told).to_be_focused()
    await expect(cart_line(page, EGGS).get_by_role("spinbutton")).to_have_value("4")
    await expect(page.get_by_test_id("grand-total")).to_have_text("£12.80")
    await expect_badge(page, 4)
    await no_sideways_scroll(page)
    await shopper.audit("cart updated by checkout")

    await page.get_by_role("button", name="Checkout", exact=True).click()
    await expect_sumup_page(page, "£12.80")


async def test_paying_one_page_without_js_saves_quantities_typed_anywhere_in_the_cart_first(
    new_shopper: ShopperFactory, device: Device, demo_shop: None, fresh_sandbox: None
) -> None:
    shopper = await new_shopper(device, False)
    page = shopper.page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await add_to_cart(page, JAM)
    await open_cart(page)

    await cart_line(page, EGGS).get_by_role("spinbutton").fill("3")
    await cart_line(page, JAM).get_by_role("spinbutton").fill("2")  # on another page
    farm = page_group(page, "Hill Farm Shop")
    await farm.get_by_role("button", name="Pay for Hill Farm Shop only").click()

    await expect(page).to_have_url(re.compile(r"/cart/#cart-updated-hill-farm$"))
    told = farm.get_by_test_id("checkout-message")  # beside the button it names
    await expect(told).to_have_text(
        f"We updated your cart: 3 × {EGGS}, 2 × {JAM}. "
        "Your new total for Hill Farm Shop is £9.60 — check it and press "
        "Pay for Hill Farm Shop only."
    )
    await expect(told).to_be_focused()
    await expect(page.get_by_test_id("grand-total")).to_have_text("£18.60")
    await expect_badge(page, 5)
    await shopper.audit("cart updated by a page's checkout")

    await farm.get_by_role("button", name="Pay for Hill Farm Shop only").click()
    await expect_sumup_page(page, "£9.60")


async def test_a_page_cart_checkout_without_js_saves_a_typed_quantity_first(
    new_shopper: ShopperFactory, device: Device, demo_shop: None, fresh_sandbox: None
) -> None:
    shopper = await new_shopper(device, False)
    page = shopper.page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await page.goto("/cart/hill-farm/")

    await cart_line(page, EGGS).get_by_role("spinbutton").fill("5")
    await page.get_by_role("button", name="Checkout", exact=True).click()

    await expect(page).to_have_url(CART_UPDATED)
    await expect(messages(page).filter(has_text="We updated your cart")).to_contain_text(
        "Your new total for Hill Farm Shop is £16.00"
    )
    await expect(page.get_by_test_id("grand-total")).to_have_text("£16.00")
    await shopper.audit("page cart updated by checkout")
    await page.get_by_role("button", name="Checkout", exact=True).click()
    await expect_sumup_page(page, "£16.00")


async def test_update_without_js_saves_every_typed_quantity(
    new_shopper: ShopperFactory, device: Device, demo_shop: None
) -> None:
    shopper = await new_shopper(device, False)
    page = shopper.page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await add_to_cart(page, JAM)
    await open_cart(page)

    await cart_line(page, EGGS).get_by_role("spinbutton").fill("3")
    await cart_line(page, JAM).get_by_role("spinbutton").fill("2")
    await cart_line(page, JAM).get_by_role("button", name=re.compile(r"^Update")).click()

    await expect(page).to_have_url(re.compile(r"/cart/#line-\d+$"))
    await expect(messages(page).filter(has_text=f"{EGGS}: 3 in your cart.")).to_be_visible()
    await expect(messages(page).filter(has_text=f"{JAM}: 2 in your cart.")).to_be_visible()
    await expect(page.get_by_test_id("grand-total")).to_have_text("£18.60")  # 9.60 + 2 × 4.50
    await expect_badge(page, 5)
    await shopper.audit("cart, every typed quantity updated")

    await cart_line(page, EGGS).get_by_role("spinbutton").fill("1")
    await cart_line(page, EGGS).get_by_role("spinbutton").press("Enter")  # Enter is Update
    await expect(messages(page).filter(has_text=f"{EGGS}: 1 in your cart.")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/cart/#line-\d+$"))  # not SumUp's page
    await expect_badge(page, 3)


async def test_a_refused_typed_quantity_stops_checkout_and_is_answered_beside_its_line(
    shopper: Shopper, demo_shop: None, db: AsyncSession
) -> None:
    page = shopper.page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await open_cart(page)
    box = cart_line(page, EGGS).get_by_role("spinbutton")
    await box.evaluate("input => input.removeAttribute('max')")  # past what the browser checks
    await box.fill("150")
    await page.get_by_role("button", name="Checkout", exact=True).click()

    refusal = messages(page).filter(has_text="You can have at most 99")
    await expect(refusal).to_be_visible()
    await expect(page).to_have_url(re.compile(r"/cart/(#line-\d+)?$"))  # not SumUp's page
    await expect(cart_line(page, EGGS).get_by_role("spinbutton")).to_have_value("2")
    await expect(page.get_by_role("button", name="Make it 99")).to_be_visible()
    await expect(page.get_by_test_id("grand-total")).to_have_text("£6.40")
    assert list(await db.scalars(select(Order.id))) == []
    await shopper.audit("checkout stopped by a refused quantity")
