"""The cart as a shopper uses it in a browser, on a desktop and a phone, with and without
JavaScript: the shop, the cart pages, in-place changes, refusals beside the line, signing in.
Every page state is checked with axe-core."""

from __future__ import annotations

import re

from playwright.async_api import Page, Route, expect
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import Product, User
from sandbox.demo_data import DEMO_USER_EMAIL
from tests.browser.conftest import DESKTOP, Shopper, ShopperFactory
from tests.browser.shop import (
    add_to_cart,
    book,
    cart_line,
    expect_badge,
    header,
    messages,
    no_sideways_scroll,
    open_cart,
    page_group,
    product_row,
    small_targets,
)
from tests.factories import make_line

EGGS, COFFEE, BREAD = "Free-range eggs (6)", "House coffee beans 250g", "Bread-making workshop"


async def mark_page(page: Page) -> None:
    """Leave a mark on the loaded document, to tell an in-place change from a reload."""
    await page.evaluate("() => { window.notReloaded = true; }")


async def expect_in_place(shopper: Shopper) -> None:
    """With JavaScript the change happened in place; without, the page was loaded again."""
    reloaded = not await shopper.page.evaluate("() => window.notReloaded === true")
    assert reloaded != shopper.js, "in place with JS, a new page without"


async def expect_told(shopper: Shopper, text: str) -> None:
    """The shopper is told `text`: focused beside the line, and (with JS) announced."""
    page = shopper.page
    message = messages(page).filter(has_text=text)
    await expect(message).to_be_visible()
    if shopper.js:
        await expect(page.locator("#live-status, #live-alert")).to_contain_text([text])
    else:
        await expect(message).to_be_focused()  # the redirect went to its anchor


