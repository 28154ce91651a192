"""The async engine, the session factory, and the one-session-per-request hooks.

Every request gets one `AsyncSession`, opened on first use. Routes marked
`@read_only` get theirs on an autocommit connection: a read needs no `BEGIN` and
`COMMIT` (two round trips), and under READ COMMITTED each statement sees the latest
committed data either way. Every other request runs in one transaction, committed
when the answer is below 400 and rolled back otherwise.

When PostgreSQL drops the app's connections (a restart, a failover, an operator's
`pg_terminate_backend`), the first query on a dead pooled connection fails and
SQLAlchemy invalidates the pool. A GET or HEAD is then run once more on a fresh
connection (it changed nothing that committed); anything else, or a second failure,
is answered 503 with a page, or JSON on the APIs, never a 500. The same holds when
the connection dies between the handler's answer and the request's COMMIT: the
change did not land (or cannot be known to have landed), so the shopper is told to
try again instead of being shown what the handler thought it had done.

Hot reads (`services.direct_reads`) run on the asyncpg connection itself:
`db_connection()` gives the one under the request's session when the request has
one or writes, else, for a read-only route, one checked out of the same pool and
held until the request ends. A direct read that finds its connection dead is
handled as above.

The cart's line writes run without a session too (an `AsyncSession` with its
`BEGIN` and `COMMIT` cost about as much CPU as the rest of the write):
`db_write()` checks a connection out of the same pool, the write begins its
transaction with its first statement, and the hooks end it as a session's,
committed below 400 and rolled back otherwise. They read whether there is a
transaction to end from the connection itself (what PostgreSQL last reported), not
from a flag of ours or SQLAlchemy's. A write connection whose request ended any other
way (its client left mid-request, and Quart cancelled it at whatever await it was)
is closed, never pooled: PostgreSQL then rolls its transaction back and frees its
locks, whatever was in flight. And no connection goes back into the pool inside a
transaction, whoever left it there (`_refuse_open_transaction`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
from quart import Quart, Response, current_app, g, request
from quart.ctx import RequestContext
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, PendingRollbackError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection
from werkzeug.wrappers import Response as WerkzeugResponse

from services.direct_reads import DriverConnectionLost, execute

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD"})
RETRY_AFTER_SECONDS = 5
View = TypeVar("View", bound=Callable[..., Awaitable[Any]])


def create_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    statement_timeout_ms: int = 30_000,
    idle_in_transaction_timeout_ms: int = 60_000,
) -> AsyncEngine:
    """An asyncpg engine with a fixed pool of `pool_size` connections per worker.

    No pre-ping: it cost a round trip and a transaction per request (bench/README.md).
    A connection that died is found by the query that uses it (see the module's
    docstring); `pool_recycle` retires connections before servers or proxies drop
    idle ones. No overflow: an overflow connection is closed as soon as it is
    returned to a full pool, so under load the app opened a new PostgreSQL connection
    several times a second (99 in 25 s for the summary at 32 requests in flight); a
    request beyond the pool waits a few milliseconds for a connection instead, and
    the number of connections to plan for is exactly `DB_POOL_SIZE` per worker. A
    wait past `pool_timeout` is answered 503. The two timeouts are set per connection
    (in the startup packet, no extra round trip) so that one stuck statement or a
    transaction left open cannot hold locks, and every writer behind them, for ever.
    """
    engine = create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=10,
        pool_recycle=1800,
        connect_args={
            "server_settings": {
                "statement_timeout": str(statement_timeout_ms),
                "idle_in_transaction_session_timeout": str(idle_in_transaction_timeout_ms),
            }
        },
    )
    event.listen(engine.sync_engine.pool, "checkin", _refuse_open_transaction)
    return engine


def _refuse_open_transaction(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
    """A connection coming back to the pool inside a transaction is closed instead.

    The pool's reset rolls back only what SQLAlchemy's adapter knows it began; a
    transaction begun any other way (a bug, a cancellation at the wrong moment) would
    be handed to the next request with its locks: writes deadlocked under load that
    way once (bench/README.md). Closing the connection ends it on the server.
    """
    driver = getattr(dbapi_connection, "driver_connection", None)
    if driver is not None and not driver.is_closed() and driver.is_in_transaction():
        log.error("a connection came back to the pool inside a transaction: closed")
        record.invalidate()


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (templates read them)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


def read_only(view: View) -> View:
    """Mark a route that never writes: its session runs on an autocommit connection."""
    view.read_only = True  # type: ignore[attr-defined]
    return view


def is_connection_lost(error: BaseException) -> bool:
    """Whether an error means PostgreSQL dropped the connection or cannot be reached
    (as opposed to a bad query): a pooled connection found dead, a refused connect, or
    no connection free in the pool in time."""
    if isinstance(error, DBAPIError):
        return error.connection_invalidated
    return isinstance(error, ConnectionRefusedError | PoolTimeout)


def note_database_failed(error: BaseException) -> None:
    """For code that carries on when the database fails (the badge of an error page):
    the request's transaction is not to be trusted whole any more (a lost connection
    took it along; a failed statement aborted it), so it is not committed, and the
    answer is a 503 like any other lost connection."""
    g.db_failed = error


def _ended_during_commit(error: BaseException) -> bool:
    """A COMMIT sent while the server was ending the connection can fail as a protocol
    state error of asyncpg ("another operation is in progress") before the connection
    shows as closed (seen once in the soak's test): for a commit, that is a lost
    connection too. Elsewhere it would be a bug of ours, and stays a 500."""
    cause = getattr(getattr(error, "orig", None), "__cause__", None)
    return isinstance(cause, asyncpg.exceptions.InternalClientError)


def _route_is_read_only(app: Quart) -> bool:
    rule = request.url_rule
    view = app.view_functions.get(rule.endpoint) if rule is not None else None
    return bool(getattr(view, "read_only", False))


def init_db(app: Quart) -> None:
    """Open one `AsyncSession` per request (on first use); commit below 400, roll back
    otherwise; retry a GET once and answer 503 when PostgreSQL dropped the connection."""

    @app.before_serving
    async def _open_engine() -> None:
        settings = app.config["SETTINGS"]
        engine = create_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            idle_in_transaction_timeout_ms=settings.db_idle_in_transaction_timeout_ms,
        )
        app.extensions["db_engine"] = engine
        app.extensions["db_sessionmaker"] = create_sessionmaker(engine)
        app.extensions["db_read_sessionmaker"] = create_sessionmaker(
            engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    @app.after_serving
    async def _close_engine() -> None:
        await app.extensions["db_engine"].dispose()

    @app.teardown_request
    async def _close_session(_: BaseException | None) -> None:
        _release_direct()
        _discard_write()  # not ended by the commit hook: its request was cut short
        session: AsyncSession | None = g.pop("db", None)
        if session is not None:
            await _close(session)

    dispatch = app.dispatch_request

    async def _dispatch_with_one_retry(request_context: RequestContext | None = None) -> Any:
        try:
            return await dispatch(request_context)
        except DBAPIError as error:
            if isinstance(error, DriverConnectionLost):
                _forget_pooled_connections(error)
            if request.method not in SAFE_METHODS or not error.connection_invalidated:
                raise
            # The pool is invalidated by now: the next checkout opens a new connection.
            log.warning("database connection lost on %s %s; retrying", request.method, request.path)
        _release_direct()
        _discard_write()
        session: AsyncSession | None = g.pop("db", None)
        if session is not None:
            await _close(session)
        return await dispatch(request_context)

    app.dispatch_request = _dispatch_with_one_retry  # type: ignore[method-assign]

    @app.errorhandler(DBAPIError)
    @app.errorhandler(asyncpg.PostgresError)  # from a direct statement (`direct_reads`)
    @app.errorhandler(ConnectionRefusedError)
    @app.errorhandler(PoolTimeout)
    async def _database_error(error: Exception) -> Any:
        from services.error_pages import error_response

        if isinstance(error, DriverConnectionLost):
            _forget_pooled_connections(error)
        # The error page reads the cart: not on a write connection a failed statement
        # left in an aborted transaction, nor while it holds the owner's lock.
        await rollback_writes(session=False)
        if not is_connection_lost(error):
            log.exception("database error on %s %s", request.method, request.path)
            return await error_response(
                500, "Something went wrong", "Something went wrong on our side. Please try again."
            )
        log.warning("database unavailable on %s %s: %s", request.method, request.path, error)
        return await error_response(
            503,
            "Temporarily unavailable",
            "We could not reach our database. Please try again in a few seconds.",
            retry_after=RETRY_AFTER_SECONDS,
        )


def init_request_commit(app: Quart) -> None:
    """Commit the request's session when the answer is below 400, roll it back otherwise.

    Registered after every other after-request hook, so it runs before them (Quart runs
    them last-registered first): when the COMMIT finds the connection gone, the 503
    that replaces the answer still gets the security headers, the metrics count it,
    and messages about the change that did not land are not passed on.
    """

    @app.after_request
    async def _finish_session(response: Response) -> Response | WerkzeugResponse:
        _release_direct()
        committing = response.status_code < 400
        # A statement of this transaction failed and the request carried on (the badge):
        # never COMMIT it, PostgreSQL would roll it back without a word.
        failed: BaseException | None = g.get("db_failed")
        not_landed: BaseException | None = None
        if "db_write" in g:
            not_landed = await _finish_write(commit=committing and failed is None)
            if committing and failed is not None:
                not_landed = failed
        session: AsyncSession | None = g.pop("db", None)
        if session is not None:
            try:
                not_landed = await _finish_db_session(session, committing, failed or not_landed)
            finally:
                await _close(session)
        if committing and not_landed is not None:
            return await _not_committed(not_landed)
        return response


async def _finish_db_session(
    session: AsyncSession, committing: bool, failed: BaseException | None
) -> BaseException | None:
    """Commit the request's session, or roll it back when the answer is 400 or more or
    `failed`; what kept a change from landing (`failed`, a lost connection), if any."""
    try:
        if g.get("db_read_only"):
            return None  # autocommit: nothing to commit or roll back; close returns it
        if committing and failed is None:
            await session.commit()
            return None
        await session.rollback()
        return failed if committing else None
    except (DBAPIError, PendingRollbackError, ConnectionRefusedError, PoolTimeout) as error:
        if not (is_connection_lost(error) or _ended_during_commit(error) or failed):
            raise
        return error if committing else None  # not committing: the answer stands


class RolledBackAtCommit(Exception):
    """PostgreSQL answered a COMMIT with ROLLBACK: a statement of the transaction had failed."""


async def _finish_write(*, commit: bool) -> BaseException | None:
    """End the transaction of the request's write connection, if one was begun (COMMIT
    when `commit`, else ROLLBACK), and put the connection back in the pool. The error
    that kept a commit from landing, or None.

    A connection that failed here is closed (PostgreSQL rolls back what it held); a
    COMMIT cut short by a cancellation closes it too, and so the commit either landed
    whole or not at all, as PostgreSQL decided.
    """
    write: PoolProxiedConnection = g.db_write
    driver: asyncpg.Connection | None = write.driver_connection
    if driver is None or driver.is_closed():
        _discard_write()
        return _lost_at_commit(ConnectionError("the connection was closed")) if commit else None
    if not driver.is_in_transaction():
        _release_write()  # nothing was begun on it
        return None
    try:
        status = await execute(driver, "COMMIT" if commit else "ROLLBACK")
    except Exception as error:
        _discard_write()
        if not commit:  # nothing was to be kept: closing the connection rolls it back
            log.warning("rollback of a write failed; its connection closed: %r", error)
            return None
        if isinstance(error, asyncpg.PostgresError):
            raise  # PostgreSQL refused the COMMIT itself: an error of ours, as for a session
        # The connection died (or asyncpg lost track of it: "another operation is in
        # progress") and whether the COMMIT landed is unknown.
        return _lost_at_commit(error)
    except BaseException:
        _discard_write()
        raise
    _release_write()
    if commit and status != "COMMIT":
        return RolledBackAtCommit(f"COMMIT answered {status}")
    return None


def _lost_at_commit(error: Exception) -> DriverConnectionLost:
    if isinstance(error, DriverConnectionLost):
        _forget_pooled_connections(error)  # as SQLAlchemy does when a COMMIT finds one dead
        return error
    return DriverConnectionLost("COMMIT", [], error, connection_invalidated=True)


async def _not_committed(error: BaseException) -> Response | WerkzeugResponse:
    from quart import session as cookie_session

    from services.error_pages import error_response

    if is_connection_lost(error) or _ended_during_commit(error):
        log.warning(
            "database connection lost at commit on %s %s: %s", request.method, request.path, error
        )
    else:
        log.error(
            "not committed on %s %s: a statement failed earlier in the transaction: %s",
            request.method,
            request.path,
            error,
        )
    g.pop("new_notes", None)  # "3 in your cart" is not true: nothing was saved
    cookie_session.pop("_flashes", None)
    what = "load this page" if request.method in SAFE_METHODS else "save your change"
    answer = await error_response(
        503,
        "Temporarily unavailable",
        f"We could not {what}: our database did not answer. Please try again in a few seconds.",
        retry_after=RETRY_AFTER_SECONDS,
    )
    return await current_app.make_response(answer)


async def _close(session: AsyncSession) -> None:
    """Close even when the request is being cancelled (a client gave up): an unshielded
    close would be interrupted and throw the connection away instead of returning it."""
    await asyncio.shield(session.close())


def db_session() -> AsyncSession:
    """The current request's session, opened on first use."""
    session: AsyncSession | None = g.get("db")
    if session is None:
        app = current_app
        read = _route_is_read_only(app)
        g.db_read_only = read
        session = app.extensions["db_read_sessionmaker" if read else "db_sessionmaker"]()
        g.db = session
    return session


