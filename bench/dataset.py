"""A realistic data set for `bench.run`: thousands of shoppers with carts of 1–30 lines.

Written straight into PostgreSQL (`COPY`) and Redis (pipelined `SET`s), so ten
thousand shoppers take seconds rather than the minutes the app's forms would: each
shopper gets a session in Redis in the stored format the app reads (signed-in
shoppers hold `uid`, anonymous ones `cart_sid`, both a WTForms CSRF secret), the
signed session cookie and a CSRF token valid for it, and cart lines spread over
three of the catalogue's pages. Every tenth-line shopper also holds a pending
booking, and some signed-in shoppers have past orders (for the order pages).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from itsdangerous import Signer

from bench.common import SESSION_COOKIE, Catalogue, SeedProduct, database_session, seed_catalogue

MAX_LINES = 30
PAGES_PER_CART = 3


@dataclass(frozen=True)
class Line:
    product_id: int
    market_place_id: int
    quantity: int


@dataclass
class BenchShopper:
    """One shopper of the data set, as a load generator needs it."""

    cookie: str  # the signed session cookie's value
    token: str  # a CSRF token for the shopper's anchor
    anchor_cookie: str  # the signed anchor cookie (name and value) the token is bound to
    lines: list[Line]
    page_slug: str  # the page holding most of the cart (page-scoped requests)
    user_id: int | None
    order_ids: list[int] = field(default_factory=list)

    @property
    def cookie_header(self) -> str:
        return f"{SESSION_COOKIE}={self.cookie}; {self.anchor_cookie}"


@dataclass
class DataSet:
    catalogue: Catalogue
    shoppers: list[BenchShopper]
    session_keys: list[str]

    def with_lines(self, count: int) -> list[BenchShopper]:
        """The shoppers whose cart holds exactly `count` lines."""
        return [shopper for shopper in self.shoppers if len(shopper.lines) == count]

    def with_orders(self) -> list[BenchShopper]:
        return [shopper for shopper in self.shoppers if shopper.order_ids]


def _anonymous_id(sid: str) -> str:
    # The same derivation as bp/cart/services/identity.py, so the data looks like the app's.
    digest = hashlib.sha256(f"cart-anonymous:{sid}".encode()).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode("ascii")


def _anchor_and_token(secret_key: str) -> tuple[str, str]:
    """A browser anchor cookie (the secure name the bench's HTTPS settings give it) and a
    CSRF token bound to it, as the app's pages would have set and rendered them."""
    from itsdangerous import Signer

    from services.csrf import token_for_anchor
    from services.sessions import ANCHOR_COOKIE, RedisSessionInterface

    anchor = secrets.token_urlsafe(32)
    signed = Signer(secret_key, salt=RedisSessionInterface.anchor_salt).sign(anchor)
    return f"__Host-{ANCHOR_COOKIE}={signed.decode('ascii')}", token_for_anchor(secret_key, anchor)


def _cart(n: int, catalogue: Catalogue) -> tuple[list[Line], str]:
    """Shopper n's lines, 1 to 30, round-robin over three consecutive pages."""
    count = n % MAX_LINES + 1
    slugs = catalogue.page_slugs
    first = n % len(slugs)
    pages = [slugs[(first + k) % len(slugs)] for k in range(min(PAGES_PER_CART, len(slugs)))]
    per_page = {slug: catalogue.products_of(slug) for slug in pages}
    lines = []
    for k in range(count):
        products: list[SeedProduct] = per_page[pages[k % len(pages)]]
        product = products[(n + k // len(pages)) % len(products)]
        lines.append(Line(product.id, product.market_place_id, k % 3 + 1))
    return lines, pages[0]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def measured_dataset(setup: Any, settings: Any, shoppers: int) -> DataSet:
    """The data set `bench.run` and `bench.profile` measure on, for the app's `settings`."""
    return await build_dataset(
        setup.database_url,
        setup.database_name,
        setup.redis_url,
        secret_key=settings.secret_key.reveal(),
        session_prefix=settings.session.redis_prefix,
        session_ttl=3600,
        shoppers=shoppers,
        shoppers_with_orders=60,
    )


async def build_dataset(
    database_url: str,
    database_name: str,
    redis_url: str,
    *,
    secret_key: str,
    session_prefix: str,
    session_ttl: int,
    shoppers: int,
    signed_in_every: int = 5,
    shoppers_with_orders: int = 100,
    orders_each: int = 5,
) -> DataSet:
    """Catalogue, users, carts, bookings, orders and sessions for `shoppers` shoppers."""
    from bench.common import asyncpg_dsn
    from bench.queries import add_orders
    from services.redis_client import create_redis

    async with database_session(database_url) as db:
        catalogue = await seed_catalogue(db, pages=6, products_per_page=MAX_LINES)
    connection = await asyncpg.connect(**asyncpg_dsn(database_url, database_name))
    try:
        signed = shoppers // signed_in_every
        user_ids = [
            row["id"]
            for row in await connection.fetch(
                "INSERT INTO users (email) SELECT 'shopper-' || n || '@bench.example' "
                "FROM generate_series(1, $1) AS n RETURNING id",
                signed,
            )
        ]
        signer = Signer(secret_key, salt="coop-session")
        people: list[BenchShopper] = []
        sessions: dict[str, str] = {}
        line_rows: list[tuple[Any, ...]] = []
        entry_rows: list[tuple[Any, ...]] = []
        start = datetime.now(UTC) + timedelta(days=10)
        for n in range(shoppers):
            sid = secrets.token_urlsafe(32)
            user_id = user_ids[n // signed_in_every] if n % signed_in_every == 0 else None
            data: dict[str, Any] = (
                {"uid": user_id} if user_id is not None else {"cart_sid": _anonymous_id(sid)}
            )
            anchor_cookie, token = _anchor_and_token(secret_key)
            lines, page_slug = _cart(n, catalogue)
            owner = (user_id, None if user_id is not None else data["cart_sid"])
            line_rows += [
                (*owner, line.product_id, line.market_place_id, line.quantity) for line in lines
            ]
            if len(lines) % 10 == 0:
                entry_rows.append(
                    (
                        catalogue.calendar_ids[page_slug],
                        f"Workshop for shopper {n}",
                        start + timedelta(hours=n),
                        start + timedelta(hours=n + 2),
                        Decimal("12.50"),
                        "pending",
                        *owner,
                    )
                )
            sessions[session_prefix + sid] = json.dumps(data, separators=(",", ":"))
            cookie = signer.sign(sid).decode("ascii")
            people.append(BenchShopper(cookie, token, anchor_cookie, lines, page_slug, user_id))
        await connection.copy_records_to_table(
            "cart_items",
            records=line_rows,
            columns=["user_id", "session_id", "product_id", "market_place_id", "quantity"],
        )
        await connection.copy_records_to_table(
            "calendar_entries",
            records=entry_rows,
            columns=[
                *("calendar_id", "name", "start_at", "end_at", "cost", "state"),
                *("user_id", "session_id"),
            ],
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()

    # Past orders for some signed-in shoppers, built like bench.queries builds them.
    with_users = [shopper for shopper in people if shopper.user_id is not None]
    async with database_session(database_url) as db:
        by_id = {product.id: product for product in catalogue.products}
        for shopper in with_users[:shoppers_with_orders]:
            bought = [by_id[line.product_id] for line in shopper.lines]
            shopper.order_ids = await add_orders(
                db,
                {"user_id": shopper.user_id, "session_id": None},
                bought,
                catalogue.calendar_ids[shopper.page_slug],
                orders_each,
            )

    redis = create_redis(redis_url)
    try:
        for chunk in _chunks(list(sessions.items()), 1000):
            async with redis.pipeline(transaction=False) as pipe:
                for key, value in chunk:
                    pipe.set(key, value, ex=session_ttl)
                await pipe.execute()
    finally:
        await redis.aclose()
    return DataSet(catalogue, people, list(sessions))
