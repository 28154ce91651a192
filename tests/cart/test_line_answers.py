"""A line form's answer comes back to the line: the message beside it, what fits instead."""

from __future__ import annotations

import re

from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_product, make_shop
from tests.shopper import add, page_text, post_form


def _element(html: str, element_id: str) -> str:
    """The HTML from the element with `element_id` to the end of its line note."""
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</td>", start)]


def _top_messages(html: str) -> str:
    return html[
        html.index('<div id="messages"') : html.index("</div>", html.index('id="messages"'))
    ]


async def test_a_refused_add_says_how_many_more_fit_and_offers_them_beside_the_product(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    eggs = await make_product(db, market, title="Eggs")
    await add(client, eggs.id, 60)

    response = await add(client, eggs.id, 50, next="/dev/shop")

    assert response.status_code == 303
    assert response.headers["Location"] == f"/dev/shop#line-{eggs.id}"
    html = await page_text(await client.get("/dev/shop"))
    note = _element(html, f"line-{eggs.id}")
    assert "You can have at most 99 of Eggs in your cart." in note
    assert "You already have 60, and one line holds 99: you can add 39 more." in note
    assert re.search(r'name="quantity" value="39">\s*<button[^>]*>Add 39 instead</button>', note)


async def test_a_quantity_past_the_maximum_offers_the_maximum_beside_the_line(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    eggs = await make_product(db, market, title="Eggs")
    await add(client, eggs.id, 2)

    response = await post_form(client, f"/cart/update/{eggs.id}/", {"quantity": 150})

    assert response.headers["Location"] == f"/cart/#line-{eggs.id}"
    html = await page_text(await client.get("/cart/"))
    note = _element(html, f"line-{eggs.id}")
    assert "at most 99" in note and 'data-message="error"' in note
    assert re.search(r'name="quantity" value="99">\s*<button[^>]*>Make it 99</button>', note)
    assert "at most 99" not in _top_messages(html)  # said once, where the line is


async def test_a_change_is_told_beside_its_line_and_a_removal_on_top_under_the_lines_anchor(
    client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    eggs = await make_product(db, market, title="Eggs")
    honey = await make_product(db, market, title="Honey")
    await add(client, eggs.id, 2)
    await add(client, honey.id, 1)
    await client.get("/cart/")  # shows the "added" messages

    await post_form(client, f"/cart/update/{eggs.id}/", {"quantity": 3})
    html = await page_text(await client.get("/cart/"))
    assert "Eggs: 3 in your cart." in _element(html, f"line-{eggs.id}")
    assert "Eggs: 3" not in _top_messages(html)

    response = await post_form(client, f"/cart/remove/{honey.id}/")
    assert response.headers["Location"] == f"/cart/#line-{honey.id}"
    html = await page_text(await client.get("/cart/"))
    top = _top_messages(html)
    assert f'id="line-{honey.id}"' in top and "Honey was taken out of your cart." in top


async def test_a_line_change_for_a_sibling_app_goes_back_there_as_given(
    client: Client, db: AsyncSession, settings: object
) -> None:
    _, market = await make_shop(db)
    eggs = await make_product(db, market, title="Eggs")
    market_page = settings.app_urls["market"] + "/hill-farm/"  # type: ignore[attr-defined]
    response = await add(client, eggs.id, 1, next=market_page)
    assert response.headers["Location"] == market_page
