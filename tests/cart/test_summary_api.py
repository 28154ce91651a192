"""`GET /internal/cart/summary`: the badge numbers for the session a sibling app forwards."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.factories import make_calendar, make_entry, make_product, make_shop, make_user
from tests.shopper import add, login

SUMMARY = "/internal/cart/summary"
EMPTY = {"count": 0, "total": "0.00", "currency": "GBP", "product_count": 0, "entry_count": 0}


@pytest.fixture
async def sibling(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """Another app calling us over HTTP, with no cookies of its own."""
    async with httpx.AsyncClient(base_url=live_url, timeout=10) as http:
        yield http


@pytest.fixture
def bearer(settings: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.internal_api_token.reveal()}"}


def browser_cookie(client: Client, settings: Any) -> dict[str, str]:
    """The `Cookie` header the shopper's browser sends, as a sibling forwards it."""
    assert client.cookie_jar is not None
    name = settings.session.cookie_name
    [value] = [cookie.value for cookie in client.cookie_jar if cookie.name == name]
    return {"Cookie": f"{name}={value}"}


async def summary(
    sibling: httpx.AsyncClient, headers: dict[str, str], page: str | None = None
) -> httpx.Response:
    params = {"page": page} if page is not None else None
    return await sibling.get(SUMMARY, headers=headers, params=params)


