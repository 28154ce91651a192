"""The service as production runs it: `entrypoint.sh` in a subprocess, shoppers over HTTP.

Settings are production's (APP_ENV=production, a Secure cookie, the SumUp sandbox as
"SumUp"); the shoppers are logged in the way the blog app does it, by a session in
the shared Redis holding `uid`, and their cart lines are written as the market app
writes them, straight into `cart_items`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
from itsdangerous import Signer
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from models import Order
from sandbox.embedded import asyncpg_dsn
from services.sessions import ANCHOR_COOKIE, RedisSessionInterface
from tests.conftest import REDIS_PREFIX, ROOT, free_port
from tests.factories import make_line, make_product, make_shop, make_user

# Distinctive values, so a test can look for them in logs.
SECRETS = {
    "SECRET_KEY": f"prod-secret-key-{secrets.token_hex(12)}",
    "INTERNAL_API_TOKEN": f"prod-internal-token-{secrets.token_hex(12)}",
    "METRICS_TOKEN": f"prod-metrics-token-{secrets.token_hex(12)}",
    "SUMUP_API_KEY": "sup_sk_sandbox_coop",
}
SESSION_PREFIX = "session:"  # app-config.yaml's; the blog app writes sessions there too
COOKIE = "coop_session"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
IDEMPOTENCY = re.compile(r'name="idempotency_key" value="([^"]+)"')


def production_env(
    *, database_url: str, port: int, sandbox_url: str, workers: int = 2, **extra: str
) -> dict[str, str]:
    """The environment of a production container of the service."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SUMUP_", "EVENTS_", "RECONCILE_", "APP_ENV", "PROMETHEUS_"))
    }
    env.update(SECRETS)
    env.update(
        APP_ENV="production",
        PYTHON=sys.executable,
        DATABASE_URL_ASYNC=database_url,
        REDIS_URL=os.environ["REDIS_URL"],
        PUBLIC_URL=f"http://127.0.0.1:{port}",
        SESSION_COOKIE_SECURE="true",
        SUMUP_BASE_URL=sandbox_url,
        SUMUP_MERCHANT_CODE="MCOOP0001",
        SUMUP_TIMEOUT_SECONDS="10",
        EVENTS_STREAM=f"{REDIS_PREFIX}events",
        RECONCILE_IN_APP="false",
        BIND=f"127.0.0.1:{port}",
        WORKERS=str(workers),
        DB_WAIT_SECONDS="20",
        DB_POOL_SIZE="4",
    )
    env.update(extra)
    return env


class Instance:
    """One `entrypoint.sh` process; its stderr (the log) goes to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = int(env["BIND"].rpartition(":")[2])
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["/bin/sh", str(ROOT / "entrypoint.sh")],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, within: float = 60.0) -> None:
        """Until /readyz answers 200; fails early if the process exits."""
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"instance exited {self.process.returncode}:\n{self.log()}"
                    )
                try:
                    if (await client.get(f"{self.base_url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise AssertionError(f"instance not ready within {within}s:\n{self.log()}")

    def terminate(self) -> None:
        """SIGTERM, as `docker stop` sends it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60.0) -> int:
        assert self.process is not None
        code = self.process.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def stop(self) -> None:
        """Stop it whatever state it is in (test clean-up)."""
        if self.process is not None and self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """Every line of the log as JSON (fails on a line that is not)."""
        return [json.loads(line) for line in self.log().splitlines() if line.strip()]


@contextmanager
def running(env: dict[str, str], log_path: Path) -> Iterator[Instance]:
    instance = Instance(env, log_path)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """An empty database on the test server, dropped afterwards."""
    base = os.environ["CART_TEST_BASE_DATABASE_URL"]
    name = f"cart_prod_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(**asyncpg_dsn(base, "postgres"))
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        admin = await asyncpg.connect(**asyncpg_dsn(base, "postgres"))
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# --- shoppers ---------------------------------------------------------------------------


async def logged_in_cookie(redis: Redis, user_id: int) -> str:
    """A session as the blog app's login leaves it: `uid` in Redis, a signed id cookie."""
    sid = secrets.token_urlsafe(32)
    await redis.set(f"{SESSION_PREFIX}{sid}", json.dumps({"uid": user_id}), ex=3600)
    signer = Signer(SECRETS["SECRET_KEY"], salt=RedisSessionInterface.salt)
    return signer.sign(sid).decode("ascii")


async def shopper_with_a_line(db: AsyncSession, redis: Redis) -> str:
    """A logged-in shopper with one product in the cart; returns their session cookie."""
    user = await make_user(db)
    _page, market = await make_shop(db)
    product = await make_product(db, market)
    await make_line(db, product, quantity=2, user_id=user.id)
    return await logged_in_cookie(redis, user.id)


class Shopper:
    """A browser without JavaScript; the cookie is sent by hand (it is Secure, the test is
    plain HTTP)."""

    def __init__(self, base_url: str, cookie: str, request_id: str | None = None) -> None:
        headers = {"Cookie": f"{COOKIE}={cookie}", "Accept": "text/html"}
        if request_id:
            headers["X-Request-ID"] = request_id
        self.client = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30)

    async def checkout(self) -> httpx.Response:
        """Open the cart and press Checkout; SumUp's hosted page is where it redirects."""
        page = await self.client.get("/cart/")
        assert page.status_code == 200, page.text
        token, key = CSRF.search(page.text), IDEMPOTENCY.search(page.text)
        assert token and key, "no checkout form on the cart page"
        # The form's CSRF token is bound to the anchor cookie the page set; it is Secure
        # and this test is plain HTTP, so it goes back by hand like the session cookie.
        anchor = "; ".join(
            f"{name}={value}"
            for name, value in page.cookies.items()
            if name.endswith(ANCHOR_COOKIE)
        )
        cookie = f"{self.client.headers['Cookie']}; {anchor}" if anchor else None
        return await self.client.post(
            "/cart/checkout/",
            data={"csrf_token": token[1], "idempotency_key": key[1]},
            headers={"Cookie": cookie} if cookie else None,
        )

    async def aclose(self) -> None:
        await self.client.aclose()


def checkout_id_from(response: httpx.Response) -> str:
    """The SumUp checkout a checkout answer sends the shopper to pay."""
    assert response.status_code == 303, response.text
    return response.headers["Location"].rstrip("/").rpartition("/")[2]


async def wait_until_paid(db: AsyncSession, within: float = 20) -> Order:
    """The order once SumUp's webhook has made it paid."""
    deadline = time.monotonic() + within
    while True:
        order = await db.scalar(select(Order).execution_options(populate_existing=True))
        if order is not None and order.status == "paid":
            return order
        assert time.monotonic() < deadline, f"order not paid: {order and order.status}"
        await asyncio.sleep(0.1)


def unused_port() -> int:
    return free_port()
