"""Bugs the soak found, each shrunk to the smallest test that shows it.

Each was a strict xfail until its fix landed; they pass now and guard the fix.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from models import Order
from sandbox.embedded import asyncpg_dsn
from soak.invariants import no_line_bought_and_still_in_cart
from tests.factories import make_line, make_product, make_shop, make_user
from tests.orders.factories import checkout_id, place_order
from tests.shopper import add, login, post_form


async def _terminate_backends(database_url: str) -> int:
    """What the soak's fault does: end every other connection to the test database."""
    from sqlalchemy.engine import make_url

    connection = await asyncpg.connect(
        **asyncpg_dsn(database_url, make_url(database_url).database or "")
    )
    try:
        killed = await connection.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await connection.close()
    return int(killed or 0)


async def test_cart_page_after_postgres_drops_connections_is_not_a_500(
    app: Quart, client: Client, db: AsyncSession, engine: AsyncEngine, settings: Any
) -> None:
    _, market = await make_shop(db)
    product = await make_product(db, market)
    assert (await add(client, product.id, 2)).status_code == 303
    assert (await client.get("/cart/")).status_code == 200  # the pool holds a live connection
    await db.close()
    assert await _terminate_backends(settings.database_url) >= 1
    await engine.dispose()  # the tests' own pool: its connections died too
    try:
        statuses = [(await client.get("/cart/")).status_code for _ in range(3)]
    finally:
        await app.extensions["db_engine"].dispose()
    # A read is retried on a fresh connection (200), or at worst refused with 503.
    assert all(status in (200, 503) for status in statuses), statuses
    assert statuses[-1] == 200, statuses


async def _soak_invariant(database_url: str, check: Any) -> Any:
    """Run one of the soak's end-of-run checks on the test database."""
    from sqlalchemy.engine import make_url

    connection = await asyncpg.connect(
        **asyncpg_dsn(database_url, make_url(database_url).database or "")
    )
    try:
        return await check(connection)
    finally:
        await connection.close()


async def test_an_order_paid_before_sign_in_is_not_taken_for_a_line_left_in_the_cart(
    client: Client, db: AsyncSession, settings: Any, sandbox_control: Any
) -> None:
    """Soak 2026-12-02: orders 432 and 509 "bought product 3, line 1030 still holds 6".

    The shopper signed out, bought as an anonymous session (clearing that session's
    line), then signed in: the merge handed the paid orders to the user, whose older
    line of the same product was never part of them. Nothing was wrong with the cart;
    the check read the order's owner now, not the cart it bought from.
    """
    await sandbox_control.reset()
    user = await make_user(db, "ada@example.coop")
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await make_line(db, product, quantity=6, user_id=user.id)
    await add(client, product.id, 1)
    assert (await post_form(client, "/cart/checkout/")).status_code == 303
    order = await db.scalar(select(Order))
    assert order is not None
    await sandbox_control.pay(await checkout_id(db, order))
    await login(client, user.email)
    assert (await client.get("/cart/")).status_code == 200
    owner = await db.scalar(
        select(Order.user_id).where(Order.id == order.id).execution_options(populate_existing=True)
    )
    assert owner == user.id  # the merge claimed the paid order

    result = await _soak_invariant(settings.database_url, no_line_bought_and_still_in_cart)

    assert result.checked == 1
    assert result.violations == []


async def test_the_cart_line_check_passes_a_claimed_unpaid_order_that_left_the_users_own_line(
    client: Client, db: AsyncSession, settings: Any, sandbox_control: Any
) -> None:
    """Claimed unpaid and paid after: the user's own line (that the merge did not add
    to) stays in the cart untouched, and that is right."""
    await sandbox_control.reset()
    user = await make_user(db, "ada@example.coop")
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await make_line(db, product, quantity=3, user_id=user.id)
    await add(client, product.id, 2)
    assert (await post_form(client, "/cart/checkout/")).status_code == 303
    order = await db.scalar(select(Order))
    assert order is not None
    await post_form(client, f"/cart/remove/{product.id}/")
    await login(client, user.email)
    assert (await client.get("/cart/")).status_code == 200
    await sandbox_control.pay(await checkout_id(db, order))

    result = await _soak_invariant(settings.database_url, no_line_bought_and_still_in_cart)

    assert (result.checked, result.violations) == (1, [])


