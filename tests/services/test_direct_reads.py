"""Direct statements: a Core statement compiled once for asyncpg, run on the pool's
connections, or on a session's inside its transaction."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bp.cart.services.identity import Identity, lock_identity, lock_owner
from models import Product
from services.direct_reads import (
    DirectQuery,
    begin_with,
    execute,
    fetch_row,
    session_connection,
)
from tests.factories import make_market, make_page, make_product

PRICES = (
    select(func.count(Product.id).label("count"), func.sum(Product.regular_price).label("sum"))
    .where(Product.title.in_(["Eggs", "Milk"]), Product.market_place_id == bindparam("market"))
    .limit(1)
)


def test_a_direct_query_fixes_its_constants_and_expands_in_once() -> None:
    query = DirectQuery(PRICES, parameters=("market",))

    assert "IN ($" in query.sql and "POSTCOMPILE" not in query.sql
    arguments = query.arguments({"market": 7})
    assert sorted(map(str, arguments)) == ["1", "7", "Eggs", "Milk"]


def test_a_direct_query_refuses_to_run_without_its_parameters() -> None:
    query = DirectQuery(PRICES, parameters=("market",))

    with pytest.raises(KeyError, match="market"):
        query.arguments({})


async def test_a_direct_query_reads_what_the_orm_wrote(
    db: AsyncSession, engine: AsyncEngine
) -> None:
    market = await make_market(db, await make_page(db, "farm"))
    for title, price in (("Eggs", "2.50"), ("Milk", "1.25"), ("Jam", "4.00")):
        await make_product(db, market, title=title, price=price)
    query = DirectQuery(PRICES, parameters=("market",))

    raw = await engine.raw_connection()
    try:
        row = await fetch_row(raw.driver_connection, query, {"market": market.id})
    finally:
        raw.close()

    assert row is not None
    assert (row["count"], row["sum"]) == (2, Decimal("3.75"))


RENAME = DirectQuery(
    update(Product).where(Product.id == bindparam("id")).values(title=bindparam("title")),
    parameters=("id", "title"),
)


async def _title(db: AsyncSession, product_id: int) -> str | None:
    title = await db.scalar(
        select(Product.title)
        .where(Product.id == product_id)
        .execution_options(populate_existing=True)
    )
    return title


@pytest.mark.parametrize("commit", [True, False], ids=["committed", "rolled back"])
async def test_a_statement_on_the_session_connection_is_in_the_session_transaction(
    commit: bool, db: AsyncSession, sessions: Any
) -> None:
    product = await make_product(db, await make_market(db, await make_page(db, "farm")))
    async with sessions() as session:
        await lock_identity(session, Identity(session_id="rename-test"))  # begins it
        connection = await session_connection(session)
        await fetch_row(connection, RENAME, {"id": product.id, "title": "Renamed"})
        # Not committed yet: another connection still sees the old title.
        assert await _title(db, product.id) == product.title
        await (session.commit() if commit else session.rollback())
    assert await _title(db, product.id) == ("Renamed" if commit else product.title)


async def _owner_lock_is_free(db: AsyncSession, owner: Identity) -> bool:
    """Whether another transaction could take the owner's cart lock now."""
    taken = await db.scalar(
        text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"cart:{owner.key}"},
    )
    await db.rollback()  # gives it back at once
    return bool(taken)


async def test_a_lock_taken_on_the_session_connection_is_held_until_the_session_ends(
    db: AsyncSession, sessions: Any
) -> None:
    owner = Identity(session_id="lock-test")
    async with sessions() as session:
        await lock_identity(session, owner)
        await session_connection(session)  # a second call stays in the same transaction
        assert not await _owner_lock_is_free(db, owner)
        await session.commit()
    assert await _owner_lock_is_free(db, owner)


async def test_a_session_that_has_not_begun_gives_no_connection_to_write_on(
    sessions: Any,
) -> None:
    # A statement sent before the session's BEGIN would be committed on its own.
    async with sessions() as session:
        with pytest.raises(RuntimeError, match="has not begun"):
            await session_connection(session)


async def _locks_of(engine: AsyncEngine, raw: Any) -> bool:
    """Whether the connection `raw` holds an advisory lock (seen from another one)."""
    async with engine.connect() as other:
        held = await other.scalar(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = :pid"
            ),
            {"pid": raw.driver_connection.get_server_pid()},
        )
    return bool(held)


@pytest.mark.parametrize(
    "owner",
    [Identity(user_id=7), Identity(session_id="Zm9v_-bar"), Identity(session_id="it's; odd")],
    ids=["user", "anonymous", "a key that needs quoting"],
)
async def test_the_owner_lock_on_a_fresh_connection_begins_its_transaction(
    owner: Identity, db: AsyncSession, engine: AsyncEngine
) -> None:
    raw = await engine.raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    sent: list[str] = []
    driver.add_query_logger(lambda record: sent.append(record.query))
    try:
        await lock_owner(driver, owner)
        assert driver.is_in_transaction()
        # The lock of `lock_identity`'s key, held until the transaction ends.
        assert not await _owner_lock_is_free(db, owner)
        await lock_owner(driver, owner)  # again: the lock only, no BEGIN
        await driver.execute("COMMIT")
        assert await _owner_lock_is_free(db, owner)
    finally:
        raw.close()
    if owner.session_id == "it's; odd":
        assert sent[0] == "BEGIN" and "it's" not in " ".join(sent)  # sent as a parameter
    else:
        assert sent[0].startswith("BEGIN; SELECT pg_advisory_xact_lock(")  # one round trip
    assert not any(query.startswith("BEGIN") for query in sent[1:])


async def test_begin_with_refuses_a_connection_already_in_a_transaction(
    engine: AsyncEngine,
) -> None:
    raw = await engine.raw_connection()
    try:
        await begin_with(raw.driver_connection, "SELECT 1")
        with pytest.raises(RuntimeError, match="in a transaction already"):
            await begin_with(raw.driver_connection)
        assert await execute(raw.driver_connection, "ROLLBACK") == "ROLLBACK"
    finally:
        raw.close()


async def test_a_connection_given_back_inside_a_transaction_is_closed_not_pooled(
    engine: AsyncEngine,
) -> None:
    # Whatever left it there: the next request must not inherit the transaction or its locks.
    raw = await engine.raw_connection()
    driver: asyncpg.Connection = raw.driver_connection
    await begin_with(driver, "SELECT pg_advisory_xact_lock(4242)")
    assert await _locks_of(engine, raw)
    raw.close()

    assert driver.is_closed()
    async with engine.connect() as other:
        for _ in range(50):  # the server ends the backend, and its locks, at once
            held = await other.scalar(
                text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242")
            )
            if not held:
                break
            await asyncio.sleep(0.02)
        assert not held
