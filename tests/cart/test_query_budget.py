"""The cart pages and the summary run a fixed number of SQL queries, whatever the cart holds."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from models import CartItem, Post, Product
from tests.factories import make_calendar, make_entry, make_market, make_page, make_user
from tests.shopper import add, csrf_token, login, page_text, post_form

# Measured, and kept on purpose: a change here is a change to every page's cost.
# The overview: lines and entries, each with whether its page takes payment itself (named
# before paying), and the navigation; the badge counts the lines and entries read. A page's
# cart: its lines and entries, which bring the page (and whether it takes payment itself),
# and the header (the badge summary of the whole cart with the navigation, in one query);
# the page is read on its own only when the cart holds nothing of it.
OVERVIEW_QUERIES = 3
PAGE_CART_QUERIES = 3
EMPTY_PAGE_CART_QUERIES = 4
SUMMARY_QUERIES = 1  # one query, also when scoped to a page
# The owner's lock (sent with the BEGIN), the add (product, market and currencies read,
# the line upserted when they allow it, in one statement); JSON: the summary.
ADD_QUERIES = 2
# The owner's lock, the line read and set in one statement; JSON: the summary.
UPDATE_QUERIES = 2


TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


@contextmanager
def counted_queries(app: Quart) -> Iterator[list[str]]:
    """The SQL statements the app runs inside the block: those SQLAlchemy sends, and
    those sent on the asyncpg connection directly (`services.direct_reads`), which
    asyncpg's query logger sees (it sees `BEGIN` and `COMMIT` too: not counted)."""
    statements: list[str] = []
    attached: set[int] = set()
    counting = True

    def count(*args: Any) -> None:
        statements.append(args[2])

    def count_direct(record: Any) -> None:
        # Stays attached to the connection after the block: counts only inside it.
        # A write's first statement may come with its BEGIN (`BEGIN; SELECT …`): counted.
        query = record.query.lstrip()
        if query.upper().startswith("BEGIN;"):
            query = query[len("BEGIN;") :].lstrip()
        if counting and query and not query.upper().startswith(TRANSACTION_CONTROL):
            statements.append(query)

    def attach(dbapi_connection: Any, *_: Any) -> None:
        driver = dbapi_connection.driver_connection
        if id(driver) not in attached:
            attached.add(id(driver))
            driver.add_query_logger(count_direct)

    engine = app.extensions["db_engine"].sync_engine
    event.listen(engine, "before_cursor_execute", count)
    event.listen(engine, "checkout", attach)
    try:
        yield statements
    finally:
        counting = False
        event.remove(engine, "before_cursor_execute", count)
        event.remove(engine, "checkout", attach)


async def fill_cart(
    client: Client,
    db: AsyncSession,
    *,
    name: str,
    pages: int,
    lines_per_page: int,
    entries: int,
) -> list[str]:
    """A shopper's cart of `pages × lines_per_page` lines and `entries` bookings; page slugs."""
    slugs = []
    products = []
    for n in range(pages):
        page = await make_page(db, f"{name}-{n}", nav_order=n)
        market = await make_market(db, page)
        slugs.append(page.slug)
        for m in range(lines_per_page):
            products.append(
                Product(
                    market_place_id=market.id,
                    slug=f"{name}-{n}-product-{m}",
                    title=f"{name} product {n}.{m}",
                    regular_price=Decimal("2.50"),
                    special_price=Decimal("2.00") if m % 2 else None,
                )
            )
    db.add_all(products)
    await db.commit()
    first, *rest = products
    await add(client, first.id)  # through the app, so the shopper has an identity
    owner = (
        await db.execute(
            text("SELECT user_id, session_id FROM cart_items WHERE product_id = :id"),
            {"id": first.id},
        )
    ).one()
    db.add_all(
        CartItem(
            product_id=product.id,
            market_place_id=product.market_place_id,
            quantity=n % 5 + 1,
            user_id=owner.user_id,
            session_id=owner.session_id,
        )
        for n, product in enumerate(rest)
    )
    await db.commit()
    for n in range(entries):
        page = await db.scalar(
            text("SELECT id FROM posts WHERE slug = :s"), {"s": slugs[n % pages]}
        )
        calendar = await make_calendar(db, await db.get_one(Post, page))
        await make_entry(db, calendar, user_id=owner.user_id, session_id=owner.session_id)
    await client.get("/cart/")  # shows (and so clears) the "added" message
    return slugs


async def queries_of(app: Quart, client: Client, path: str, **kwargs: Any) -> int:
    with counted_queries(app) as statements:
        response = await client.get(path, **kwargs)
    assert response.status_code == 200, await response.get_data(as_text=True)
    return len(statements)


@pytest.fixture
def shoppers(app: Quart) -> tuple[Client, Client]:
    """A shopper with one line, and one with fifty."""
    return app.test_client(), app.test_client()


async def _small_and_big(db: AsyncSession, shoppers: tuple[Client, Client]) -> list[str]:
    small, big = shoppers
    await fill_cart(small, db, name="small", pages=1, lines_per_page=1, entries=0)
    return await fill_cart(big, db, name="big", pages=5, lines_per_page=10, entries=10)


