"""Starting on a fresh database: the entrypoint waits for PostgreSQL, migrates under the
advisory lock, and any number of instances may start at once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from sandbox.embedded import asyncpg_dsn
from services.db import create_sessionmaker
from services.schema import branch_head, upgrade
from tests.conftest import ROOT
from tests.production.servers import (
    Instance,
    Shopper,
    checkout_id_from,
    fresh_database,
    production_env,
    running,
    shopper_with_a_line,
    unused_port,
    wait_until_paid,
)


@pytest.fixture(autouse=True)
async def fresh_sandbox(sandbox_control: Any) -> None:
    await sandbox_control.reset()


@contextlib.asynccontextmanager
async def session_on(url: str) -> AsyncIterator[AsyncSession]:
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


async def _sibling_tables(url: str) -> None:
    """What the blog, market and events apps' own migrations create in production."""
    await asyncio.to_thread(upgrade, url, ("siblings",))
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        # The outbox is the cart's: production must get it from the cart branch alone.
        await connection.execute(text("DROP TABLE IF EXISTS domain_events"))
    await engine.dispose()


async def test_a_fresh_database_migrated_by_the_entrypoint_alone_takes_a_checkout_to_paid(
    redis: Redis, sumup_sandbox: Any, sandbox_control: Any, tmp_path: Path
) -> None:
    async with fresh_database() as url:
        await _sibling_tables(url)
        env = production_env(
            database_url=url, port=unused_port(), sandbox_url=sumup_sandbox.base_url, workers=1
        )
        with running(env, tmp_path / "server.log") as instance:
            await instance.wait_ready()
            async with session_on(url) as db:
                shopper = Shopper(instance.base_url, await shopper_with_a_line(db, redis))
                try:
                    answer = await shopper.checkout()
                    assert answer.status_code == 303, instance.log()[-3000:]
                    await sandbox_control.pay(checkout_id_from(answer))
                    order = await wait_until_paid(db)
                finally:
                    await shopper.aclose()
            assert order.paid_at is not None


def _first_migrations(logs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        record
        for records in logs
        for record in records
        if str(record.get("message", "")).startswith("Running upgrade  -> c0001")
    ]


async def _versions(url: str) -> list[str]:
    engine = create_async_engine(url)
    async with engine.connect() as connection:
        versions = list(await connection.scalars(text("SELECT version_num FROM alembic_version")))
    await engine.dispose()
    return versions


async def _blocked_backends(admin: asyncpg.Connection, database: str) -> int:
    # Inside a transaction the activity view is a snapshot taken once: take a new one.
    await admin.execute("SELECT pg_stat_clear_snapshot()")
    count: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        database,
    )
    return count


async def test_four_entrypoint_migrations_at_once_on_one_fresh_database_take_turns() -> None:
    """The migration step of four instances, made to start at the same moment.

    An open transaction that is creating `alembic_version` holds all four at the same
    point; when it rolls back they would race to create the same tables (and all but
    one crash) if the migration lock did not make them take turns.
    """
    async with fresh_database() as url:
        name = make_url(url).database or ""
        admin = await asyncpg.connect(**asyncpg_dsn(url, name))
        try:
            gate = admin.transaction()
            await gate.start()
            await admin.execute(
                "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)"
            )
            steps = [_schema_step(url, wait=20) for _ in range(4)]
            deadline = time.monotonic() + 60
            while await _blocked_backends(admin, name) < 4:  # all four are at the gate
                assert time.monotonic() < deadline, "the migration steps never reached the gate"
                await asyncio.sleep(0.1)
            await gate.rollback()
        finally:
            await admin.close()
        outputs = [(await asyncio.to_thread(step.communicate, timeout=90))[0] for step in steps]
        versions = await _versions(url)
    assert [step.returncode for step in steps] == [0, 0, 0, 0], outputs
    assert versions == [branch_head("cart")]
    logs = [[json.loads(line) for line in out.splitlines() if line.strip()] for out in outputs]
    assert len(_first_migrations(logs)) == 1  # one migrated; the others found it done
    waited = [r for records in logs for r in records if "another instance" in r["message"]]
    assert len(waited) == 3


