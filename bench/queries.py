"""SQL queries per request, for carts of 1, 10 and 50 lines (and 1 or 20 orders).

    .venv/bin/python -m bench.queries

Runs the app in-process (`app.test_app()` and its test client) on a fresh bench
database and counts, per request, the statements SQLAlchemy sends
(`before_cursor_execute` on the app's engine) and the round trips to PostgreSQL
(those statements plus the transaction's BEGIN/COMMIT and the pool's pre-ping, seen
through asyncpg's query logger, which also sees the statements the app sends on the
asyncpg connection directly: those count as statements). Each request is sent once
to warm up and then once counted. The counts must not grow with the cart: a row
that grows fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession

from bench.common import (
    RUN_ID,
    BenchSetup,
    Catalogue,
    SeedProduct,
    bench_environment,
    csrf_token_in,
    database_session,
    describe_machine,
    forget_redis_keys,
    seed_catalogue,
)

LINE_COUNTS = (1, 10, 50)
ORDER_COUNTS = (1, 20)
PAGES = 5
PRODUCTS_PER_PAGE = 12
JSON = {"Accept": "application/json"}


class QueryCounter:
    """Counts what the app's engine sends to PostgreSQL while `counting()` is open."""

    def __init__(self, engine: Engine) -> None:
        self.statements: list[str] | None = None
        self.protocol: list[str] | None = None
        self._attached: set[int] = set()
        event.listen(engine, "before_cursor_execute", self._on_statement)
        event.listen(engine, "connect", self._attach)
        event.listen(engine, "checkout", self._attach)

    def _on_statement(self, *args: Any) -> None:
        if self.statements is not None:
            self.statements.append(args[2])

    def _attach(self, dbapi_connection: Any, *_: Any) -> None:
        # asyncpg logs what it sends outside prepared statements: BEGIN, COMMIT,
        # ROLLBACK and the pre-ping's `;`, which SQLAlchemy's cursor events never see.
        driver = dbapi_connection.driver_connection
        if id(driver) not in self._attached:
            self._attached.add(id(driver))
            driver.add_query_logger(self._on_protocol)

    def _on_protocol(self, record: Any) -> None:
        if self.protocol is not None:
            self.protocol.append(record.query)

    @contextmanager
    def counting(self) -> Iterator[Count]:
        self.statements, self.protocol = [], []
        count = Count()
        try:
            yield count
        finally:
            # What asyncpg sent that is not transaction control is a direct read
            # (`services.direct_reads`): a statement like SQLAlchemy's.
            direct = sum(1 for query in self.protocol if not _is_control(query))
            count.statements = len(self.statements) + direct
            count.extra = len(self.protocol) - direct
            self.statements = self.protocol = None


def _is_control(query: str) -> bool:
    # A write's first statement may come with its BEGIN (`BEGIN; SELECT …`, one round
    # trip): that counts as the statement.
    text = query.strip()
    if text.upper().startswith("BEGIN;"):
        text = text[len("BEGIN;") :].strip()
        if text:
            return False
    word = text.rstrip(";").split(" ", 1)[0].upper()
    return word in ("BEGIN", "COMMIT", "ROLLBACK", "")


@dataclass
class Count:
    statements: int = 0
    extra: int = 0

    @property
    def round_trips(self) -> int:
        return self.statements + self.extra

    def __str__(self) -> str:
        return f"{self.statements} / {self.round_trips}"


@dataclass
class Shopper:
    """A test client with a cart, its CSRF token and what it holds."""

    client: Client
    token: str
    products: list[SeedProduct]
    user_id: int | None
    order_ids: list[int]


# --- building shoppers ---------------------------------------------------------------


async def _owner_of_newest_line(db: AsyncSession, product_id: int) -> tuple[int | None, str | None]:
    from models import CartItem

    row = (
        await db.execute(
            select(CartItem.user_id, CartItem.session_id)
            .where(CartItem.product_id == product_id)
            .order_by(CartItem.id.desc())
            .limit(1)
        )
    ).one()
    return row.user_id, row.session_id


