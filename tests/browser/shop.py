"""What a shopper does in the browser, in the words on the buttons they press."""

from __future__ import annotations

import re

from playwright.async_api import Locator, Page, expect


def header(page: Page) -> Locator:
    """The site header (the page's banner landmark)."""
    return page.get_by_role("banner")


def messages(page: Page) -> Locator:
    """Every message the page shows: on top of the page or beside a line."""
    return page.locator("[data-message]")


async def expect_badge(page: Page, count: int) -> None:
    """The cart badge in the header shows `count` items."""
    await expect(header(page).get_by_test_id("cart-badge")).to_have_text(str(count))


def product_row(page: Page, title: str) -> Locator:
    """The shop's table row of one product."""
    return page.get_by_test_id("shop-product").filter(has_text=title)


async def add_to_cart(page: Page, title: str, quantity: int | None = None) -> None:
    """On the shop: type a quantity (if given) and press the product's "Add to cart"."""
    row = product_row(page, title)
    if quantity is not None:
        await row.get_by_role("spinbutton").fill(str(quantity))
    await row.get_by_role("button", name=re.compile(r"^Add to cart\b")).click()
    await expect(messages(page).filter(has_text=title)).to_be_visible()


async def book(page: Page, name: str) -> None:
    """On the shop: press "Book" on an event."""
    row = page.get_by_test_id("shop-slot").filter(has_text=name)
    await row.get_by_role("button", name=re.compile(r"^Book\b")).click()
    await expect(messages(page).filter(has_text=name)).to_be_visible()


async def open_cart(page: Page) -> None:
    """Follow the header's cart link to the cart overview."""
    await header(page).get_by_role("link", name=re.compile(r"^Cart\b")).click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Your cart")


def page_group(page: Page, title: str) -> Locator:
    """One page's group on a cart page: the region named by the page's title."""
    return page.get_by_role("region", name=title, exact=True)


def cart_line(page: Page, title: str) -> Locator:
    """A line of the cart (a row on desktop, a card on a phone)."""
    return page.get_by_test_id("cart-line").filter(has_text=title)


async def no_sideways_scroll(page: Page) -> None:
    """Nothing on the page is wider than the screen."""
    overflow = await page.evaluate(
        "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"the page scrolls sideways by {overflow}px"


async def small_targets(scope: Locator, minimum: int = 44) -> list[str]:
    """The buttons, fields and button-like links in `scope` smaller than `minimum` px."""
    found: list[str] = await scope.evaluate(
        """(root, minimum) => Array.from(root.querySelectorAll(
               'button, input:not([type=hidden]), select, a.button'))
             .filter(el => el.offsetParent !== null)
             .map(el => [el, el.getBoundingClientRect()])
             .filter(([, box]) => box.height < minimum || box.width < minimum)
             .map(([el, box]) => `${el.outerHTML.slice(0, 80)}: ${box.width}x${box.height}`)""",
        minimum,
    )
    return found
