"""Hot statements on the asyncpg connection under SQLAlchemy's pool, compiled once.

The summary API is the service's hottest path (the sibling apps call it on every page
they render). Through an `AsyncSession` its one query cost about four times the
query itself in CPU (session, greenlet hops, compiled-cache lookup, execution
context, result objects: bench/README.md). A `DirectQuery` is a Core statement
compiled once, at first use, to asyncpg's SQL text and parameter order; it then runs
with `fetchrow` on a driver connection: the one under the request's session (inside
its transaction, so a write's JSON answer sees the write) or one checked out of the
same pool for a request that has no session (`services.db.db_connection`).

The cart's line writes (add, update, remove) run the same way, in a transaction: on the
request's write connection (`services.db.db_write`, no session), begun with their first
statement (`begin_with`: `BEGIN` and the owner's lock in one round trip) and ended by
the request's hooks; or, inside a larger write of the session's (the cart form's typed
quantities, checkout), on the connection under it: `session_connection()` gives it
with the session's transaction begun, so what they write is committed or rolled back
with the rest.

What asyncpg sends here is still counted: the query-budget tests and `bench.queries`
see it through asyncpg's query logger, as they see `BEGIN` and `COMMIT`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement

_DIALECT = PGDialect_asyncpg()  # `$1` parameters, as asyncpg takes them


class DirectQuery:
    """A Core statement as asyncpg SQL: compiled once, then only its values change.

    `parameters` names the bound parameters a caller supplies on every run (`bindparam`
    without a value); every other value (constants, the items of an `IN (...)`) is
    fixed at compile time.
    """

    def __init__(self, statement: ClauseElement, *, parameters: tuple[str, ...] = ()) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        assert isinstance(compiled, SQLCompiler)
        # Expands `IN (...)` once, here, instead of on every execution.
        state = compiled.construct_expanded_state(dict.fromkeys(parameters))
        self.sql = state.statement
        self.parameters = frozenset(parameters)
        self._order = tuple(state.positiontup or ())
        self._fixed = {
            name: _processed(state.processors.get(name), value)
            for name, value in state.parameters.items()
            if name not in self.parameters
        }
        self._processors = {name: state.processors.get(name) for name in parameters}

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for asyncpg; every supplied parameter is required."""
        missing = self.parameters - values.keys()
        if missing:
            raise KeyError(f"no value for {', '.join(sorted(missing))}")
        return [
            _processed(self._processors[name], values[name])
            if name in self.parameters
            else self._fixed[name]
            for name in self._order
        ]


def _processed(processor: Any, value: Any) -> Any:
    return processor(value) if processor is not None and value is not None else value


class DriverConnectionLost(DBAPIError):
    """The connection died under a direct read (PostgreSQL restarted, a backend was
    terminated): handled like SQLAlchemy's own lost connections (`services.db`)."""


async def fetch_all(
    connection: asyncpg.Connection, query: DirectQuery, values: Mapping[str, Any]
) -> list[asyncpg.Record]:
    """Every row of `query` run with `values`."""
    arguments = query.arguments(values)
    try:
        return await connection.fetch(query.sql, *arguments)
    except Exception as error:
        raise _lost(connection, query.sql, arguments, error) from error


async def fetch_row(
    connection: asyncpg.Connection, query: DirectQuery, values: Mapping[str, Any]
) -> asyncpg.Record | None:
    """The first row of `query` run with `values` (asyncpg keeps it prepared per connection)."""
    arguments = query.arguments(values)
    try:
        return await connection.fetchrow(query.sql, *arguments)
    except Exception as error:
        raise _lost(connection, query.sql, arguments, error) from error


async def execute(connection: asyncpg.Connection, sql: str) -> str:
    """Run `sql`, one or more statements of literals only (no parameters), in one round
    trip; the status of the last (`COMMIT`, `ROLLBACK`, `SELECT 1` …)."""
    try:
        status: str = await connection.execute(sql)
    except Exception as error:
        raise _lost(connection, sql, [], error) from error
    return status


async def begin_with(connection: asyncpg.Connection, sql: str = "") -> None:
    """Begin a transaction on `connection` with `sql` (literals only), if given, as its
    first statement, in one round trip: `BEGIN; <sql>`.

    For the request's write connection (`services.db.db_write`), whose transaction the
    request's hooks end by what the connection reports. Never on a session's: its
    adapter would not know of the transaction (`session_connection`)."""
    if connection.is_in_transaction():
        raise RuntimeError("the connection is in a transaction already")
    await execute(connection, f"BEGIN; {sql}" if sql else "BEGIN")


async def session_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under `session`, inside the transaction the session began.

    SQLAlchemy's asyncpg adapter sends `BEGIN` before its own first statement; a
    statement sent on the driver connection before that would run outside any
    transaction (committed at once, its locks released at once). So a write first runs
    one statement through the session, which begins the transaction the adapter then
    commits or rolls back with the session (the cart's writes take the owner's lock:
    `bp.cart.services.identity.lock_identity`), and this refuses a connection that is
    not in a transaction rather than run a write outside it. Changes the session holds
    are flushed first, so that a statement sent here sees them (as autoflush would).
    """
    if session.new or session.dirty or session.deleted:
        await session.flush()
    proxied = await (await session.connection()).get_raw_connection()
    driver: asyncpg.Connection = proxied.driver_connection
    if not driver.is_in_transaction():
        raise RuntimeError("run a statement through the session first: it has not begun")
    return driver


def _lost(
    connection: asyncpg.Connection, sql: str, arguments: list[Any], error: Exception
) -> Exception:
    """The error to raise: `DriverConnectionLost` when the connection died, else `error`."""
    if not connection.is_closed():
        return error
    return DriverConnectionLost(
        sql, arguments, error, hide_parameters=True, connection_invalidated=True
    )