async def add_orders(
    db: AsyncSession,
    owner: dict[str, Any],
    products: list[SeedProduct],
    calendar_id: int,
    count: int,
) -> list[int]:
    """`count` orders of the owner, each holding every product and one booking."""
    from models import CalendarEntry, Order, OrderItem
    from services.events import emit_event, order_event_payload

    ids = []
    for n in range(count):
        created = datetime.now(UTC) - timedelta(hours=count - n)
        items = [
            OrderItem(
                product_id=product.id,
                product_title=product.title,
                product_slug=f"product-{product.id}",
                market_place_id=product.market_place_id,
                quantity=m % 3 + 1,
                unit_price=product.price,
                currency="GBP",
                line_total=product.price * (m % 3 + 1),
            )
            for m, product in enumerate(products)
        ]
        paid = n % 2 == 0
        order = Order(
            **owner,
            status="pending",
            currency="GBP",
            total_amount=sum((item.line_total for item in items), Decimal("0.00")),
            description=f"Bench order {n}",
            cart_fingerprint=secrets.token_hex(16),
            created_at=created,
            items=items,
        )
        db.add(order)
        await db.flush()
        start = created + timedelta(days=7)
        entry = CalendarEntry(
            calendar_id=calendar_id,
            name=f"Bench workshop {n}",
            start_at=start,
            end_at=start + timedelta(hours=2),
            cost=Decimal("10.00"),
            state="provisional" if paid else "ordered",
            order_id=order.id,
            **owner,
        )
        db.add(entry)
        await db.flush()
        await emit_event(
            db,
            "order.created",
            order_event_payload(order, entry_ids=[entry.id]),
            aggregate=("order", order.id),
        )
        if paid:  # every other order was paid: a second event in its history
            order.status, order.paid_at = "paid", created + timedelta(minutes=5)
            await emit_event(
                db,
                "order.paid",
                order_event_payload(order, entry_ids=[entry.id]),
                aggregate=("order", order.id),
            )
        ids.append(order.id)
    await db.commit()
    return ids


async def new_shopper(
    app: Quart,
    db: AsyncSession,
    catalogue: Catalogue,
    *,
    lines: int,
    signed_in: bool,
    orders: int = 0,
) -> Shopper:
    """A shopper whose cart holds `lines` lines over the pages and lines/5 bookings."""
    from models import CalendarEntry, CartItem, User

    client = app.test_client()
    token = csrf_token_in(await (await client.get("/dev/login")).get_data(as_text=True))
    user_id = None
    if signed_in:
        user = User(email=f"bench-{secrets.token_hex(6)}@example.coop")
        db.add(user)
        await db.commit()
        user_id = user.id
        response = await client.post("/dev/login", form={"email": user.email, "csrf_token": token})
        assert response.status_code == 303, response.status_code
    products = catalogue.spread(lines)
    first, *rest = products
    # The first line goes through the app, so an anonymous shopper gets an identity.
    response = await client.post(
        f"/cart/add/{first.id}/", form={"csrf_token": token, "quantity": "1"}, headers=JSON
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    owner_user, owner_session = await _owner_of_newest_line(db, first.id)
    owner: dict[str, Any] = {"user_id": owner_user, "session_id": owner_session}
    db.add_all(
        CartItem(
            product_id=product.id,
            market_place_id=product.market_place_id,
            quantity=n % 4 + 1,
            **owner,
        )
        for n, product in enumerate(rest)
    )
    for n in range(lines // 5):
        slug = catalogue.page_slugs[n % len(catalogue.page_slugs)]
        start = datetime.now(UTC) + timedelta(days=n + 3)
        db.add(
            CalendarEntry(
                calendar_id=catalogue.calendar_ids[slug],
                name=f"Bench class {n}",
                start_at=start,
                end_at=start + timedelta(hours=1),
                cost=Decimal("12.50"),
                state="pending",
                **owner,
            )
        )
    await db.commit()
    order_ids = await add_orders(
        db, owner, products, catalogue.calendar_ids[catalogue.page_slugs[0]], orders
    )
    await client.get("/cart/")  # shows (and so clears) the "signed in" message
    return Shopper(client, token, products, user_id, order_ids)


# --- what is measured ----------------------------------------------------------------

Request = Callable[[Shopper], Awaitable[Any]]


@dataclass(frozen=True)
class Route:
    label: str
    send: Request
    who: str  # "anonymous", "signed in", or "signed in, N orders"


def _routes(catalogue: Catalogue, bearer: dict[str, str]) -> list[Route]:
    page = catalogue.page_slugs[0]

    def change(path: str, quantity: str, *, json: bool) -> Request:
        def send(shopper: Shopper) -> Awaitable[Any]:
            return shopper.client.post(
                f"/cart/{path}/{shopper.products[0].id}/",
                form={"csrf_token": shopper.token, "quantity": quantity},
                headers=JSON if json else {"Accept": "text/html"},
            )

        return send

    def get(path: Callable[[Shopper], str], headers: dict[str, str] | None = None) -> Request:
        return lambda shopper: shopper.client.get(path(shopper), headers=headers or {})

    routes = []
    for who in ("anonymous", "signed in"):
        routes += [
            Route("GET /cart/", get(lambda _: "/cart/"), who),
            Route(f"GET /cart/{page}/", get(lambda _: f"/cart/{page}/"), who),
            Route(
                "GET /internal/cart/summary", get(lambda _: "/internal/cart/summary", bearer), who
            ),
            Route(
                f"GET /internal/cart/summary?page={page}",
                get(lambda _: f"/internal/cart/summary?page={page}", bearer),
                who,
            ),
            Route("POST /cart/add/<id>/ (JSON)", change("add", "1", json=True), who),
            Route("POST /cart/add/<id>/ (form)", change("add", "1", json=False), who),
            Route("POST /cart/update/<id>/ (JSON)", change("update", "2", json=True), who),
            Route("POST /cart/update/<id>/ (form)", change("update", "2", json=False), who),
        ]
    for orders in ORDER_COUNTS:
        who = f"signed in, {orders} order{'s' * (orders > 1)}"
        routes += [
            Route("GET /orders/", get(lambda _: "/orders/"), who),
            Route("GET /orders/<id>/", get(lambda s: f"/orders/{s.order_ids[-1]}/"), who),
        ]
    return routes


async def _measure(counter: QueryCounter, route: Route, shopper: Shopper) -> Count:
    await route.send(shopper)  # warm: pooled connection, prepared statements
    with counter.counting() as count:
        response = await route.send(shopper)
    if response.status_code >= 400:
        body = await response.get_data(as_text=True)
        raise RuntimeError(f"{route.label} ({route.who}): {response.status_code} {body[:300]}")
    return count


async def _visitor_without_cart(app: Quart, counter: QueryCounter, bearer: dict[str, str]) -> Count:
    """What the summary costs for a visitor who never put anything in a cart."""
    client = app.test_client()
    await client.get("/internal/cart/summary", headers=bearer)
    with counter.counting() as count:
        response = await client.get("/internal/cart/summary", headers=bearer)
    assert response.status_code == 200
    return count


def _print_table(rows: list[tuple[Route, list[Count]]], floor: Count) -> list[str]:
    head = ["request", "shopper", *(f"{n} line{'s' * (n > 1)}" for n in LINE_COUNTS), "grows?"]
    body = []
    grows = []
    for route, counts in rows:
        statements = {count.statements for count in counts}
        trips = {count.round_trips for count in counts}
        verdict = "no" if len(statements) == 1 and len(trips) == 1 else "YES"
        if verdict == "YES":
            grows.append(f"{route.label} ({route.who})")
        body.append([route.label, route.who, *(str(count) for count in counts), verdict])
    body.append(["GET /internal/cart/summary", "visitor, no cart", str(floor), "", "", "-"])
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    for n, row in enumerate([head, *body]):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))
    return grows