async def test_shopper_fills_edits_and_empties_the_cart(shopper: Shopper, demo_shop: None) -> None:
    page = shopper.page
    await page.goto("/dev/shop")
    await expect_badge(page, 0)
    await shopper.audit("shop")
    await add_to_cart(page, EGGS, quantity=2)
    message = messages(page).filter(has_text=f"{EGGS}: 2 in your cart.")
    await expect(message).to_be_focused()  # the place on the page is kept
    await expect_badge(page, 2)
    await shopper.audit("shop, told beside the product")
    await add_to_cart(page, COFFEE)
    await book(page, BREAD)
    await expect_badge(page, 4)

    await open_cart(page)
    groups = page.get_by_test_id("page-group")
    await expect(groups.get_by_role("heading", level=2)).to_have_text(
        ["Hill Farm Shop", "Riverside Café"]
    )
    farm, cafe = page_group(page, "Hill Farm Shop"), page_group(page, "Riverside Café")
    await expect(cart_line(page, EGGS)).to_contain_text("£6.40")
    await expect(farm.get_by_test_id("subtotal")).to_have_text("£6.40")
    await expect(cafe.get_by_test_id("subtotal")).to_have_text("£42.95")  # 7.95 special + 35
    await expect(page.get_by_test_id("grand-total")).to_have_text("£49.35")
    await expect(farm.get_by_test_id("merchant")).to_contain_text("Hill Farm Shop directly")
    await expect(cafe.get_by_test_id("merchant")).to_contain_text("Rose Ash cooperative")
    await expect(page.get_by_role("button", name="Checkout", exact=True)).to_be_visible()
    await expect(cart_line(page, EGGS).get_by_role("link", name=EGGS)).to_have_attribute(
        "href", re.compile(r"/hill-farm/product/free-range-eggs/$")
    )
    await no_sideways_scroll(page)
    assert await small_targets(page.locator("#cart")) == []
    await shopper.audit("cart")

    await mark_page(page)
    await cart_line(page, EGGS).get_by_role("button", name=f"One more {EGGS}").click()
    await expect_told(shopper, f"{EGGS}: 3 in your cart.")
    await expect(cart_line(page, EGGS).get_by_role("spinbutton")).to_have_value("3")
    await expect(farm.get_by_test_id("subtotal")).to_have_text("£9.60")
    await expect(page.get_by_test_id("grand-total")).to_have_text("£52.55")
    await expect_badge(page, 5)
    await expect_in_place(shopper)
    await shopper.audit("cart, one more")

    await mark_page(page)
    quantity = cart_line(page, EGGS).get_by_role("spinbutton")
    await quantity.fill("5")
    if shopper.js:
        await quantity.press("Tab")  # saved when the field changes
    else:
        await cart_line(page, EGGS).get_by_role("button", name=re.compile(r"^Update")).click()
    await expect_told(shopper, f"{EGGS}: 5 in your cart.")
    await expect(farm.get_by_test_id("subtotal")).to_have_text("£16.00")
    await expect_badge(page, 7)
    await expect_in_place(shopper)

    await mark_page(page)
    await cafe.get_by_role("button", name=f"Remove {COFFEE}").click()
    await expect_told(shopper, f"{COFFEE} was taken out of your cart.")
    await expect(cart_line(page, COFFEE)).to_have_count(0)
    await expect(cafe.get_by_test_id("subtotal")).to_have_text("£35.00")
    await expect(page.get_by_test_id("grand-total")).to_have_text("£51.00")
    await expect_badge(page, 6)
    await expect_in_place(shopper)
    await shopper.audit("cart, a line removed")

    await cafe.get_by_role("link", name="Riverside Café").click()
    await expect(page).to_have_url(re.compile(r"/cart/riverside-cafe/$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Riverside Café: your cart")
    await expect(page_group(page, "Hill Farm Shop")).to_have_count(0)
    await expect(page.get_by_test_id("grand-total")).to_have_text("£35.00")
    await expect(page.get_by_test_id("merchant")).to_contain_text("Rose Ash cooperative")
    await shopper.audit("page cart")
    await page.get_by_role("button", name=f"Remove {BREAD}").click()
    await expect(page.get_by_test_id("empty-cart")).to_contain_text(
        "Nothing from Riverside Café is in your cart."
    )
    await expect(page.get_by_role("link", name="See your whole cart")).to_be_visible()
    await expect_badge(page, 5)
    await shopper.audit("page cart, empty")

    await page.get_by_role("link", name="See your whole cart").click()
    await page.get_by_role("button", name=f"Remove {EGGS}").click()
    await expect(page.get_by_test_id("empty-cart")).to_contain_text("Your cart is empty.")
    empty = page.get_by_test_id("empty-cart")
    await expect(empty.get_by_role("link", name="Hill Farm Shop")).to_be_visible()
    await expect(empty.get_by_role("link", name="Browse the demo shop")).to_be_visible()
    await expect_badge(page, 0)
    await shopper.audit("cart, empty")


async def test_a_refused_quantity_says_what_fits_beside_the_line(
    phone_shopper: Shopper, demo_shop: None
) -> None:
    shopper, page = phone_shopper, phone_shopper.page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=60)
    await product_row(page, EGGS).get_by_role("spinbutton").fill("50")
    await product_row(page, EGGS).get_by_role("button", name=re.compile(r"^Add to cart")).click()

    refusal = messages(page).filter(has_text="you can add 39 more")
    await expect(refusal).to_contain_text("You already have 60")
    await expect(refusal).to_be_focused()
    await expect(page).to_have_url(re.compile(r"/dev/shop#line-\d+$"))  # not a bare error page
    await expect_badge(page, 60)
    await shopper.audit("shop, add refused")

    await open_cart(page)
    quantity = cart_line(page, EGGS).get_by_role("spinbutton")
    await quantity.fill("150")
    await quantity.press("Enter")  # the browser itself says what the field takes
    assert "99" in await quantity.evaluate("input => input.validationMessage")
    await expect_badge(page, 60)
    await page.get_by_role("button", name=f"One more {EGGS}").click()
    await expect(messages(page).filter(has_text=f"{EGGS}: 61 in your cart.")).to_be_visible()
    await expect_badge(page, 61)


async def test_checkout_saves_a_typed_quantity_before_paying(
    js_shopper: Shopper, demo_shop: None, sumup_sandbox: object
) -> None:
    page = js_shopper.page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await open_cart(page)
    await cart_line(page, EGGS).get_by_role("spinbutton").fill("4")  # typed, not saved
    await page.get_by_role("button", name="Checkout", exact=True).click()
    await expect(page).to_have_url(re.compile(r"/pay/[^/]+$"), timeout=10_000)  # SumUp's page
    await expect(page.get_by_text("£12.80", exact=True)).to_be_visible()