async def test_four_instances_started_at_once_on_one_fresh_database_all_serve(
    sumup_sandbox: Any, tmp_path: Path
) -> None:
    """Four whole instances through the entrypoint's steps (20 to 45 s on two cores)."""
    async with fresh_database() as url:
        instances = [
            Instance(
                production_env(
                    database_url=url,
                    port=unused_port(),
                    sandbox_url=sumup_sandbox.base_url,
                    workers=1,
                    EVENTS_RELAY_IN_APP="false",
                ),
                tmp_path / f"instance-{n}.log",
            )
            for n in range(4)
        ]
        try:
            for instance in instances:
                instance.start()
            await asyncio.gather(*(instance.wait_ready(within=90) for instance in instances))
        finally:
            for instance in instances:
                instance.stop()
        versions = await _versions(url)
    assert versions == [branch_head("cart")]
    logs = [instance.log_records() for instance in instances]
    assert len(_first_migrations(logs)) == 1
    assert not [r for records in logs for r in records if r.get("level") in ("error", "critical")]


def _schema_step(database_url: str, wait: float) -> subprocess.Popen[str]:
    env = production_env(database_url=database_url, port=unused_port(), sandbox_url="http://x:1")
    return subprocess.Popen(
        [sys.executable, "-m", "services.schema", "--branch", "cart", "--wait", str(wait)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_the_entrypoint_gives_up_on_an_absent_postgresql_in_time_one_line_per_try(
    sumup_sandbox: Any, tmp_path: Path
) -> None:
    nowhere = f"postgresql+asyncpg://postgres@127.0.0.1:{unused_port()}/cart"
    env = production_env(
        database_url=nowhere,
        port=unused_port(),
        sandbox_url=sumup_sandbox.base_url,
        DB_WAIT_SECONDS="3",
    )
    started = time.monotonic()
    result = await asyncio.to_thread(
        subprocess.run,
        ["/bin/sh", str(ROOT / "entrypoint.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert time.monotonic() - started < 15
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert "Traceback" not in result.stderr
    tries = [line for line in lines if '"waiting for PostgreSQL"' in line]
    assert 1 <= len(tries) <= 3
    assert "PostgreSQL did not answer within 3s" in lines[-1]
    assert len(lines) == len(tries) + 1


async def _forward(port: int, database_url: str) -> asyncio.Server:
    """A TCP forwarder to PostgreSQL: the database 'comes up' when this starts."""
    real = make_url(database_url)
    socket_dir = real.query.get("host")

    async def upstream() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(socket_dir, str) and socket_dir.startswith("/"):  # the embedded server
            return await asyncio.open_unix_connection(f"{socket_dir}/.s.PGSQL.{real.port or 5432}")
        return await asyncio.open_connection(real.host or "127.0.0.1", real.port or 5432)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await upstream()
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))

    return await asyncio.start_server(handle, "127.0.0.1", port)


async def test_the_entrypoint_waits_for_a_postgresql_that_comes_up_later() -> None:
    async with fresh_database() as url:
        port = unused_port()
        late = (
            make_url(url)
            .set(host="127.0.0.1", port=port, query={})
            .render_as_string(hide_password=False)
        )
        step = _schema_step(late, wait=30)
        await asyncio.sleep(3)
        assert step.poll() is None  # still waiting
        server = await _forward(port, url)
        try:
            out, _ = await asyncio.to_thread(step.communicate, timeout=60)
        finally:
            server.close()
    assert step.returncode == 0, out
    lines = out.splitlines()
    assert any('"waiting for PostgreSQL"' in line for line in lines)
    assert '"migrations applied"' in lines[-1]
