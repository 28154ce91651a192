"""The summary API, fed arbitrary queries, tokens and cookies (Hypothesis): always JSON,
never a 5xx, and nothing changes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from quart import Quart
from quart.typing import TestClientProtocol as Client
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession

from tests.cart.test_forms_property import NASTY, TEXT, snapshot
from tests.factories import make_product, make_shop
from tests.shopper import add

VALUES = st.one_of(TEXT, NASTY)
ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120)


@pytest.fixture
async def sibling(settings: Any, db: AsyncSession) -> AsyncIterator[tuple[Client, str, str]]:
    """A sibling app's client, the bearer token, and a real shopper's session cookie."""
    from app import create_app

    app: Quart = create_app(
        replace(settings, rate_limits=replace(settings.rate_limits, enabled=False))
    )
    async with app.test_app():
        _, market = await make_shop(db, "farm")
        product = await make_product(db, market)
        shopper = app.test_client()
        assert (await add(shopper, product.id, 2)).status_code == 303
        assert shopper.cookie_jar is not None
        name = settings.session.cookie_name
        [cookie] = [c.value for c in shopper.cookie_jar if c.name == name]
        yield app.test_client(), settings.internal_api_token.reveal(), f"{name}={cookie}"


@given(
    query=st.dictionaries(st.one_of(st.just("page"), TEXT.filter(bool)), VALUES, max_size=3),
    auth=st.sampled_from(["good", "none", "junk"]),
    junk=ASCII,
    cookie=st.sampled_from(["real", "none", "junk"]),
)
@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
async def test_any_summary_request_answers_json_below_500_and_changes_nothing(
    sibling: tuple[Client, str, str],
    db: AsyncSession,
    redis: Redis,
    query: dict[str, str],
    auth: str,
    junk: str,
    cookie: str,
) -> None:
    client, token, real_cookie = sibling
    headers = {
        "good": {"Authorization": f"Bearer {token}"},
        "junk": {"Authorization": junk},
        "none": {},
    }[auth]
    if cookie != "none":
        headers["Cookie"] = real_cookie if cookie == "real" else f"coop_session={junk}"
    before = await snapshot(db, redis)
    response = await client.get("/internal/cart/summary", query_string=query, headers=headers)
    assert response.status_code < 500
    assert response.mimetype == "application/json"
    body = await response.get_json()
    if response.status_code == 200:
        assert set(body) >= {"count", "total", "currency"}
    else:
        assert body["message"]
    assert await snapshot(db, redis) == before
