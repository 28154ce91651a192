"""`make run`: one command from a fresh clone to a working shop on :8002.

Starts the embedded PostgreSQL and Redis where `DATABASE_URL_ASYNC` / `REDIS_URL`
are unset, the SumUp sandbox where no real SumUp key is configured, applies both
migration branches, loads the demo data and serves the app with hypercorn. Ctrl-C
stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config import ConfigError, load_settings  # noqa: E402
from sandbox.embedded import DEFAULT_DATA_DIR, embedded_servers  # noqa: E402

log = logging.getLogger("devserver")
SANDBOX_PORT = 8009


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


def _validate_early(env: os._Environ[str]) -> None:
    """Refuse bad settings before starting anything; unset URLs will be embedded."""
    check = dict(env)
    check.setdefault("DATABASE_URL_ASYNC", "postgresql+asyncpg://embedded/cart")
    check.setdefault("REDIS_URL", "redis://embedded:6379/0")
    check.setdefault("SUMUP_BASE_URL", "http://127.0.0.1:8009")
    load_settings(check)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    env = os.environ
    env.setdefault("APP_ENV", "development")
    env.setdefault("PUBLIC_URL", f"http://{args.host}:{args.port}")
    for name, value in _dev_secrets(args.data_dir).items():
        env.setdefault(name, value)

    try:
        _validate_early(env)
    except ConfigError as error:
        print(f"cart: configuration error: {error}", file=sys.stderr)
        return 2

    with ExitStack() as stack:
        started = stack.enter_context(embedded_servers(env, args.data_dir))
        for name in started:
            log.info("%s: embedded server started under %s", name, args.data_dir)
        if not env.get("SUMUP_API_KEY"):
            from sandbox.sumup_sandbox import running_sandbox

            sandbox = stack.enter_context(running_sandbox(port=SANDBOX_PORT))
            env["SUMUP_BASE_URL"] = sandbox.base_url
            env["SUMUP_API_KEY"] = "sup_sk_sandbox_coop"
            env["SUMUP_MERCHANT_CODE"] = "MCOOP0001"
            log.info("SumUp sandbox on %s", sandbox.base_url)
        prepare_database(env["DATABASE_URL_ASYNC"])
        log.info("serving the shop on http://%s:%s/cart/", args.host, args.port)
        server = subprocess.Popen(
            [
                *(sys.executable, "-m", "hypercorn", "-c", "config/hypercorn.toml", "app:app"),
                *("--bind", f"{args.host}:{args.port}"),
            ],
            cwd=ROOT,
            env=env,
        )
        try:
            return server.wait()
        except KeyboardInterrupt:
            log.info("stopping")
            server.terminate()
            server.wait(timeout=15)
            return 0


if __name__ == "__main__":
    raise SystemExit(main())
