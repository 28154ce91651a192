"""Branch-aware Alembic migrations: `cart` (ours, production) and `siblings` (dev/test).

Any number of instances may migrate one database at once: `migrations/env.py` runs
each upgrade in one transaction that first takes `MIGRATION_LOCK`, so they go one at
a time and the later ones find nothing left to do. `python -m services.schema`
(the container's entrypoint runs it) first waits, bounded, for PostgreSQL to answer.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
BRANCHES = ("siblings", "cart")
# Advisory lock key (per database) held by the transaction that migrates: "cart-mig".
MIGRATION_LOCK = 0x636172742D6D6967

log = logging.getLogger("services.schema")


class DatabaseUnavailable(Exception):
    """PostgreSQL did not answer within the time given."""


def alembic_config(database_url: str) -> Config:
    """An Alembic config for the project's migrations against `database_url`."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, branches: tuple[str, ...] = BRANCHES) -> None:
    """Bring each named branch to its head (siblings before cart)."""
    config = alembic_config(database_url)
    for branch in branches:
        command.upgrade(config, f"{branch}@head")


def downgrade(database_url: str, branches: tuple[str, ...] = BRANCHES) -> None:
    """Take each named branch back to empty (cart before siblings)."""
    config = alembic_config(database_url)
    for branch in reversed(branches):
        command.downgrade(config, f"{branch}@base")


@functools.cache
def branch_head(branch: str = "cart") -> str:
    """The head revision of a branch, from the migration scripts."""
    script = ScriptDirectory.from_config(Config(str(MIGRATIONS_DIR / "alembic.ini")))
    (head,) = script.get_revisions(f"{branch}@head")
    assert head is not None
    return head.revision


async def _ping(database_url: str) -> None:
    engine = create_async_engine(database_url, pool_size=1, connect_args={"timeout": 5})
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    finally:
        await engine.dispose()


def wait_for_database(database_url: str, *, timeout: float, interval: float = 2.0) -> None:
    """Return once PostgreSQL answers; one log line per failed try; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            asyncio.run(_ping(database_url))
        except Exception as error:
            left = deadline - time.monotonic()
            reason = type(error).__name__
            if left <= 0:
                raise DatabaseUnavailable(
                    f"PostgreSQL did not answer within {timeout:g}s (last: {reason})"
                ) from None
            log.warning(
                "waiting for PostgreSQL",
                extra={"attempt": attempt, "error": reason, "retry_in_s": min(interval, left)},
            )
            time.sleep(min(interval, left))
        else:
            if attempt > 1:
                log.info("PostgreSQL answers", extra={"attempt": attempt})
            return


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m services.schema`: wait for PostgreSQL, then migrate (the entrypoint's step)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--branch", choices=[*BRANCHES, "all"], default="cart")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for PostgreSQL")
    args = parser.parse_args(argv)

    from config import ConfigError, load_settings
    from config.settings import report_config_error
    from services.logging_setup import setup_logging

    try:
        settings = load_settings()
    except ConfigError as error:
        report_config_error(error)
        return 2
    setup_logging(settings)
    branches = BRANCHES if args.branch == "all" else (args.branch,)
    try:
        wait_for_database(settings.database_url, timeout=args.wait)
        upgrade(settings.database_url, branches)
    except DatabaseUnavailable as error:
        log.error("migration not run: %s", error)
        return 1
    log.info("migrations applied", extra={"branches": list(branches), "head": branch_head()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
