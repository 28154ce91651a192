"""Hostile input is refused with a message before the database (issue 11, case 4)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from bp.cart.services.webhook_tokens import webhook_token
from services.input_guard import json_depth_exceeds
from tests.factories import make_product, make_shop
from tests.orders.factories import latest_order, place_order
from tests.shopper import add, csrf_token, page_text, post_form


@pytest.fixture
def bearer(settings: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.internal_api_token.reveal()}"}


@pytest.mark.parametrize(
    "path", ["/cart/%00/", "/cart/a%00b/checkout/", "/cart/%ff/", "/orders/%00/"]
)
async def test_nul_and_non_utf8_bytes_in_a_path_are_a_404_page(path: str, live_url: str) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        get = await http.get(f"{live_url}{path}", headers={"Accept": "text/html"})
        post = await http.post(f"{live_url}{path}", headers={"Accept": "text/html"})
    assert get.status_code == 404, get.text
    assert "There is nothing here." in get.text
    assert post.status_code in (404, 405)


@pytest.mark.parametrize("page", ["a\x00", "a\x00b", "\x7f", "\ufffd", "x" * 9000])
async def test_nul_bytes_in_the_summary_query_are_a_422_in_json(
    page: str, client: Client, bearer: dict[str, str]
) -> None:
    response = await client.get(
        "/internal/cart/summary", query_string={"page": page}, headers=bearer
    )
    assert response.status_code == 422
    body = await response.get_json()
    assert body["status"] == 422 and "cannot read" in body["message"]


async def test_non_utf8_bytes_in_a_query_are_a_422_over_http(
    live_url: str, bearer: dict[str, str]
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{live_url}/internal/cart/summary?page=%ff%fe", headers=bearer)
        orders = await http.get(f"{live_url}/orders/?status=%00", headers={"Accept": "text/html"})
    assert response.status_code == 422
    assert orders.status_code == 422 and "cannot read" in orders.text


async def test_a_nul_in_the_login_email_is_a_422_page(client: Client) -> None:
    response = await post_form(client, "/dev/login", {"email": "a\x00b@example.coop"})
    assert response.status_code == 422
    assert "cannot accept" in await page_text(response)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"quantity": "\x00"}, "cannot accept"),
        ({"quantity": "2", "next": "/cart/\x00"}, "cannot accept"),
        ({"quantity": "2", "next": "/" + "x" * 3000}, "cannot accept"),
        ({"quantity": "١٢"}, "Quantity must be a whole number"),
        ({"quantity": "²"}, "Quantity must be a whole number"),
        ({"quantity": "1_0"}, "Quantity must be a whole number"),
        ({"market_place": "٣"}, "The market must be given as a number"),
        ({"quantity": "1", "\x00": "1"}, "does not match any form"),
    ],
)
async def test_hostile_form_values_are_a_422_and_change_nothing(
    fields: dict[str, str], says: str, client: Client, db: AsyncSession
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    response = await post_form(client, f"/cart/add/{product.id}/", fields)
    assert response.status_code == 422
    assert says in await page_text(response)
    assert await db.scalar(text("SELECT count(*) FROM cart_items")) == 0


async def test_non_utf8_bytes_in_a_form_body_are_a_422(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    token = await csrf_token(client)
    response = await client.post(
        f"/cart/add/{product.id}/",
        data=f"csrf_token={token}&quantity=%ff%00".encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "text/html"},
    )
    assert response.status_code == 422
    assert await db.scalar(text("SELECT count(*) FROM cart_items")) == 0


@pytest.mark.parametrize("check", ["²", "٣", "-1", "1.5", "9" * 40, "abc"])
async def test_a_bad_check_on_the_return_page_is_a_422_not_a_500(
    check: str, client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    await sandbox_control.reset()
    order = (await place_order(client, db)).order
    response = await client.get(f"/cart/checkout/return/{order.id}/", query_string={"check": check})
    assert response.status_code == 422
    assert "digits 0 to 9" in await page_text(response)


@pytest.mark.parametrize(
    "body",
    [
        b"\xff\xfe{not utf-8}",
        b'{"event_type": "CHECKOUT_STATUS_CHANGED", "x": "\xc3\x28"}',
        b"[" * 5000 + b"]" * 5000,
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        b"{nonsense",
    ],
    ids=["latin-1", "bad-utf8-in-a-string", "deep-array", "deep-object", "not-json"],
)
async def test_a_webhook_with_a_valid_token_and_an_unreadable_body_is_a_400(
    body: bytes, client: Client, db: AsyncSession, sandbox_control: Any, live_url: str
) -> None:
    await sandbox_control.reset()
    order = (await place_order(client, db)).order
    token = webhook_token(client.app.config["SECRET_KEY"], order.id)
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{live_url}/cart/checkout/webhook/{order.id}/?token={token}",
            content=body,
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 400
    assert response.json()["status"] == 400 and response.json()["message"]
    assert (await latest_order(db)).status == "pending"


@pytest.mark.parametrize("token", ["é", "%00", "\u2603" * 3])
async def test_a_webhook_token_that_is_not_ascii_is_simply_wrong(
    token: str, client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    await sandbox_control.reset()
    order = (await place_order(client, db)).order
    response = await client.post(
        f"/cart/checkout/webhook/{order.id}/",
        query_string={"token": token},
        json={"event_type": "CHECKOUT_STATUS_CHANGED"},
    )
    assert response.status_code in (404, 422)


@pytest.mark.parametrize(
    ("text_", "deeper"),
    [('{"a": [1, {"b": 2}]}', False), ('"[[[[[[["', False), ('[[["]"]]]', False), ("[[[[", True)],
)
def test_json_depth_counts_brackets_outside_strings(text_: str, deeper: bool) -> None:
    assert json_depth_exceeds(text_, 3) is deeper


async def test_an_add_with_plain_values_still_works(client: Client, db: AsyncSession) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    assert (await add(client, product.id, " 3 ")).status_code == 303