async def test_missing_bearer_token_is_refused_with_json_401(sibling: httpx.AsyncClient) -> None:
    response = await sibling.get(SUMMARY)
    assert response.status_code == 401
    assert response.json() == {
        "error": "Unauthorized",
        "message": "A valid bearer token is required.",
    }


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong",
        "Bearer",
        "Basic {token}",
        "{token}",
        "Bearer {token}x",
        "Bearer {same_length}",
    ],
)
async def test_wrong_bearer_token_is_refused_with_json_401(
    authorization: str, sibling: httpx.AsyncClient, settings: Any
) -> None:
    token = settings.internal_api_token.reveal()
    same_length = ("x" if token[0] != "x" else "y") + token[1:]
    header = authorization.format(token=token, same_length=same_length)
    response = await sibling.get(SUMMARY, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"] == "Unauthorized"


async def test_no_session_cookie_gives_an_empty_summary(
    sibling: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    response = await summary(sibling, bearer)
    assert response.status_code == 200
    assert response.json() == EMPTY
    assert "set-cookie" not in response.headers


async def test_forged_session_cookie_gives_an_empty_summary(
    sibling: httpx.AsyncClient, bearer: dict[str, str], settings: Any
) -> None:
    forged = {"Cookie": f"{settings.session.cookie_name}=made-up.signature"}
    response = await summary(sibling, {**bearer, **forged})
    assert response.json() == EMPTY


async def test_summary_is_of_the_forwarded_shoppers_cart_with_special_prices(
    client: Client,
    db: AsyncSession,
    sibling: httpx.AsyncClient,
    bearer: dict[str, str],
    settings: Any,
) -> None:
    page, market = await make_shop(db)
    eggs = await make_product(db, market, price="3.20")
    honey = await make_product(db, market, price="7.50", special="6.00")
    await add(client, eggs.id, 2)
    await add(client, honey.id, 1)
    session_id = await db.scalar(text("SELECT session_id FROM cart_items LIMIT 1"))
    await make_entry(db, await make_calendar(db, page), session_id=session_id, cost="35.00")
    response = await summary(sibling, {**bearer, **browser_cookie(client, settings)})
    assert response.status_code == 200
    assert response.json() == {
        "count": 4,
        "total": "47.40",  # 2 × 3.20 + 6.00 (special) + 35.00
        "currency": "GBP",
        "product_count": 3,
        "entry_count": 1,
    }


async def test_summary_follows_the_shopper_not_the_caller(
    client: Client,
    app: Any,
    db: AsyncSession,
    sibling: httpx.AsyncClient,
    bearer: dict[str, str],
    settings: Any,
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    other = app.test_client()
    await add(client, product.id, 3)
    await add(other, product.id, 1)
    mine = await summary(sibling, {**bearer, **browser_cookie(client, settings)})
    theirs = await summary(sibling, {**bearer, **browser_cookie(other, settings)})
    assert (mine.json()["count"], theirs.json()["count"]) == (3, 1)


async def test_summary_of_a_signed_in_shopper_is_their_users_cart(
    client: Client,
    db: AsyncSession,
    sibling: httpx.AsyncClient,
    bearer: dict[str, str],
    settings: Any,
) -> None:
    user = await make_user(db)
    _, market = await make_shop(db)
    product = await make_product(db, market, price="2.50")
    await login(client, user.email)
    await add(client, product.id, 4)
    response = await summary(sibling, {**bearer, **browser_cookie(client, settings)})
    assert response.json()["total"] == "10.00"
    assert await db.scalar(text("SELECT user_id FROM cart_items")) == user.id


async def test_page_scopes_the_summary_to_that_pages_lines_and_entries(
    client: Client,
    db: AsyncSession,
    sibling: httpx.AsyncClient,
    bearer: dict[str, str],
    settings: Any,
) -> None:
    _, farm_market = await make_shop(db, "farm")
    cafe, cafe_market = await make_shop(db, "cafe")
    await make_shop(db, "empty-page")
    await add(client, (await make_product(db, farm_market, price="3.00")).id, 2)
    await add(client, (await make_product(db, cafe_market, price="9.00")).id, 1)
    session_id = await db.scalar(text("SELECT session_id FROM cart_items LIMIT 1"))
    await make_entry(db, await make_calendar(db, cafe), session_id=session_id, cost="35.00")
    headers = {**bearer, **browser_cookie(client, settings)}
    farm_summary = (await summary(sibling, headers, "farm")).json()
    cafe_summary = (await summary(sibling, headers, "cafe")).json()
    empty_summary = (await summary(sibling, headers, "empty-page")).json()
    assert farm_summary == {**EMPTY, "count": 2, "total": "6.00", "product_count": 2}
    assert cafe_summary == {
        **EMPTY,
        "count": 2,
        "total": "44.00",
        "product_count": 1,
        "entry_count": 1,
    }
    assert empty_summary == EMPTY


async def test_unknown_page_is_a_json_404(
    client: Client,
    db: AsyncSession,
    sibling: httpx.AsyncClient,
    bearer: dict[str, str],
    settings: Any,
) -> None:
    _, market = await make_shop(db)
    await add(client, (await make_product(db, market)).id)
    for headers in (bearer, {**bearer, **browser_cookie(client, settings)}):
        response = await summary(sibling, headers, "no-such-page")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "error": "Not found",
            "message": "There is no page called 'no-such-page'.",
            "status": 404,
        }


async def test_known_page_without_a_cookie_gives_zeros(
    db: AsyncSession, sibling: httpx.AsyncClient, bearer: dict[str, str]
) -> None:
    await make_shop(db, "farm")
    response = await summary(sibling, bearer, "farm")
    assert response.status_code == 200
    assert response.json() == EMPTY


@pytest.mark.parametrize(
    ("price", "quantity", "total"),
    [("3.5", 1, "3.50"), ("0.10", 3, "0.30"), ("12", 2, "24.00"), ("0.01", 99, "0.99")],
)
async def test_money_is_a_string_with_two_decimals(
    price: str,
    quantity: int,
    total: str,
    client: Client,
    db: AsyncSession,
    sibling: httpx.AsyncClient,
    bearer: dict[str, str],
    settings: Any,
) -> None:
    _, market = await make_shop(db)
    await add(client, (await make_product(db, market, price=price)).id, quantity)
    response = await summary(sibling, {**bearer, **browser_cookie(client, settings)})
    assert response.json()["total"] == total


async def test_products_no_longer_sold_are_left_out_of_the_total(
    client: Client,
    db: AsyncSession,
    sibling: httpx.AsyncClient,
    bearer: dict[str, str],
    settings: Any,
) -> None:
    _, market = await make_shop(db)
    kept = await make_product(db, market, price="4.00")
    withdrawn = await make_product(db, market, price="9.00")
    await add(client, kept.id, 1)
    await add(client, withdrawn.id, 1)
    await db.execute(
        text("UPDATE products SET deleted_at = now() WHERE id = :id"), {"id": withdrawn.id}
    )
    await db.commit()
    response = await summary(sibling, {**bearer, **browser_cookie(client, settings)})
    assert response.json() == {**EMPTY, "count": 1, "total": "4.00", "product_count": 1}
    assert "£4.00" in await (await client.get("/cart/")).get_data(as_text=True)


async def test_summary_reads_the_cart_without_touching_the_session(
    client: Client,
    db: AsyncSession,
    sibling: httpx.AsyncClient,
    bearer: dict[str, str],
    settings: Any,
) -> None:
    _, market = await make_shop(db)
    await add(client, (await make_product(db, market)).id)
    response = await summary(sibling, {**bearer, **browser_cookie(client, settings)})
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
