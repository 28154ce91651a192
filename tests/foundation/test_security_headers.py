"""Security headers on every answer, no caching of personal pages, no server banner.

Issue 11, case 6: no CSP, nosniff, frame-ancestors or Referrer-Policy anywhere, order
pages cacheable, `Server: hypercorn-h11` shown.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
import pytest
from quart.typing import TestClientProtocol as Client
from sqlalchemy.ext.asyncio import AsyncSession

from tests.orders.factories import place_order

EXPECTED = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/cart/", 200),
        ("GET", "/orders/", 200),
        ("GET", "/dev/login", 200),
        ("GET", "/cart/no-such-page/", 404),
        ("POST", "/cart/add/1/", 400),
        ("GET", "/internal/cart/summary", 401),
        ("GET", "/healthz", 200),
        ("GET", "/static/css/cart.css", 200),
    ],
)
async def test_every_answer_over_http_has_the_headers_and_no_server_banner(
    method: str, path: str, status: int, live_url: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.request(method, f"{live_url}{path}")
    assert response.status_code == status
    for name, value in EXPECTED.items():
        assert response.headers.get(name) == value, name
    assert "server" not in response.headers
    assert "strict-transport-security" not in response.headers  # cookies are not HTTPS-only


async def test_the_policy_has_no_unsafe_inline_or_eval(client: Client) -> None:
    policy = (await client.get("/cart/")).headers["Content-Security-Policy"]
    assert "unsafe" not in policy and "*" not in policy


async def test_cart_order_and_return_pages_are_never_stored_by_a_cache(
    client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    await sandbox_control.reset()
    order = (await place_order(client, db)).order
    for path in (
        "/cart/",
        "/orders/",
        f"/orders/{order.id}/",
        f"/cart/checkout/return/{order.id}/",
    ):
        response = await client.get(path)
        assert response.headers["Cache-Control"] == "private, no-store", path


async def test_static_files_keep_their_caching(client: Client) -> None:
    response = await client.get("/static/css/cart.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("Cache-Control", "")


async def test_hsts_is_sent_when_the_cookies_are_https_only(settings: Any) -> None:
    from app import create_app

    secure = replace(settings, session=replace(settings.session, cookie_secure=True))
    async with create_app(secure).test_app() as test_app:
        response = await test_app.test_client().get("/cart/")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")


def test_the_real_servers_are_told_to_send_no_banner() -> None:
    import tomllib
    from pathlib import Path

    config = Path(__file__).resolve().parents[2] / "config" / "hypercorn.toml"
    assert tomllib.loads(config.read_text())["include_server_header"] is False