async def db_connection() -> asyncpg.Connection:
    """The asyncpg connection for this request's direct reads (`services.direct_reads`).

    The request's write connection when a line write opened one (`db_write`), else the
    one under the request's session when it has one or the route writes (so a read after
    a write sees it, in the same transaction); otherwise one of the pool's, without a
    session, returned when the request ends. A direct read made before the first
    statement of a writing session runs before its `BEGIN`: keep them for reads.
    """
    write: PoolProxiedConnection | None = g.get("db_write")
    if write is not None:
        written: asyncpg.Connection = write.driver_connection
        return written
    session: AsyncSession | None = g.get("db")
    if session is None and _route_is_read_only(current_app):
        direct: asyncpg.Connection = (await _held_connection("db_direct")).driver_connection
        return direct
    connection = await db_session().connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def db_write() -> asyncpg.Connection:
    """The asyncpg connection of this request's line writes, outside any session.

    Checked out of the pool on first use. The write begins its transaction with its
    first statement (`services.direct_reads.begin_with`); the request's hooks commit
    it when the answer is below 400 and roll it back otherwise, and a request cut short
    closes it (see the module's docstring). For the statements of one write: anything
    else in the request reads and writes through `db_session()` / `db_connection()`.
    """
    driver: asyncpg.Connection = (await _held_connection("db_write")).driver_connection
    return driver


