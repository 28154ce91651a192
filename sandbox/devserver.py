"""`make run`: one command from a fresh clone to a working shop on :8002.

Starts the embedded PostgreSQL and Redis where `DATABASE_URL_ASYNC` / `REDIS_URL`
are unset, the SumUp sandbox where no real SumUp key is configured (on
`--sandbox-port`, default 8009 or `SANDBOX_PORT`), applies both migration branches,
loads the demo data and serves the app with `services.server` (one worker).

It refuses to start, in one line, when its ports are taken or another `make run`
of this data folder is running, and it checks that the sandbox answering on its
port is the one it started (an instance token only that one knows). SIGTERM, SIGINT
and Ctrl-C stop everything it started; the pid file under the data folder lets the
next run stop what an unclean exit (SIGKILL, a crash) left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import ConfigError, load_settings  # noqa: E402
from config.settings import report_config_error  # noqa: E402
from sandbox.embedded import DEFAULT_DATA_DIR, embedded_servers  # noqa: E402

log = logging.getLogger("devserver")
DEFAULT_SANDBOX_PORT = 8009
INSTANCE_ENV = "SUMUP_SANDBOX_INSTANCE"
PID_FILE = "devserver.pid"
# What our children's command lines contain; a recorded pid running anything else is
# not ours (the pid was reused) and is left alone.
CHILD_MARKERS = ("services.server", "sandbox.sumup_sandbox")
STOP_SECONDS = 40.0


class Refusal(Exception):
    """make run will not start; the message is the one line that says why."""


class Stopped(Exception):
    """SIGTERM or SIGINT arrived: unwind and stop everything."""


def _dev_secrets(data_dir: Path) -> dict[str, str]:
    """Development secrets kept under the data folder so sessions survive restarts."""
    path = data_dir / "dev-secrets.json"
    if path.exists():
        stored: dict[str, str] = json.loads(path.read_text())
        return stored
    data_dir.mkdir(parents=True, exist_ok=True)
    values = {
        "SECRET_KEY": secrets.token_urlsafe(32),
        "INTERNAL_API_TOKEN": secrets.token_urlsafe(32),
    }
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def _validate_early(env: os._Environ[str], sandbox_port: int) -> None:
    """Refuse bad settings before starting anything; unset URLs will be embedded."""
    check = dict(env)
    check.setdefault("DATABASE_URL_ASYNC", "postgresql+asyncpg://embedded/cart")
    check.setdefault("REDIS_URL", "redis://embedded:6379/0")
    check.setdefault("SUMUP_BASE_URL", f"http://127.0.0.1:{sandbox_port}")
    load_settings(check)


# --- ports, pid file, leftovers ---------------------------------------------------------


def ensure_port_free(host: str, port: int, what: str) -> None:
    """Refuse, naming the port, when something already listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise Refusal(f"port {port} ({what}) is already in use on {host}") from None


def _command_line(pid: int) -> str | None:
    """The command line of a live process, None when there is none (or only a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return ""
    result = subprocess.run(
        ["ps", "-o", "stat=,command=", "-p", str(pid)],  # noqa: S607 - ps from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    state, _, command = result.stdout.strip().partition(" ")
    if result.returncode != 0 or state.startswith("Z"):
        return None
    return command.strip()


def _signal_child(pid: int, signum: int) -> None:
    """Signal a child, and its process group when it leads one (the app server does)."""
    with contextlib.suppress(ProcessLookupError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)


def _stop_child(pid: int, *, timeout: float) -> None:
    """SIGTERM a leftover child, SIGKILL it after `timeout`."""
    _signal_child(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _command_line(pid) is None:
            return
        time.sleep(0.1)
    _signal_child(pid, signal.SIGKILL)


class PidFile:
    """`<data dir>/devserver.pid`: this run's pid and its children's, for the next run."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / PID_FILE
        self.children: dict[str, int] = {}

    def claim(self) -> None:
        """Refuse if a live run owns the folder; stop what a dead one left running."""
        if self.path.exists():
            try:
                recorded = json.loads(self.path.read_text())
            except (OSError, ValueError):
                recorded = {}
            owner = recorded.get("pid")
            command = _command_line(owner) if isinstance(owner, int) else None
            if command is not None and "sandbox.devserver" in command:
                raise Refusal(f"make run is already running for this data folder (pid {owner})")
            for name, pid in (recorded.get("children") or {}).items():
                command = _command_line(pid)
                if command and any(marker in command for marker in CHILD_MARKERS):
                    log.warning("stopping %s (pid %s) left by an unclean exit", name, pid)
                    _stop_child(pid, timeout=10)
            log.info("removed a stale pid file (pid %s is gone)", owner)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()

    def add(self, name: str, pid: int) -> None:
        self.children[name] = pid
        self._write()

    def _write(self) -> None:
        self.path.write_text(json.dumps({"pid": os.getpid(), "children": self.children}))

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