async def run(setup: BenchSetup) -> int:
    from app import create_app
    from config import load_settings

    base = load_settings()
    settings = replace(base, session=replace(base.session, redis_prefix=f"bench:{RUN_ID}:session:"))
    bearer = {"Authorization": f"Bearer {settings.internal_api_token.reveal()}"}
    app = create_app(settings)
    try:
        async with app.test_app():
            counter = QueryCounter(app.extensions["db_engine"].sync_engine)
            async with database_session(setup.database_url) as db:
                catalogue = await seed_catalogue(
                    db, pages=PAGES, products_per_page=PRODUCTS_PER_PAGE
                )
                anonymous = [
                    await new_shopper(app, db, catalogue, lines=n, signed_in=False)
                    for n in LINE_COUNTS
                ]
                with_orders = {
                    orders: [
                        await new_shopper(
                            app, db, catalogue, lines=n, signed_in=True, orders=orders
                        )
                        for n in LINE_COUNTS
                    ]
                    for orders in ORDER_COUNTS
                }
            shoppers = {
                "anonymous": anonymous,
                "signed in": with_orders[ORDER_COUNTS[0]],
                **{
                    f"signed in, {orders} order{'s' * (orders > 1)}": group
                    for orders, group in with_orders.items()
                },
            }
            rows = []
            for route in _routes(catalogue, bearer):
                counts = [await _measure(counter, route, s) for s in shoppers[route.who]]
                rows.append((route, counts))
            floor = await _visitor_without_cart(app, counter, bearer)
            for line in await describe_machine(setup):
                print(line)
            print(
                f"cells: SQL statements / round trips to PostgreSQL per request "
                f"(statements + BEGIN/COMMIT + pool pre-ping); carts spread over {PAGES} pages "
                "with lines/5 bookings; orders hold the cart's lines as items"
            )
            print()
            grows = _print_table(rows, floor)
    finally:
        await forget_redis_keys(setup.redis_url, patterns=[f"bench:{RUN_ID}:*"])
    if grows:
        print(f"\nFAIL: the query count grows with the cart for: {'; '.join(grows)}")
        return 1
    print("\nOK: no count grows with the number of lines or orders")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    with bench_environment() as setup:
        # The relay would poll the outbox on the same engine and be counted.
        os.environ["EVENTS_RELAY_IN_APP"] = "false"
        return asyncio.run(run(setup))


if __name__ == "__main__":
    sys.exit(main())