async def test_the_cart_line_check_still_finds_a_line_a_payment_left_before_a_sign_in_moved_it(
    client: Client, db: AsyncSession, settings: Any, sandbox_control: Any
) -> None:
    """The check is exact both ways: a line the payment should have taken out of the
    anonymous cart, and that the merge then moved to the user, is reported."""
    await sandbox_control.reset()
    user = await make_user(db, "ada@example.coop")
    _, market = await make_shop(db)
    product = await make_product(db, market)
    await add(client, product.id, 1)
    assert (await post_form(client, "/cart/checkout/")).status_code == 303
    order = await db.scalar(select(Order))
    assert order is not None
    await sandbox_control.pay(await checkout_id(db, order))
    # As if the payment had missed the line: back in the cart, unchanged since before it.
    await db.execute(
        text(
            "UPDATE cart_items SET deleted_at = NULL, "
            "  updated_at = (SELECT paid_at FROM orders WHERE id = :id) - interval '1 second'"
        ),
        {"id": order.id},
    )
    await db.commit()
    await login(client, user.email)
    assert (await client.get("/cart/")).status_code == 200

    result = await _soak_invariant(settings.database_url, no_line_bought_and_still_in_cart)

    assert len(result.violations) == 1
    assert "from the anonymous cart" in result.violations[0]
    assert "until a sign-in moved it" in result.violations[0]


@pytest.mark.parametrize("settle", [0.2, 0.0], ids=["closed", "closing"])
async def test_a_write_whose_commit_finds_the_connection_gone_is_a_503_not_a_500(
    app: Quart, client: Client, db: AsyncSession, settings: Any, settle: float
) -> None:
    """Soak 2026-12-03: three 500s (`POST /cart/add/…`, `POST /cart/checkout/`, `GET
    /orders/…`) while PostgreSQL connections were terminated. The handler had answered;
    the request's own COMMIT then met the dead connection, and that error escaped the
    error handlers. Here the backend is ended between the answer and the commit, and the
    commit runs once the connection is closed, or while asyncpg is still finding out."""
    from quart import g, request

    _, market = await make_shop(db)
    product = await make_product(db, market)
    assert (await add(client, product.id, 1)).status_code == 303

    async def end_the_requests_connection(response: Any) -> Any:
        # The line write's own connection (`services.db.db_write`), else the session's.
        write, session = g.get("db_write"), g.get("db")
        if request.method != "POST" or response.status_code >= 400:
            return response
        if write is not None:
            pid = write.driver_connection.get_server_pid()
        elif session is not None:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        else:
            return response
        async with db.bind.connect() as other:  # type: ignore[union-attr]
            await other.execute(text(f"SELECT pg_terminate_backend({int(pid)})"))
        await asyncio.sleep(settle)
        return response

    # After-request hooks run last-registered first: this one before the commit.
    hooks = app.after_request_funcs.setdefault(None, [])
    hooks.append(end_the_requests_connection)
    try:
        response = await add(client, product.id, 2)
    finally:
        hooks.remove(end_the_requests_connection)
        await app.extensions["db_engine"].dispose()

    assert response.status_code == 503, await response.get_data(as_text=True)
    assert response.headers["Retry-After"]
    assert "Content-Security-Policy" in response.headers
    page = await response.get_data(as_text=True)
    assert "try again" in page.lower()
    assert "in your cart" not in page  # the change that did not commit is not announced
    # The change did not land, and the next request works on a fresh connection.
    await db.rollback()
    quantity = await db.scalar(
        text("SELECT sum(quantity) FROM cart_items WHERE deleted_at IS NULL")
    )
    assert quantity == 1
    follow = await client.get("/cart/")
    assert follow.status_code == 200
    assert "in your cart" not in await follow.get_data(as_text=True)


async def test_a_page_whose_badge_lost_the_connection_is_a_503_not_a_500(
    app: Quart, client: Client, db: AsyncSession, sandbox_control: Any
) -> None:
    """Soak 2026-12-03: the badge's context processor carries on without a badge when
    the database is the problem, but the request's transaction was gone with the
    connection, and the commit after it failed (`PendingRollbackError`) as a 500. Here
    the return page's connection is ended just before the badge's query."""
    from quart import g

    await sandbox_control.reset()
    placed = await place_order(client, db)

    async def end_the_requests_connection() -> dict[str, Any]:
        session = g.get("db")
        if session is not None:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with db.bind.connect() as other:  # type: ignore[union-attr]
                await other.execute(text(f"SELECT pg_terminate_backend({int(pid)})"))
            await asyncio.sleep(0.2)
        return {}

    processors = app.template_context_processors.setdefault(None, [])
    processors.insert(0, end_the_requests_connection)  # before the badge's
    try:
        response = await client.get(f"/cart/checkout/return/{placed.order.id}/")
    finally:
        processors.remove(end_the_requests_connection)
        await app.extensions["db_engine"].dispose()

    assert response.status_code == 503, await response.get_data(as_text=True)
    assert "try again" in (await response.get_data(as_text=True)).lower()
    assert (await client.get(f"/cart/checkout/return/{placed.order.id}/")).status_code == 200
