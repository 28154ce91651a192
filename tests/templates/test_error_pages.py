"""Error pages say what happened in plain words, are announced, and lead somewhere."""

from __future__ import annotations

from quart.typing import TestClientProtocol as Client

from tests.shopper import page_text, post_form


async def test_a_bad_order_filter_says_so_plainly_and_offers_all_orders(client: Client) -> None:
    response = await client.get("/orders/?status=bogus", headers={"Accept": "text/html"})
    html = await page_text(response)
    assert response.status_code == 422
    assert "Something is not right" not in html
    assert "<h1>That did not work</h1>" in html
    assert 'role="alert"' in html and "no order status called" in html
    assert 'href="/orders/">All your orders</a>' in html


async def test_a_stale_form_says_nothing_changed_and_how_to_go_on(client: Client) -> None:
    response = await post_form(client, "/cart/checkout/", {"csrf_token": "stale"}, token=False)
    html = await page_text(response)
    assert response.status_code == 400
    assert "<h1>This form has expired</h1>" in html and 'role="alert"' in html
    assert "Nothing was changed." in html and "Back to your cart</a>" in html


async def test_a_missing_order_is_announced_and_leads_to_the_orders(client: Client) -> None:
    html = await page_text(await client.get("/orders/999/", headers={"Accept": "text/html"}))
    assert 'role="alert"' in html and 'href="/orders/">Your orders</a>' in html