# --- the parts ------------------------------------------------------------------------------


def prepare_database(database_url: str) -> None:
    """Apply both migration branches and load the demo data."""
    from services.db import create_engine, create_sessionmaker
    from services.schema import upgrade

    upgrade(database_url)

    async def load() -> dict[str, int]:
        from sandbox.demo_data import load_demo_data

        engine = create_engine(database_url, pool_size=1)
        try:
            async with create_sessionmaker(engine)() as session, session.begin():
                return await load_demo_data(session)
        finally:
            await engine.dispose()

    created = asyncio.run(load())
    log.info("demo data: %s", created or "already there")


@contextmanager
def own_sandbox(port: int, pid_file: PidFile) -> Iterator[str]:
    """Start the SumUp sandbox and make sure the one answering on `port` is it."""
    from sandbox.sumup_sandbox import RunningSandbox, SandboxStartError

    instance = secrets.token_hex(16)
    os.environ[INSTANCE_ENV] = instance  # the child inherits it and echoes it back
    sandbox = RunningSandbox(port=port)
    try:
        sandbox.start()
    except SandboxStartError:
        raise Refusal(f"the SumUp sandbox could not start on port {port}") from None
    try:
        if sandbox.process is not None:
            pid_file.add("sandbox", sandbox.process.pid)
        answer = httpx.get(f"{sandbox.base_url}/_sandbox/healthz", timeout=2).json()
        if answer.get("instance") != instance:
            raise Refusal(
                f"port {port} answers as a SumUp sandbox, but not the one make run started"
            )
        yield sandbox.base_url
    finally:
        sandbox.stop()


@contextmanager
def app_server(
    host: str, port: int, env: dict[str, str], pid_file: PidFile
) -> Iterator[subprocess.Popen[bytes]]:
    """The app under services.server (one worker), stopped gracefully on the way out."""
    server = subprocess.Popen(
        [sys.executable, "-m", "services.server"],
        cwd=ROOT,
        env={**env, "BIND": f"{host}:{port}", "WORKERS": "1"},
        start_new_session=True,  # Ctrl-C reaches us only; we stop it in order
    )
    pid_file.add("app", server.pid)
    try:
        yield server
    finally:
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _raise_stopped(signum: int, _: FrameType | None) -> None:
    # A second Ctrl-C must not interrupt the orderly stop this one starts.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


def serve(args: argparse.Namespace, env: os._Environ[str]) -> int:
    """Start the parts in order, serve, and stop them in reverse order."""
    pid_file = PidFile(args.data_dir)
    pid_file.claim()
    with ExitStack() as stack:
        stack.callback(pid_file.release)
        needs_sandbox = not env.get("SUMUP_API_KEY")
        ensure_port_free(args.host, args.port, "the shop")
        if needs_sandbox:
            ensure_port_free("127.0.0.1", args.sandbox_port, "the SumUp sandbox")
        started = stack.enter_context(embedded_servers(env, args.data_dir))
        for name in started:
            log.info("%s: embedded server started under %s", name, args.data_dir)
        if needs_sandbox:
            env["SUMUP_BASE_URL"] = stack.enter_context(own_sandbox(args.sandbox_port, pid_file))
            env["SUMUP_API_KEY"] = "sup_sk_sandbox_coop"
            env["SUMUP_MERCHANT_CODE"] = "MCOOP0001"
            log.info("SumUp sandbox on %s", env["SUMUP_BASE_URL"])
        prepare_database(env["DATABASE_URL_ASYNC"])
        log.info("serving the shop on http://%s:%s/cart/", args.host, args.port)
        server = stack.enter_context(app_server(args.host, args.port, dict(env), pid_file))
        code = server.wait()
        if code:
            log.error("the app server exited with %s", code)
        return code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument(
        "--sandbox-port",
        type=int,
        default=int(os.environ.get("SANDBOX_PORT") or DEFAULT_SANDBOX_PORT),
        help="port of the SumUp sandbox (env SANDBOX_PORT)",
    )
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    env = os.environ
    env.setdefault("APP_ENV", "development")
    env.setdefault("PUBLIC_URL", f"http://{args.host}:{args.port}")
    for name, value in _dev_secrets(args.data_dir).items():
        env.setdefault(name, value)
    try:
        _validate_early(env, args.sandbox_port)
    except ConfigError as error:
        report_config_error(error)
        return 2

    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_stopped)
    try:
        return serve(args, env)
    except Refusal as refusal:
        print(f"make run: {refusal}", file=sys.stderr)
        return 1
    except (Stopped, KeyboardInterrupt):
        log.info("stopped")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
