"""The async engine, the session factory, and the one-session-per-request hooks."""

from __future__ import annotations

from quart import Quart, Response, g
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine with a bounded pool that checks connections before use."""
    return create_async_engine(
        database_url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit (templates read them)."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=True)


def init_db(app: Quart) -> None:
    """Open one `AsyncSession` per request; commit below 400, roll back otherwise."""

    @app.before_serving
    async def _open_engine() -> None:
        engine = create_engine(app.config["SETTINGS"].database_url)
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
            await session.close()
        return response

    @app.teardown_request
    async def _close_session(_: BaseException | None) -> None:
        session: AsyncSession | None = g.pop("db", None)
        if session is not None:
            await session.close()


def db_session() -> AsyncSession:
    """The current request's session."""
    session: AsyncSession = g.db
    return session
