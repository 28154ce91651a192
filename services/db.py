"""The async engine, the session factory, and the one-session-per-request hooks."""

from __future__ import annotations

import asyncio

from quart import Quart, Response, g
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine whose pool holds enough connections for the worker's load.

    No pre-ping: it cost a round trip and a transaction per request (bench/README.md).
    A connection that died is found by the query that uses it; SQLAlchemy then
    invalidates the pool, and `pool_recycle` retires connections before servers or
    proxies drop idle ones. A small overflow keeps bursts from opening and closing
    connections on every request.
    """
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=max(2, pool_size // 4),
        pool_recycle=1800,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (templates read them)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


def init_db(app: Quart) -> None:
    """Open one `AsyncSession` per request; commit below 400, roll back otherwise."""

    @app.before_serving
    async def _open_engine() -> None:
        settings = app.config["SETTINGS"]
        engine = create_engine(settings.database_url, pool_size=settings.db_pool_size)
        app.extensions["db_engine"] = engine
        app.extensions["db_sessionmaker"] = create_sessionmaker(engine)

    @app.after_serving
    async def _close_engine() -> None:
        await app.extensions["db_engine"].dispose()

    @app.before_request
    async def _open_session() -> None:
        g.db = app.extensions["db_sessionmaker"]()

    @app.after_request
    async def _finish_session(response: Response) -> Response:
        session: AsyncSession | None = g.pop("db", None)
        if session is None:
            return response
        try:
            if response.status_code < 400:
                await session.commit()
            else:
                await session.rollback()
        finally:
            await _close(session)
        return response

    @app.teardown_request
    async def _close_session(_: BaseException | None) -> None:
        session: AsyncSession | None = g.pop("db", None)
        if session is not None:
            await _close(session)


async def _close(session: AsyncSession) -> None:
    """Close even when the request is being cancelled (a client gave up): an unshielded
    close would be interrupted and throw the connection away instead of returning it."""
    await asyncio.shield(session.close())


def db_session() -> AsyncSession:
    """The current request's session."""
    session: AsyncSession = g.db
    return session