async def test_overview_runs_the_same_queries_for_one_line_and_fifty(
    app: Quart, db: AsyncSession, shoppers: tuple[Client, Client]
) -> None:
    await _small_and_big(db, shoppers)
    small, big = shoppers
    counts = [await queries_of(app, shopper, "/cart/") for shopper in shoppers]
    assert counts == [OVERVIEW_QUERIES, OVERVIEW_QUERIES]
    page = await (await big.get("/cart/")).get_data(as_text=True)
    assert page.count('data-testid="cart-line"') == 50
    assert page.count('data-testid="cart-entry"') == 10
    assert "small product 0.0" in await (await small.get("/cart/")).get_data(as_text=True)


async def test_page_cart_runs_the_same_queries_for_one_line_and_ten(
    app: Quart, db: AsyncSession, shoppers: tuple[Client, Client]
) -> None:
    await _small_and_big(db, shoppers)
    small, big = shoppers
    counts = [
        await queries_of(app, small, "/cart/small-0/"),
        await queries_of(app, big, "/cart/big-0/"),
    ]
    assert counts == [PAGE_CART_QUERIES, PAGE_CART_QUERIES]
    page = await (await big.get("/cart/big-0/")).get_data(as_text=True)
    assert page.count('data-testid="cart-line"') == 10


async def test_a_page_cart_holding_nothing_of_its_page_reads_the_page_on_its_own(
    app: Quart, db: AsyncSession, shoppers: tuple[Client, Client]
) -> None:
    await _small_and_big(db, shoppers)
    small, _ = shoppers
    assert await queries_of(app, small, "/cart/big-0/") == EMPTY_PAGE_CART_QUERIES
    page = await (await small.get("/cart/big-0/")).get_data(as_text=True)
    assert "Nothing from Big-0 is in your cart." in page
    assert (await small.get("/cart/no-such-page/")).status_code == 404


@pytest.mark.parametrize("scoped", [False, True], ids=["whole cart", "one page"])
async def test_summary_runs_one_query_for_one_line_and_fifty(
    scoped: bool,
    app: Quart,
    db: AsyncSession,
    shoppers: tuple[Client, Client],
    settings: Any,
) -> None:
    await _small_and_big(db, shoppers)
    bearer = {"Authorization": f"Bearer {settings.internal_api_token.reveal()}"}
    small, big = shoppers
    paths = [
        f"/internal/cart/summary{'?page=' + name + '-0' if scoped else ''}"
        for name in ("small", "big")
    ]
    counts = [
        await queries_of(app, small, paths[0], headers=bearer),
        await queries_of(app, big, paths[1], headers=bearer),
    ]
    assert counts == [SUMMARY_QUERIES, SUMMARY_QUERIES]
    body = await (await big.get(paths[1], headers=bearer)).get_json()
    lines_counted = 10 if scoped else 50
    assert body["product_count"] == 1 + sum(n % 5 + 1 for n in range(lines_counted - 1))


async def test_signed_in_overview_runs_the_same_queries_for_one_line_and_fifty(
    app: Quart, db: AsyncSession, shoppers: tuple[Client, Client]
) -> None:
    sizes = (("one", 1, 1), ("fifty", 5, 10))
    for shopper, (name, pages, lines_per_page) in zip(shoppers, sizes, strict=True):
        await login(shopper, (await make_user(db)).email)
        await shopper.get("/cart/")  # the first request after sign-in runs the merge
        await fill_cart(
            shopper, db, name=name, pages=pages, lines_per_page=lines_per_page, entries=pages
        )
    counts = [await queries_of(app, shopper, "/cart/") for shopper in shoppers]
    assert counts == [OVERVIEW_QUERIES, OVERVIEW_QUERIES]


async def _product_in_cart(db: AsyncSession, name: str) -> int:
    """The id of the first product of shopper `name`'s cart (as `fill_cart` made it)."""
    product_id = await db.scalar(
        text("SELECT id FROM products WHERE slug = :slug"), {"slug": f"{name}-0-product-0"}
    )
    assert isinstance(product_id, int)
    return product_id


@pytest.mark.parametrize("json", [True, False], ids=["JSON", "form"])
@pytest.mark.parametrize(
    ("path", "budget"), [("add", ADD_QUERIES), ("update", UPDATE_QUERIES)], ids=["add", "update"]
)
async def test_a_line_write_runs_the_same_queries_for_one_line_and_fifty(
    path: str,
    budget: int,
    json: bool,
    app: Quart,
    db: AsyncSession,
    shoppers: tuple[Client, Client],
) -> None:
    await _small_and_big(db, shoppers)
    counts = []
    for shopper, name in zip(shoppers, ("small", "big"), strict=True):
        form = {"quantity": 3, "csrf_token": await csrf_token(shopper)}
        product_id = await _product_in_cart(db, name)
        with counted_queries(app) as statements:
            response = await post_form(
                shopper, f"/cart/{path}/{product_id}/", form, json=json, token=False
            )
        assert response.status_code == (200 if json else 303), await page_text(response)
        counts.append(len(statements))
    expected = budget + SUMMARY_QUERIES if json else budget
    assert counts == [expected, expected]