async def _held_connection(name: str) -> PoolProxiedConnection:
    """The pool's connection this request holds as `g.<name>`, checked out on first use
    (handed back by `_release_direct` / `_finish_write`, or closed by `_discard_write`)."""
    held: PoolProxiedConnection | None = g.get(name)
    if held is None:
        held = await current_app.extensions["db_engine"].raw_connection()
        setattr(g, name, held)
    return held


async def rollback_writes(*, session: bool = True) -> None:
    """Undo what this request wrote so far (its write connection's transaction and, with
    `session`, its session's), before answering a refused change with a page that reads
    the cart."""
    if "db_write" in g:
        await _finish_write(commit=False)
    db: AsyncSession | None = g.get("db") if session else None
    if db is not None:
        await db.rollback()


def _release_write() -> None:
    write: PoolProxiedConnection | None = g.pop("db_write", None)
    if write is not None:
        write.close()  # back to the pool (which refuses it if it is still in a transaction)


def _discard_write() -> None:
    """Close the request's write connection instead of pooling it: whatever was in
    flight on it, PostgreSQL rolls back its transaction and frees its locks."""
    write: PoolProxiedConnection | None = g.pop("db_write", None)
    if write is not None:
        write.invalidate()
        write.close()


def _release_direct() -> None:
    direct: PoolProxiedConnection | None = g.pop("db_direct", None)
    if direct is None:
        return
    if direct.driver_connection is None or direct.driver_connection.is_closed():
        direct.invalidate()
    direct.close()  # no transaction was begun on it: nothing to roll back, no round trip


def _forget_pooled_connections(error: DriverConnectionLost) -> None:
    """What SQLAlchemy does when one of its statements finds the connection dead: every
    pooled connection older than now is replaced on its next checkout (a restart of
    PostgreSQL killed them all)."""
    engine: AsyncEngine = current_app.extensions["db_engine"]
    engine.sync_engine.pool._invalidate(None, error.orig)  # type: ignore[arg-type]
