"""The reference app: what this stack costs with nothing of the cart service in the way.

Served by `bench.run` with exactly the server settings of the cart app (hypercorn,
uvloop worker, production mode), on the same database and Redis, so that every
endpoint of the cart can be read as a fraction of these two:

- `GET /floor`: the least a cart summary can do. It reads the shopper's session
  cookie, does one Redis GET of the session and one aggregate query over raw asyncpg
  (the shopper's live line count and quantity), and answers JSON.
- `GET /hello`: bare Quart, no I/O at all.

Configured from the same environment as the cart app (`DATABASE_URL_ASYNC`,
`REDIS_URL`, `SECRET_KEY`, `DB_POOL_SIZE`).
"""

from __future__ import annotations

import json
import os
from typing import Any

import asyncpg
from itsdangerous import BadSignature, Signer
from quart import Quart, request

import path_setup  # noqa: F401  (the project root on sys.path, as app.py)
from sandbox.embedded import asyncpg_dsn
from services.redis_client import create_redis

SESSION_COOKIE = "coop_session"
SESSION_PREFIX = os.environ.get("BENCH_SESSION_PREFIX", "session:")
LINES = "SELECT count(*) AS lines, coalesce(sum(quantity), 0) AS quantity FROM cart_items"
LINES_OF_USER = f"{LINES} WHERE user_id = $1 AND deleted_at IS NULL"
LINES_OF_SESSION = f"{LINES} WHERE session_id = $1 AND user_id IS NULL AND deleted_at IS NULL"

app = Quart(__name__)
signer = Signer(os.environ["SECRET_KEY"], salt="coop-session")


async def _keep_as_is(connection: asyncpg.Connection) -> None:
    """The connection goes back to the pool untouched (nothing here changes its state)."""


@app.before_serving
async def _open() -> None:
    url = os.environ["DATABASE_URL_ASYNC"]
    dsn = asyncpg_dsn(url, url.rsplit("/", 1)[1].split("?", 1)[0])
    size = int(os.environ.get("DB_POOL_SIZE", "20"))
    # No reset query on release (asyncpg's default runs one): the floor is one query.
    app.extensions["pool"] = await asyncpg.create_pool(
        **dsn, min_size=size, max_size=size, reset=_keep_as_is
    )
    app.extensions["redis"] = create_redis(os.environ["REDIS_URL"])


@app.after_serving
async def _close() -> None:
    await app.extensions["pool"].close()
    await app.extensions["redis"].aclose()


@app.get("/hello")
async def hello() -> str:
    """Bare Quart: routing, a response, nothing else."""
    return "hello"


@app.get("/floor")
async def floor() -> dict[str, Any]:
    """One Redis GET of the session, one aggregate query over raw asyncpg."""
    data: dict[str, Any] = {}
    try:
        sid = signer.unsign(request.cookies.get(SESSION_COOKIE, "")).decode()
    except BadSignature:
        sid = None
    if sid is not None:
        raw = await app.extensions["redis"].get(SESSION_PREFIX + sid)
        data = json.loads(raw) if raw else {}
    pool = app.extensions["pool"]
    if data.get("uid") is not None:
        row = await pool.fetchrow(LINES_OF_USER, int(data["uid"]))
    else:
        row = await pool.fetchrow(LINES_OF_SESSION, str(data.get("cart_sid", "")))
    return {"lines": row["lines"], "quantity": row["quantity"]}
