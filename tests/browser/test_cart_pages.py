"""The cart as a shopper uses it in a browser: the shop, the cart pages, signing in."""

from __future__ import annotations

import os
import re
from pathlib import Path

from playwright.async_api import Page, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Product, User
from sandbox.demo_data import DEMO_USER_EMAIL
from tests.browser.shop import (
    add_to_cart,
    book,
    expect_badge,
    header,
    open_cart,
    page_group,
    product_row,
)
from tests.factories import make_line

# Set to a folder to keep a screenshot of the cart overview (for looking at the design).
SCREENSHOT_DIR = os.environ.get("CART_SCREENSHOT_DIR")


async def test_shopper_fills_edits_and_browses_the_cart_by_page(
    page: Page, demo_shop: None
) -> None:
    await page.goto("/dev/shop")
    await expect_badge(page, 0)
    await add_to_cart(page, "Free-range eggs (6)", quantity=2)
    await expect_badge(page, 2)
    await add_to_cart(page, "House coffee beans 250g")
    await book(page, "Bread-making workshop")
    await expect_badge(page, 4)

    await open_cart(page)
    groups = page.get_by_test_id("page-group")
    await expect(groups.get_by_role("heading", level=2)).to_have_text(
        ["Hill Farm Shop", "Riverside Café"]
    )
    farm, cafe = page_group(page, "Hill Farm Shop"), page_group(page, "Riverside Café")
    await expect(farm.get_by_role("row").filter(has_text="Free-range eggs (6)")).to_contain_text(
        "£6.40"
    )
    await expect(farm.get_by_test_id("subtotal")).to_have_text("£6.40")
    await expect(cafe.get_by_role("row").filter(has_text="Bread-making workshop")).to_be_visible()
    await expect(cafe.get_by_test_id("subtotal")).to_have_text("£42.95")  # 7.95 special + 35
    await expect(page.get_by_test_id("grand-total")).to_have_text("£49.35")

    eggs = farm.get_by_role("row").filter(has_text="Free-range eggs (6)")
    await eggs.get_by_role("spinbutton").fill("3")
    await eggs.get_by_role("button", name=re.compile(r"^Update\b")).click()
    await expect(page.get_by_role("status")).to_have_text("Free-range eggs (6): 3 in your cart.")
    await expect(eggs.get_by_role("spinbutton")).to_have_value("3")
    await expect(farm.get_by_test_id("subtotal")).to_have_text("£9.60")
    await expect(page.get_by_test_id("grand-total")).to_have_text("£52.55")
    await expect_badge(page, 5)

    await cafe.get_by_role("button", name="Remove House coffee beans 250g").click()
    await expect(page.get_by_role("status")).to_have_text(
        "House coffee beans 250g was taken out of your cart."
    )
    await expect(cafe.get_by_role("row").filter(has_text="House coffee")).to_have_count(0)
    await expect(cafe.get_by_test_id("subtotal")).to_have_text("£35.00")
    await expect(page.get_by_test_id("grand-total")).to_have_text("£44.60")
    await expect_badge(page, 4)
    if SCREENSHOT_DIR:
        await page.screenshot(path=str(Path(SCREENSHOT_DIR) / "cart-overview.png"), full_page=True)

    await cafe.get_by_role("link", name="Riverside Café").click()
    await expect(page).to_have_url(re.compile(r"/cart/riverside-cafe/$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Riverside Café: your cart")
    await expect(page_group(page, "Hill Farm Shop")).to_have_count(0)
    await expect(page.get_by_test_id("subtotal")).to_have_text("£35.00")
    await expect_badge(page, 4)
    await page.get_by_role("button", name="Remove Bread-making workshop").click()
    await expect(page).to_have_url(re.compile(r"/cart/riverside-cafe/$"))
    await expect(page.get_by_text("Nothing from Riverside Café is in your cart.")).to_be_visible()
    await expect_badge(page, 3)


async def test_signing_in_merges_the_anonymous_cart_and_says_what_was_added(
    page: Page, demo_shop: None, db: AsyncSession
) -> None:
    user = await db.scalar(select(User).where(User.email == DEMO_USER_EMAIL))
    sourdough = await db.scalar(select(Product).where(Product.slug == "sourdough"))
    assert user is not None and sourdough is not None
    await make_line(db, sourdough, quantity=1, user_id=user.id)

    await page.goto("/dev/shop")
    await add_to_cart(page, "Sourdough loaf", quantity=2)
    await book(page, "Barn dance ticket")
    await expect_badge(page, 3)
    await page.get_by_role("main").get_by_role("link", name="Sign in").click()
    await page.get_by_label("Email").fill(DEMO_USER_EMAIL)
    await page.get_by_role("button", name="Sign in").click()

    await expect(page).to_have_url(re.compile(r"/cart/$"))
    messages = page.get_by_role("status")
    await expect(messages.filter(has_text="Signed in as")).to_be_visible()
    welcome = messages.filter(has_text="Welcome back!")
    await expect(welcome).to_contain_text(re.compile(r"we added", re.IGNORECASE))
    await expect(welcome).to_contain_text("2 × Sourdough loaf")
    await expect(welcome).to_contain_text("Barn dance ticket")
    loaf = page_group(page, "Hill Farm Shop").get_by_role("row").filter(has_text="Sourdough")
    await expect(loaf.get_by_role("spinbutton")).to_have_value("3")  # 1 before + 2 merged
    await expect(loaf).to_contain_text("£12.75")
    await expect(page_group(page, "The Old Barn").get_by_test_id("subtotal")).to_have_text("£12.50")
    await expect(page.get_by_test_id("grand-total")).to_have_text("£25.25")
    await expect_badge(page, 4)

    await page.reload()
    await expect(page.get_by_test_id("grand-total")).to_have_text("£25.25")
    await expect(page.get_by_role("status")).to_have_count(0)  # merged and told once


async def test_a_tampered_csrf_token_gets_a_readable_400_page(page: Page, demo_shop: None) -> None:
    await page.goto("/dev/shop")
    await page.evaluate(
        """() => document.querySelectorAll('input[name="csrf_token"]').forEach(
               input => { input.value = input.value.slice(0, -6) + 'xxxxxx'; })"""
    )
    async with page.expect_response(lambda r: r.request.method == "POST") as posted:
        await (
            product_row(page, "Free-range eggs (6)")
            .get_by_role("button", name=re.compile(r"^Add\b"))
            .click()
        )
    assert (await posted.value).status == 400

    await expect(page.get_by_role("heading", level=1)).to_have_text("This form has expired")
    await expect(page.get_by_role("main")).to_contain_text("reload the page and try again")
    await expect(page.get_by_role("link", name="Back to your cart")).to_be_visible()
    body = await page.locator("body").inner_text()
    assert "Traceback" not in body and "Error" not in body
    await expect(header(page).get_by_test_id("cart-badge")).to_have_text("0")

    await page.goto("/dev/shop")  # what the page advises: a fresh form works
    await add_to_cart(page, "Free-range eggs (6)")
    await expect_badge(page, 1)
