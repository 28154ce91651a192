"""What both benchmarks share: servers, a throwaway database, a catalogue, the machine.

Servers come from the environment exactly as in the tests: with `DATABASE_URL_ASYNC`
and `REDIS_URL` set those are used, otherwise embedded PostgreSQL and Redis start
under `.data/bench-servers` (not the tests' folder, so a test run and a bench run can
share the machine). Either way each run gets its own database `cart_bench_<run>`,
built by the migrations and dropped at the end, generated secrets, and `APP_ENV=test`
so that `/dev/login` exists.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from sandbox.embedded import asyncpg_dsn

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / ".data" / "bench-servers"
RUN_ID = uuid.uuid4().hex[:10]
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSION_COOKIE = "coop_session"


@dataclass(frozen=True)
class BenchSetup:
    """Where this run's data lives."""

    database_url: str = field(repr=False)
    database_name: str
    redis_url: str = field(repr=False)
    embedded: tuple[str, ...]
    events_stream: str

    @property
    def servers(self) -> str:
        """`embedded` or `from the environment`, for the report."""
        if not self.embedded:
            return "PostgreSQL and Redis from the environment"
        if len(self.embedded) == 2:
            return "embedded PostgreSQL and Redis"
        return f"embedded {self.embedded[0]}, the other from the environment"