async def test_signing_in_merges_the_anonymous_cart_and_says_what_was_added(
    desktop_shopper: Shopper, demo_shop: None, db: AsyncSession
) -> None:
    page = desktop_shopper.page
    user = await db.scalar(select(User).where(User.email == DEMO_USER_EMAIL))
    sourdough = await db.scalar(select(Product).where(Product.slug == "sourdough"))
    assert user is not None and sourdough is not None
    await make_line(db, sourdough, quantity=1, user_id=user.id)

    await page.goto("/dev/shop")
    await add_to_cart(page, "Sourdough loaf", quantity=2)
    await book(page, "Barn dance ticket")
    await expect_badge(page, 3)
    await page.get_by_role("main").get_by_role("link", name="Sign in").click()
    await desktop_shopper.audit("sign in")
    await page.get_by_label("Email").fill(DEMO_USER_EMAIL)
    await page.get_by_role("button", name="Sign in").click()

    await expect(page).to_have_url(re.compile(r"/cart/$"))
    await expect(messages(page).filter(has_text="Signed in as")).to_be_visible()
    welcome = messages(page).filter(has_text="Welcome back!")
    await expect(welcome).to_contain_text(re.compile(r"we added", re.IGNORECASE))
    await expect(welcome).to_contain_text("2 × Sourdough loaf")
    await expect(welcome).to_contain_text("Barn dance ticket")
    await expect(cart_line(page, "Sourdough").get_by_role("spinbutton")).to_have_value("3")
    await expect(cart_line(page, "Sourdough")).to_contain_text("£12.75")
    await expect(page_group(page, "The Old Barn").get_by_test_id("subtotal")).to_have_text("£12.50")
    await expect(page.get_by_test_id("grand-total")).to_have_text("£25.25")
    await expect_badge(page, 4)
    await desktop_shopper.audit("cart after signing in")

    await page.reload()
    await expect(page.get_by_test_id("grand-total")).to_have_text("£25.25")
    await expect(messages(page)).to_have_count(0)  # merged and told once


async def test_a_stale_form_gets_a_readable_page_that_leads_back(
    desktop_shopper: Shopper, demo_shop: None
) -> None:
    page = desktop_shopper.page
    await page.goto("/dev/shop")
    await page.evaluate(
        """() => document.querySelectorAll('input[name="csrf_token"]').forEach(
               input => { input.value = input.value.slice(0, -6) + 'xxxxxx'; })"""
    )
    async with page.expect_response(lambda r: r.request.method == "POST") as posted:
        await product_row(page, EGGS).get_by_role("button", name=re.compile(r"^Add")).click()
    assert (await posted.value).status == 400

    await expect(page.get_by_role("heading", level=1)).to_have_text("This form has expired")
    await expect(page.get_by_role("alert").first).to_contain_text("reload the page and try again")
    await expect(page.get_by_role("main")).to_contain_text("Nothing was changed")
    body = await page.locator("body").inner_text()
    assert "Traceback" not in body and "Error" not in body
    await expect(header(page).get_by_test_id("cart-badge")).to_have_text("0")
    await desktop_shopper.audit("stale form")

    await page.get_by_role("link", name="Go back and try again").click()
    await expect(page).to_have_url(re.compile(r"/dev/shop$"))
    await add_to_cart(page, EGGS)
    await expect_badge(page, 1)


STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"


async def test_in_place_changes_need_no_inline_script_or_style_under_a_strict_csp(
    new_shopper: ShopperFactory, demo_shop: None, live_url: str
) -> None:
    shopper = await new_shopper(DESKTOP, True)
    page = shopper.page
    refused: list[str] = []
    page.on(
        "console",
        lambda message: (
            refused.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )

    async def with_csp(route: Route) -> None:
        response = await route.fetch()
        headers = {**response.headers, "content-security-policy": STRICT_CSP}
        await route.fulfill(response=response, headers=headers)

    await page.route(f"{live_url}/**", with_csp)
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await open_cart(page)
    await mark_page(page)
    await cart_line(page, EGGS).get_by_role("button", name=f"One more {EGGS}").click()
    await expect_told(shopper, f"{EGGS}: 3 in your cart.")
    await expect_in_place(shopper)
    assert await page.evaluate("() => typeof window.htmx") == "object"
    assert refused == []


def _luminance(rgb: tuple[int, ...]) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(first: str, second: str) -> float:
    """WCAG contrast ratio of two CSS `rgb(...)` colours."""
    one, two = (
        _luminance(tuple(int(n) for n in re.findall(r"\d+", colour)[:3]))
        for colour in (first, second)
    )
    light, dark = max(one, two), min(one, two)
    return (light + 0.05) / (dark + 0.05)


async def test_the_keyboard_focus_ring_stands_out_from_the_cart(
    new_shopper: ShopperFactory, demo_shop: None
) -> None:
    page = (await new_shopper(DESKTOP, True)).page
    await page.goto("/dev/shop")
    await add_to_cart(page, EGGS, quantity=2)
    await open_cart(page)
    await cart_line(page, EGGS).get_by_role("button", name=f"One fewer {EGGS}").focus()
    await page.keyboard.press("Tab")
    await page.keyboard.press("Tab")  # onto "+", by keyboard, so the ring shows
    ring = await page.evaluate(
        """() => { const style = getComputedStyle(document.activeElement);
                   return [document.activeElement.id, style.outlineStyle, style.outlineWidth,
                           style.outlineColor]; }"""
    )
    focused, style, width, colour = ring
    assert focused.startswith("inc-") and style == "solid" and float(width[:-2]) >= 2
    assert contrast(colour, "rgb(255, 255, 255)") >= 3  # the card behind it
    assert contrast(colour, "rgb(252, 250, 247)") >= 3  # the page behind it
