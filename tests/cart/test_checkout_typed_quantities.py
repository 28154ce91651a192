"""The cart form over HTTP, as a browser without JavaScript sends it: every checkout button
and every Update button carries each line's quantity box, and what was typed is saved first.

A checkout whose typed quantities changed the cart does not go on to SumUp: it answers 303
back to the cart page, which says what changed and the new total (issue 13). A refused
quantity is answered beside its line and changes nothing; a form no page sends is a 4xx.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from models import CartItem, CheckoutKey, Order, Product
from tests.factories import make_page_config, make_product, make_shop
from tests.shopper import add, page_text

# The inputs of the cart form, wherever they stand on the page: its own, and the boxes'.
CART_FORM = re.compile(
    r'<form method="post" action="([^"]+)" id="cart-form"[^>]*>(.*?)</form>', re.S
)
HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
LINE = re.compile(r'<input type="hidden" form="cart-form" name="line" value="([^"]+)">')
BOX = re.compile(r'<input id="qty-(\d+)" form="cart-form"[^>]* name="quantity"[^>]* value="(\d+)"')


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


async def cart_form(client: Client, path: str = "/cart/") -> tuple[str, list[tuple[str, str]]]:
    """The cart form of a cart page as the page renders it: its action and its fields."""
    html = await page_text(await client.get(path))
    found = CART_FORM.search(html)
    assert found, f"no cart form on {path}"
    fields = HIDDEN.findall(found.group(2))
    for line, (_, quantity) in zip(LINE.findall(html), BOX.findall(html), strict=True):
        fields += [("line", line), ("quantity", quantity)]
    return found.group(1), fields


def typed(fields: list[tuple[str, str]], product: Product, quantity: Any) -> list[tuple[str, str]]:
    """The fields with `quantity` typed into `product`'s box."""
    boxes = [i for i, (name, value) in enumerate(fields) if name == "line"]
    out = list(fields)
    for i in boxes:
        if fields[i][1].startswith(f"{product.id}:"):
            out[i + 1] = ("quantity", str(quantity))
    return out


async def send(client: Client, path: str, fields: list[tuple[str, str]], **button: str) -> Any:
    """POST the fields as the browser does, with the pressed button's name and value."""
    body = urlencode([*fields, *button.items()])
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"}
    return await client.post(path, data=body, headers=headers)


async def quantities(db: AsyncSession) -> dict[int, int]:
    rows = await db.execute(
        select(CartItem.product_id, CartItem.quantity)
        .where(CartItem.deleted_at.is_(None))
        .execution_options(populate_existing=True)
    )
    return {product_id: quantity for product_id, quantity in rows.all()}


async def order_count(db: AsyncSession) -> int:
    return len(list(await db.scalars(select(Order.id))))


async def two_page_cart(client: Client, db: AsyncSession) -> tuple[Product, Product]:
    """Eggs (2 × £4.50) from the farm, paid to the farm directly; honey (1 × £6.00) from
    the café."""
    farm, farm_market = await make_shop(db, "farm")
    await make_page_config(db, farm)
    _, cafe_market = await make_shop(db, "cafe")
    eggs = await make_product(db, farm_market, title="Eggs", price="4.50")
    honey = await make_product(db, cafe_market, title="Honey", price="6.00")
    await add(client, eggs.id, 2)
    await add(client, honey.id, 1)
    return eggs, honey


def note(html: str, element_id: str) -> str:
    """The element with `element_id`, up to the end of its table cell or block."""
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</div>", start)]