async def _admin(base_url: str, statement: str) -> None:
    connection = await asyncpg.connect(**asyncpg_dsn(base_url, "postgres"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def bench_environment(
    data_dir: Path = DATA_DIR, *, production: bool = False
) -> Iterator[BenchSetup]:
    """Servers, a fresh migrated database and bench settings in `os.environ`.

    `production` leaves the app as deployed (`APP_ENV=production`, the background
    loops as configured); otherwise `APP_ENV=test` (for `/dev/login`) and no sweep.

    Must be entered before `app` is imported (its module builds the app from the
    environment) and outside any event loop (the migrations run their own).
    """
    from sandbox.embedded import embedded_servers
    from services.schema import upgrade

    env = os.environ
    name = f"cart_bench_{RUN_ID}"
    with embedded_servers(env, data_dir) as started:
        base_url = env["DATABASE_URL_ASYNC"]
        asyncio.run(_admin(base_url, f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
            env["DATABASE_URL_ASYNC"] = url
            env.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
            env.setdefault("INTERNAL_API_TOKEN", secrets.token_urlsafe(32))
            if production:
                env["APP_ENV"] = "production"
            else:
                env["APP_ENV"] = "test"
                env["RECONCILE_IN_APP"] = "false"
            env["EVENTS_STREAM"] = f"bench:{RUN_ID}:events"
            # Room for every add of the load run; the default (99) is a shopper's limit.
            env["CART_MAX_QUANTITY"] = "100000"
            # Every load comes from one loopback address and a few thousand sessions at
            # the rate of a crowd: the abuse limits would answer 429 to the measurement.
            env["RATE_LIMITS_ENABLED"] = "false"
            upgrade(url)
            yield BenchSetup(
                database_url=url,
                database_name=name,
                redis_url=env["REDIS_URL"],
                embedded=tuple(
                    label
                    for key, label in (
                        ("DATABASE_URL_ASYNC", "PostgreSQL"),
                        ("REDIS_URL", "Redis"),
                    )
                    if key in started
                ),
                events_stream=env["EVENTS_STREAM"],
            )
        finally:
            env["DATABASE_URL_ASYNC"] = base_url
            asyncio.run(_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@asynccontextmanager
async def database_session(database_url: str) -> AsyncIterator[AsyncSession]:
    """A session on its own small engine, for seeding; commit what the app must see."""
    from services.db import create_engine, create_sessionmaker

    engine = create_engine(database_url, pool_size=2)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
    finally:
        await engine.dispose()


async def forget_redis_keys(
    redis_url: str, keys: Iterable[str] = (), patterns: Iterable[str] = ()
) -> int:
    """Delete the given keys and those matching the patterns; how many went."""
    from services.redis_client import create_redis

    redis = create_redis(redis_url)
    try:
        names = [key.encode() for key in keys]
        for pattern in patterns:
            names += [key async for key in redis.scan_iter(match=pattern)]
        deleted = 0
        for start in range(0, len(names), 500):
            deleted += int(await redis.delete(*names[start : start + 500]))
        return deleted
    finally:
        await redis.aclose()


# --- the catalogue: pages with market places and products, calendars -------------


@dataclass(frozen=True)
class SeedProduct:
    id: int
    market_place_id: int
    page_slug: str
    title: str
    price: Decimal


@dataclass(frozen=True)
class Catalogue:
    page_slugs: list[str]
    products: list[SeedProduct]
    calendar_ids: dict[str, int]

    def products_of(self, page_slug: str) -> list[SeedProduct]:
        return [product for product in self.products if product.page_slug == page_slug]

    def spread(self, count: int) -> list[SeedProduct]:
        """`count` distinct products taken round-robin over the pages."""
        per_page = [self.products_of(slug) for slug in self.page_slugs]
        picked = [
            products[n]
            for n in range(max(len(p) for p in per_page))
            for products in per_page
            if n < len(products)
        ]
        if count > len(picked):
            raise ValueError(f"the catalogue has {len(picked)} products, {count} wanted")
        return picked[:count]


async def seed_catalogue(
    session: AsyncSession, *, pages: int, products_per_page: int, prefix: str = "bench"
) -> Catalogue:
    """Published pages, each with a market place of priced products and a calendar."""
    from models import Calendar, MarketPlace, Post, Product

    posts = [
        Post(slug=f"{prefix}-page-{n}", title=f"Bench page {n}", is_page=True, nav_order=n)
        for n in range(pages)
    ]
    session.add_all(posts)
    await session.flush()
    markets = [
        MarketPlace(post_id=post.id, slug=f"{post.slug}-market", name=f"{post.title} market")
        for post in posts
    ]
    calendars = [
        Calendar(post_id=post.id, slug=f"{post.slug}-calendar", name="Events") for post in posts
    ]
    session.add_all([*markets, *calendars])
    await session.flush()
    rows: list[tuple[Product, str]] = []
    for post, market in zip(posts, markets, strict=True):
        for m in range(products_per_page):
            regular = Decimal("2.50") + Decimal(m) / 4
            product = Product(
                market_place_id=market.id,
                slug=f"{post.slug}-product-{m}",
                title=f"{post.title} product {m}",
                regular_price=regular,
                special_price=regular - Decimal("0.50") if m % 3 == 0 else None,
                currency="GBP",
            )
            rows.append((product, post.slug))
    session.add_all(product for product, _ in rows)
    await session.commit()
    return Catalogue(
        page_slugs=[post.slug for post in posts],
        products=[
            SeedProduct(
                id=product.id,
                market_place_id=market_place_id,
                page_slug=slug,
                title=product.title,
                price=product.special_price or product.regular_price or Decimal(0),
            )
            for product, slug in rows
            if (market_place_id := product.market_place_id) is not None
        ],
        calendar_ids={
            post.slug: calendar.id for post, calendar in zip(posts, calendars, strict=True)
        },
    )


def csrf_token_in(page: str) -> str:
    """The CSRF token of the first form on a page."""
    match = CSRF.search(page)
    if match is None:
        raise RuntimeError("no CSRF token on the page")
    return match.group(1)


# --- what the numbers were measured on --------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def usable_cpus() -> int:
    """What `nproc` says: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


async def server_versions(setup: BenchSetup) -> str:
    """PostgreSQL and Redis versions, for the report."""
    from services.redis_client import create_redis

    connection = await asyncpg.connect(**asyncpg_dsn(setup.database_url, setup.database_name))
    try:
        postgres = await connection.fetchval("SHOW server_version")
    finally:
        await connection.close()
    redis = create_redis(setup.redis_url)
    try:
        info = await redis.info("server")
    finally:
        await redis.aclose()
    return f"PostgreSQL {postgres.split()[0]}, Redis {info.get('redis_version', '?')}"


async def describe_machine(setup: BenchSetup) -> list[str]:
    """Lines saying where and on what the numbers were measured."""
    return [
        f"machine: {usable_cpus()} CPUs usable (nproc; {os.cpu_count()} online), {cpu_model()}",
        f"python {platform.python_version()} on {platform.system()} {platform.release()}",
        f"servers: {setup.servers} ({await server_versions(setup)}); "
        f"database {setup.database_name}",
    ]
