"""Every form, fed arbitrary values and bytes (Hypothesis): never a 5xx, and a refused
request changes nothing, in the database or in Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import REDIS_PREFIX
from tests.factories import make_calendar, make_entry, make_product, make_shop, make_user
from tests.shopper import add, csrf_token

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=200)
NASTY = st.sampled_from(
    [
        "\x00",
        "a\x00b",
        "²",
        "١٢",
        "1_0",
        "-1",
        "0",
        "1",
        "99",
        "100",
        "1e9",
        " 3 ",
        "\ufffd",
        "9" * 5000,
        "/cart/",
        "//evil.example",
        "%00",
        "\r\nSet-Cookie: x=1",
        "null",
        "[]",
    ]
)
VALUES = st.one_of(TEXT, NASTY, st.integers(-(2**70), 2**70).map(str))
FIELD_NAMES = st.sampled_from(
    ["quantity", "market_place", "next", "idempotency_key", "email", "csrf_token"]
)
FIELDS = st.dictionaries(st.one_of(FIELD_NAMES, TEXT.filter(bool)), VALUES, max_size=6)
TOKENS = st.sampled_from(["valid", "missing", "garbage"])
CONTENT_TYPES = st.sampled_from(
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=XyZ",
        "multipart/form-data",
        "application/json",
        "text/plain",
    ]
)
EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass(frozen=True)
class Shop:
    client: Client
    token: str
    paths: list[str]


@pytest.fixture
async def unlimited(settings: Any) -> AsyncIterator[Quart]:
    """The app without rate limits, so every example reaches the form layer."""
    from app import create_app

    app = create_app(replace(settings, rate_limits=replace(settings.rate_limits, enabled=False)))
    async with app.test_app():
        yield app


@pytest.fixture
async def shop(unlimited: Quart, db: AsyncSession, sandbox_control: Any) -> Shop:
    """A shopper with a line, a booking and an unpaid order, and every form's address."""
    await sandbox_control.reset()
    page, market = await make_shop(db, "farm")
    product = await make_product(db, market, title="Eggs")
    client = unlimited.test_client()
    token = await csrf_token(client)
    assert (await add(client, product.id, 2, csrf_token=token)).status_code == 303
    session_id = await db.scalar(text("SELECT session_id FROM cart_items"))
    entry = await make_entry(db, await make_calendar(db, page), session_id=session_id)
    checkout = await client.post("/cart/checkout/", form={"csrf_token": token})
    assert checkout.status_code == 303
    order_id = await db.scalar(text("SELECT id FROM orders"))
    entry = await make_entry(db, await make_calendar(db, page), session_id=session_id)
    await make_user(db, "shopper@example.coop")
    paths = [
        f"/cart/add/{product.id}/",
        f"/cart/update/{product.id}/",
        f"/cart/remove/{product.id}/",
        f"/cart/entries/{entry.id}/remove/",
        "/cart/checkout/",
        "/cart/farm/checkout/",
        f"/orders/{order_id}/pay/",
        f"/orders/{order_id}/recheck/",
        f"/orders/{order_id}/cancel/",
        "/dev/login",
        "/dev/logout",
        "/dev/shop/book/no-such-slot/",
    ]
    return Shop(client, token, paths)


async def snapshot(db: AsyncSession, redis: Redis) -> list[Any]:
    """Cart lines, bookings, orders and every session in Redis, as they are now."""
    rows: list[Any] = []
    for query in (
        "SELECT id, user_id, session_id, product_id, quantity, updated_at, deleted_at "
        "FROM cart_items ORDER BY id",
        "SELECT id, user_id, session_id, state, order_id, updated_at, deleted_at "
        "FROM calendar_entries ORDER BY id",
        "SELECT id, user_id, session_id, status, updated_at FROM orders ORDER BY id",
    ):
        rows += [tuple(row) for row in await db.execute(text(query))]
    await db.rollback()
    keys = sorted([key async for key in redis.scan_iter(match=f"{REDIS_PREFIX}session:*")])
    rows += [(key, await redis.get(key)) for key in keys]
    return rows


async def _assert_refused_cleanly(
    response: Any, before: list[Any], db: AsyncSession, redis: Redis
) -> None:
    body = await response.get_data(as_text=True)
    assert response.status_code < 500, body[:500]
    if response.status_code >= 400:
        assert await snapshot(db, redis) == before


def _token(shop: Shop, kind: str) -> dict[str, str]:
    return {"valid": {"csrf_token": shop.token}, "garbage": {"csrf_token": "x.y.z"}}.get(kind, {})


@given(path=st.integers(0, 11), fields=FIELDS, token=TOKENS, json=st.booleans())
@EXAMPLES
async def test_any_form_values_never_fail_and_refusals_change_nothing(
    shop: Shop,
    db: AsyncSession,
    redis: Redis,
    path: int,
    fields: dict[str, str],
    token: str,
    json: bool,
) -> None:
    before = await snapshot(db, redis)
    form = {**fields, **_token(shop, token)}
    accept = "application/json" if json else "text/html"
    response = await shop.client.post(shop.paths[path], form=form, headers={"Accept": accept})
    await _assert_refused_cleanly(response, before, db, redis)


@given(path=st.integers(0, 11), body=st.binary(max_size=3000), content_type=CONTENT_TYPES)
@EXAMPLES
async def test_any_bytes_posted_to_a_form_never_fail_and_change_nothing(
    shop: Shop, db: AsyncSession, redis: Redis, path: int, body: bytes, content_type: str
) -> None:
    before = await snapshot(db, redis)
    response = await shop.client.post(
        shop.paths[path], data=body, headers={"Content-Type": content_type}
    )
    await _assert_refused_cleanly(response, before, db, redis)


@given(
    path=st.integers(0, 11),
    prefix=st.binary(max_size=300),
    token=st.booleans(),
)
@EXAMPLES
async def test_a_valid_token_with_arbitrary_bytes_around_it_never_fails(
    shop: Shop, db: AsyncSession, redis: Redis, path: int, prefix: bytes, token: bool
) -> None:
    before = await snapshot(db, redis)
    body = prefix + (f"&csrf_token={shop.token}&".encode() if token else b"") + prefix[::-1]
    response = await shop.client.post(
        shop.paths[path],
        data=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    await _assert_refused_cleanly(response, before, db, redis)


QUERY = st.dictionaries(
    st.one_of(TEXT.filter(bool), st.sampled_from(["check", "page"])), VALUES, max_size=4
)
PAGE_PATHS: list[Callable[[Shop], str]] = [
    lambda shop: "/cart/",
    lambda shop: "/cart/farm/",
    lambda shop: "/orders/",
    lambda shop: shop.paths[6].replace("pay/", ""),
    lambda shop: shop.paths[6].replace("/orders/", "/cart/checkout/return/").replace("pay/", ""),
]


@given(page=st.integers(0, len(PAGE_PATHS) - 1), query=QUERY)
@EXAMPLES
async def test_any_query_on_a_page_never_fails_and_changes_nothing(
    shop: Shop, db: AsyncSession, redis: Redis, page: int, query: dict[str, str]
) -> None:
    before = await snapshot(db, redis)
    response = await shop.client.get(PAGE_PATHS[page](shop), query_string=query)
    body = await response.get_data(as_text=True)
    assert response.status_code < 500, body[:500]
    if response.status_code >= 400:
        assert await snapshot(db, redis) == before