async def test_a_checkout_with_a_typed_quantity_saves_it_and_shows_the_cart_again(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    eggs, honey = await two_page_cart(client, db)
    action, fields = await cart_form(client)
    assert action == "/cart/checkout/" and ("shown_total", "15.00") in fields

    response = await send(client, action, typed(fields, eggs, 3))

    assert response.status_code == 303
    assert response.headers["Location"] == "/cart/#cart-updated"
    assert await quantities(db) == {eggs.id: 3, honey.id: 1}
    assert await order_count(db) == 0
    assert (await sandbox_control.stats())["created"] == 0
    html = await page_text(await client.get("/cart/"))
    assert (
        "We updated your cart: 3 × Eggs. Your new total is £19.50 — check it and press Checkout."
        in note(html, "cart-updated")
    )
    assert 'data-testid="grand-total">£19.50<' in html

    action, fields = await cart_form(client)  # what the page shows now goes on to pay
    paid = await send(client, action, fields)
    assert paid.status_code == 303 and "/pay/" in paid.headers["Location"]
    [order] = list(await db.scalars(select(Order)))
    assert order.total_amount == Decimal("19.50")


async def test_a_checkout_with_the_quantities_as_shown_goes_on_to_sumup_as_before(
    client: Client, db: AsyncSession, sumup_sandbox: Any
) -> None:
    eggs, honey = await two_page_cart(client, db)
    action, fields = await cart_form(client)
    assert ("quantity", "2") in fields  # the boxes are sent, untouched

    response = await send(client, action, fields)

    assert response.status_code == 303
    assert response.headers["Location"].startswith(f"{sumup_sandbox.base_url}/pay/")
    [order] = list(await db.scalars(select(Order)))
    assert order.total_amount == Decimal("15.00") and order.page_post_id is None
    assert await quantities(db) == {eggs.id: 2, honey.id: 1}


async def test_a_page_button_saves_quantities_typed_on_every_page_and_names_the_pages_total(
    client: Client, db: AsyncSession
) -> None:
    eggs, honey = await two_page_cart(client, db)
    _, fields = await cart_form(client)
    fields = typed(typed(fields, eggs, 1), honey, 0)

    response = await send(client, "/cart/farm/checkout/", fields, page_total="9.00")

    assert response.headers["Location"] == "/cart/#cart-updated"
    assert await quantities(db) == {eggs.id: 1}
    assert await order_count(db) == 0
    html = await page_text(await client.get("/cart/"))
    assert (
        "We updated your cart: Honey taken out, 1 × Eggs. Your new total for Farm is £4.50 — "
        "check it and press Checkout." in note(html, "cart-updated")
    )


async def test_a_page_buttons_message_stands_beside_that_button_while_other_pages_remain(
    client: Client, db: AsyncSession
) -> None:
    eggs, honey = await two_page_cart(client, db)
    _, fields = await cart_form(client)

    response = await send(client, "/cart/farm/checkout/", typed(fields, eggs, 3), page_total="9.00")

    assert response.headers["Location"] == "/cart/#cart-updated-farm"
    html = await page_text(await client.get("/cart/"))
    beside = note(html, "cart-updated-farm")
    assert "Your new total for Farm is £13.50 — check it and press Pay for Farm only." in beside
    assert html.index('id="cart-updated-farm"') < html.index('id="checkout-farm"')
    assert await quantities(db) == {eggs.id: 3, honey.id: 1}


async def test_a_page_button_pays_the_pages_subtotal_it_carries(
    client: Client, db: AsyncSession, sumup_sandbox: Any
) -> None:
    await two_page_cart(client, db)
    html = await page_text(await client.get("/cart/"))
    assert re.search(r'formaction="/cart/farm/checkout/" name="page_total" value="9.00"', html)
    _, fields = await cart_form(client)

    response = await send(client, "/cart/farm/checkout/", fields, page_total="9.00")

    assert response.headers["Location"].startswith(f"{sumup_sandbox.base_url}/pay/")
    [order] = list(await db.scalars(select(Order)))
    assert order.total_amount == Decimal("9.00") and order.page_post_id is not None


async def test_the_cart_forms_key_makes_one_checkout_per_part_of_the_cart(
    client: Client, db: AsyncSession
) -> None:
    """One form carries the whole cart's and each page's button, with one key: pressing
    the page's, then (an old tab) the whole cart's, charges the whole cart the second time,
    and pressing it again gives back that same order."""
    await two_page_cart(client, db)
    _, fields = await cart_form(client)

    await send(client, "/cart/farm/checkout/", fields, page_total="9.00")
    await send(client, "/cart/checkout/", fields)
    await send(client, "/cart/checkout/", fields)

    orders = list(await db.scalars(select(Order).order_by(Order.id)))
    assert [(o.page_post_id is None, o.total_amount, o.status) for o in orders] == [
        (False, Decimal("9.00"), "cancelled"),  # superseded by the whole cart's
        (True, Decimal("15.00"), "pending"),
    ]
    keys = list(await db.scalars(select(CheckoutKey.order_id)))
    assert keys == [orders[0].id]  # the key still names the checkout it made


async def test_a_page_carts_checkout_comes_back_to_the_page_cart(
    client: Client, db: AsyncSession
) -> None:
    eggs, honey = await two_page_cart(client, db)
    action, fields = await cart_form(client, "/cart/farm/")
    assert action == "/cart/farm/checkout/" and ("shown_total", "9.00") in fields

    response = await send(client, action, typed(fields, eggs, 4))

    assert response.headers["Location"] == "/cart/farm/#cart-updated"
    html = await page_text(await client.get("/cart/farm/"))
    assert "Your new total for Farm is £18.00 — check it and press Checkout." in html
    assert await quantities(db) == {eggs.id: 4, honey.id: 1}


async def test_a_checkout_that_takes_everything_out_says_nothing_is_left_to_pay(
    client: Client, db: AsyncSession
) -> None:
    eggs, honey = await two_page_cart(client, db)
    action, fields = await cart_form(client, "/cart/farm/")

    response = await send(client, action, typed(fields, eggs, 0))

    assert response.headers["Location"] == "/cart/farm/#cart-updated"
    html = await page_text(await client.get("/cart/farm/"))
    assert "We updated your cart: Eggs taken out. Nothing from Farm is in it now." in html
    assert await quantities(db) == {honey.id: 1} and await order_count(db) == 0


async def test_a_refused_quantity_is_answered_beside_its_line_and_nothing_is_saved(
    client: Client, db: AsyncSession
) -> None:
    eggs, honey = await two_page_cart(client, db)
    _, fields = await cart_form(client)

    response = await send(client, "/cart/checkout/", typed(typed(fields, eggs, 150), honey, 3))

    assert response.status_code == 303
    assert response.headers["Location"] == f"/cart/#line-{eggs.id}"
    assert await quantities(db) == {eggs.id: 2, honey.id: 1}  # honey's 3 not saved either
    assert await order_count(db) == 0
    html = await page_text(await client.get("/cart/"))
    beside = note(html, f"line-{eggs.id}")
    assert "You can have at most 99 of one product in your cart." in beside
    assert re.search(r'name="quantity" value="99">\s*<button[^>]*>Make it 99</button>', html)


@pytest.mark.parametrize("value", ["", "-1", " "])
async def test_an_empty_or_negative_box_is_answered_beside_its_line(
    client: Client, db: AsyncSession, value: str
) -> None:
    eggs, honey = await two_page_cart(client, db)
    _, fields = await cart_form(client)

    response = await send(client, "/cart/checkout/", typed(fields, eggs, value))

    assert response.headers["Location"] == f"/cart/#line-{eggs.id}"
    html = await page_text(await client.get("/cart/"))
    assert "Quantity must be a whole number from 0 to 99." in note(html, f"line-{eggs.id}")
    assert await quantities(db) == {eggs.id: 2, honey.id: 1}


async def test_a_typed_quantity_for_a_product_no_longer_sold_is_answered_beside_it(
    client: Client, db: AsyncSession
) -> None:
    eggs, _ = await two_page_cart(client, db)
    _, fields = await cart_form(client)
    product = await db.get(Product, eggs.id)
    assert product is not None
    product.deleted_at = datetime.now(UTC)
    await db.commit()

    response = await send(client, "/cart/checkout/", typed(fields, eggs, 3))

    assert response.headers["Location"] == f"/cart/#line-{eggs.id}"
    html = await page_text(await client.get("/cart/"))
    assert "That product is not available any more." in note(html, f"line-{eggs.id}")
    assert await order_count(db) == 0


async def test_update_saves_every_typed_box_and_tells_each_beside_its_line(
    client: Client, db: AsyncSession
) -> None:
    eggs, honey = await two_page_cart(client, db)
    _, fields = await cart_form(client)

    response = await send(
        client, "/cart/update/", typed(typed(fields, eggs, 5), honey, 0), update=str(honey.id)
    )

    assert response.status_code == 303
    assert response.headers["Location"] == f"/cart/#line-{honey.id}"  # the button pressed
    assert await quantities(db) == {eggs.id: 5}
    html = await page_text(await client.get("/cart/"))
    assert "Eggs: 5 in your cart." in note(html, f"line-{eggs.id}")
    assert "Honey was taken out of your cart." in html

    _, fields = await cart_form(client)
    response = await send(client, "/cart/update/", fields)  # Enter, nothing typed
    assert response.status_code == 303 and await quantities(db) == {eggs.id: 5}


async def test_a_form_left_open_does_not_undo_a_change_made_since_in_another_tab(
    client: Client, db: AsyncSession
) -> None:
    eggs, honey = await two_page_cart(client, db)
    _, old_tab = await cart_form(client)
    await send(client, "/cart/update/", typed((await cart_form(client))[1], eggs, 6))

    response = await send(client, "/cart/checkout/", typed(old_tab, honey, 2))

    assert response.headers["Location"] == "/cart/#cart-updated"
    assert await quantities(db) == {eggs.id: 6, honey.id: 2}  # eggs: untouched in that tab


def _box(product: Product, shown: int = 2) -> str:
    return f"{product.id}:{product.market_place_id}:{shown}"


HOSTILE_BOXES: list[tuple[str, Any]] = [
    ("unpaired", lambda p: [("line", _box(p))]),
    ("more quantities", lambda p: [("line", _box(p)), ("quantity", "1"), ("quantity", "2")]),
    ("no line key", lambda p: [("line", "eggs"), ("quantity", "3")]),
    ("line key in other digits", lambda p: [("line", f"{p.id}:\u0661:2"), ("quantity", "3")]),
    ("arabic digits", lambda p: [("line", _box(p)), ("quantity", "\u0661\u0662")]),
    ("superscript", lambda p: [("line", _box(p)), ("quantity", "²")]),
    ("exponent", lambda p: [("line", _box(p)), ("quantity", "1e3")]),
    ("fraction", lambda p: [("line", _box(p)), ("quantity", "2.5")]),
    ("underscore", lambda p: [("line", _box(p)), ("quantity", "1_0")]),
    ("huge", lambda p: [("line", _box(p)), ("quantity", "9" * 30)]),
    ("NUL", lambda p: [("line", _box(p)), ("quantity", "3\x00")]),
    ("ids past integer", lambda p: [("line", "9999999999:9999999999:1"), ("quantity", "3")]),
    ("someone else's line", lambda p: [("line", f"{p.id + 1000}:1:1"), ("quantity", "3")]),
    ("past the maximum", lambda p: [("line", _box(p)), ("quantity", "9" * 18)]),
]


@pytest.mark.parametrize("path", ["/cart/checkout/", "/cart/farm/checkout/", "/cart/update/"])
@pytest.mark.parametrize(("name", "boxes"), HOSTILE_BOXES, ids=[n for n, _ in HOSTILE_BOXES])
async def test_hostile_boxes_are_refused_without_a_500_and_change_nothing(
    client: Client, db: AsyncSession, path: str, name: str, boxes: Any
) -> None:
    eggs, honey = await two_page_cart(client, db)
    _, fields = await cart_form(client)
    own = [(n, v) for n, v in fields if n not in ("line", "quantity")]

    response = await send(client, path, [*own, *boxes(eggs)])

    assert response.status_code in (303, 400, 404, 422), name
    if response.status_code == 303:  # answered beside a line, not paid
        assert "#line-" in response.headers["Location"]
    assert await quantities(db) == {eggs.id: 2, honey.id: 1}
    assert await order_count(db) == 0


async def test_the_cart_form_keeps_its_csrf_check(client: Client, db: AsyncSession) -> None:
    eggs, _ = await two_page_cart(client, db)
    _, fields = await cart_form(client)
    forged = [(n, v) for n, v in typed(fields, eggs, 3) if n != "csrf_token"]

    for path in ("/cart/checkout/", "/cart/update/"):
        response = await send(client, path, forged)
        assert response.status_code == 400
    assert (await quantities(db))[eggs.id] == 2
