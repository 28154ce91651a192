"""One soak run: servers up, shoppers and faults, settle, invariants, servers down."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
import uuid
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from sandbox.sumup_sandbox import SandboxControl
from soak.faults import FaultInjector, FaultLog, Targets
from soak.invariants import (
    FiveHundreds,
    Invariant,
    no_booking_in_two_live_orders,
    no_line_bought_and_still_in_cart,
    no_unexplained_5xx,
    one_paid_event_per_paid_order,
    payments_kept_or_refunded,
    payments_recorded_once,
    read_stream,
    sandbox_payments,
    totals_add_up,
)
from soak.servers import (
    ROOT,
    AppInstance,
    RedisServer,
    SandboxServer,
    SoakDatabase,
    postgres_server,
)
from soak.shoppers import Admin, Product, Shopper, World
from soak.traffic import Answer, Site, Traffic, webhook_answers

DATA_DIR = ROOT / ".data" / "soak-servers"
SOAK_USERS = 12
# Every shopper comes from 127.0.0.1, so the per-IP limits would throttle the crowd
# as one abuser: they are raised far past the run's rate. The per-session ones are
# raised above what one simulated shopper (no human think time) can send. The
# limiter stays on, so its Redis calls are exercised, Redis outage included.
RAISED_LIMITS = {
    "RATE_LIMIT_WRITES_PER_IP": "1000000/minute",
    "RATE_LIMIT_STATUS_PER_IP": "1000000/minute",
    "RATE_LIMIT_WEBHOOK_PER_IP": "1000000/minute",
    "RATE_LIMIT_INTERNAL_PER_TOKEN": "1000000/minute",
    "RATE_LIMIT_WRITES_PER_SESSION": "2000/minute",
    "RATE_LIMIT_PAY_PER_SESSION": "600/minute",
    "RATE_LIMIT_STATUS_PER_SESSION": "2000/minute",
    "RATE_LIMIT_MERGE_PER_USER": "600/minute",
}


@dataclass(frozen=True)
class SoakOptions:
    shoppers: int = 60
    duration: float = 300.0
    max_requests: int = 200_000
    cycle_seconds: float = 60.0
    signed_in_share: float = 0.4
    settle_seconds: float = 120.0
    sweep_seconds: float = 2.0
    refund_every: float = 2.0
    unpaid_expiry_minutes: int = 2
    checkout_lifetime_minutes: int = 3
    sandbox_checkout_ttl: float = 150.0
    sumup_timeout_seconds: float = 3.0
    seed: int = 1


@dataclass
class SoakResult:
    options: SoakOptions
    servers: str = ""
    started_at: str = ""
    wall_seconds: float = 0.0
    traffic: Traffic = field(default_factory=Traffic)
    faults: FaultLog = field(default_factory=FaultLog)
    actions: Counter[str] = field(default_factory=Counter)
    refund_outcomes: Counter[str] = field(default_factory=Counter)
    invariants: list[Invariant] = field(default_factory=list)
    failures: FiveHundreds = field(default_factory=FiveHundreds)
    settled_after: float | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    app_errors: list[str] = field(default_factory=list)
    signed_in: int = 0
    webhooks: list[Answer] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.invariants) and all(i.passed for i in self.invariants)


async def seed(database_url: str) -> None:
    """The demo catalogue (pages, products, calendars, a SumUp account per page) and users."""
    from models import User
    from sandbox.demo_data import load_demo_data
    from services.db import create_engine, create_sessionmaker

    engine = create_engine(database_url, pool_size=1)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            await load_demo_data(session)
            session.add_all(User(email=f"soak-{n}@rose-ash.coop") for n in range(SOAK_USERS))
    finally:
        await engine.dispose()


async def catalogue(db: asyncpg.Connection) -> tuple[list[Product], list[str]]:
    products = [
        Product(row["id"], row["market_place_id"])
        for row in await db.fetch(
            "SELECT id, market_place_id FROM products WHERE deleted_at IS NULL ORDER BY id"
        )
    ]
    slugs = [
        row["slug"]
        for row in await db.fetch(
            "SELECT p.slug FROM posts p JOIN market_places m ON m.post_id = p.id ORDER BY p.id"
        )
    ]
    return products, slugs


def instance_env(
    options: SoakOptions, db: SoakDatabase, redis: RedisServer, sandbox: SandboxServer, run: str
) -> dict[str, str]:
    """What both instances share (each adds its own PUBLIC_URL)."""
    return {
        "DATABASE_URL_ASYNC": db.url,
        "REDIS_URL": redis.url,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "INTERNAL_API_TOKEN": secrets.token_urlsafe(32),
        "APP_ENV": "development",
        "SUMUP_BASE_URL": sandbox.url,
        "SUMUP_API_KEY": "sup_sk_sandbox_coop",
        "SUMUP_MERCHANT_CODE": "MCOOP0001",
        "SUMUP_TIMEOUT_SECONDS": str(options.sumup_timeout_seconds),
        "SUMUP_CHECKOUT_LIFETIME_MINUTES": str(options.checkout_lifetime_minutes),
        "ORDERS_UNPAID_EXPIRY_MINUTES": str(options.unpaid_expiry_minutes),
        "EVENTS_STREAM": f"soak:{run}:events",
        "EVENTS_RELAY_IN_APP": "true",
        "RECONCILE_IN_APP": "true",
        "SOAK_SWEEP_SECONDS": str(options.sweep_seconds),
        "DB_POOL_SIZE": "5",
        "RATE_LIMITS_ENABLED": "true",
        **RAISED_LIMITS,
    }


async def unsettled(db: asyncpg.Connection, control: SandboxControl) -> list[str]:
    """What the sweep still has to do before the invariants can be judged."""
    left = []
    payments = sandbox_payments(await control.stats())
    recorded = {
        row["sumup_checkout_id"]
        for row in await db.fetch(
            "SELECT sumup_checkout_id FROM checkout_attempts WHERE sumup_status = 'PAID'"
        )
    }
    if missing := [p for p in payments if p.checkout_id not in recorded]:
        left.append(f"{len(missing)} SumUp payments not recorded yet")
    if pending := await db.fetchval("SELECT count(*) FROM refunds WHERE status = 'pending'"):
        left.append(f"{pending} refunds pending")
    unrefunded = await db.fetchval(
        "SELECT count(*) FROM checkout_attempts a WHERE a.sumup_status = 'PAID' "
        "AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.paid_attempt_id = a.id) "
        "AND a.amount > (SELECT coalesce(sum(r.amount), 0) FROM refunds r "
        "  WHERE r.attempt_id = a.id AND r.status = 'succeeded')"
    )
    if unrefunded:
        left.append(f"{unrefunded} surplus payments not refunded yet")
    if unpublished := await db.fetchval(
        "SELECT count(*) FROM domain_events WHERE published_at IS NULL"
    ):
        left.append(f"{unpublished} events not published yet")
    return left


async def settle(
    db: asyncpg.Connection, control: SandboxControl, traffic: Traffic, seconds: float
) -> tuple[float | None, list[str]]:
    """Wait for the sweep (and relay) to finish what the faults left; (when, what is left)."""
    started = traffic.now()
    left: list[str] = []
    while traffic.now() - started < seconds:
        left = await unsettled(db, control)
        if not left:
            return traffic.now() - started, []
        await asyncio.sleep(1.0)
    return None, left


async def gather_facts(db: asyncpg.Connection, control: SandboxControl) -> dict[str, Any]:
    stats = await control.stats()
    payments = sandbox_payments(stats)

    def counted(rows: list[asyncpg.Record]) -> dict[str, int]:
        return {str(row[0]): int(row[1]) for row in rows}

    refunds = await db.fetch(
        "SELECT requested_by, status, count(*) AS n, sum(amount) AS total FROM refunds "
        "GROUP BY 1, 2 ORDER BY 1, 2"
    )
    return {
        "orders by status": counted(
            await db.fetch("SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 1")
        ),
        "attempts by SumUp status": counted(
            await db.fetch(
                "SELECT coalesce(sumup_status, 'never created') || "
                "CASE WHEN surplus_reason IS NOT NULL THEN ' (surplus)' ELSE '' END, count(*) "
                "FROM checkout_attempts GROUP BY 1 ORDER BY 1"
            )
        ),
        "order transitions": counted(
            await db.fetch(
                "SELECT coalesce(from_status, '∅') || ' → ' || to_status || ' (' || cause || ')', "
                "count(*) FROM order_transitions GROUP BY 1 ORDER BY 2 DESC"
            )
        ),
        "refunds": {
            f"{row['requested_by']} {row['status']}": f"{row['n']} ({row['total']})"
            for row in refunds
        },
        "SumUp": {
            "checkouts created": stats["created"],
            "create calls": stats["create_attempts"],
            "payments taken": len(payments),
            "money": stats["money"],
            "refund calls": stats["refund_attempts"],
            "refunds applied": stats["refunds_applied"],
        },
        "users signed in (distinct)": await db.fetchval(
            "SELECT count(DISTINCT user_id) FROM orders WHERE user_id IS NOT NULL"
        ),
        "cart lines live / bought out": await db.fetchval(
            "SELECT count(*) FILTER (WHERE deleted_at IS NULL)::text || ' / ' || "
            "count(*) FILTER (WHERE deleted_at IS NOT NULL)::text FROM cart_items"
        ),
        "paid money kept by orders": str(
            Decimal(
                await db.fetchval(
                    "SELECT coalesce(sum(total_amount - refunded_amount), 0) FROM orders "
                    "WHERE paid_attempt_id IS NOT NULL"
                )
            )
        ),
    }


async def drive(
    options: SoakOptions,
    result: SoakResult,
    db: SoakDatabase,
    redis: RedisServer,
    sandbox: SandboxServer,
    instances: list[AppInstance],
    internal_token: str,
    stream: str,
) -> None:
    """Shoppers, the admin and the faults until the deadline; then settle and check."""
    from services.redis_client import create_redis

    control = SandboxControl(sandbox.url)
    # The faults terminate every connection to the soak's database: the checks open theirs
    # once the faults are over.
    connection = await asyncpg.connect(**db.dsn())
    try:
        products, slugs = await catalogue(connection)
        users = [
            row["email"]
            for row in await connection.fetch(
                "SELECT email FROM users WHERE email LIKE 'soak-%' ORDER BY id"
            )
        ]
    finally:
        await connection.close()
    try:
        await asyncio.gather(*(instance.wait_ready() for instance in instances))
        traffic = result.traffic = Traffic()
        site = Site([(i.name, i.url) for i in instances], traffic)
        world = World(
            site=site,
            traffic=traffic,
            sandbox_url=sandbox.url,
            control=control,
            products=products,
            page_slugs=slugs,
            user_emails=users,
            internal_token=internal_token,
            deadline=options.duration,
            request_budget=options.max_requests,
        )
        shoppers = [
            Shopper(
                world,
                n,
                signs_in=n < round(options.shoppers * options.signed_in_share),
                seed=options.seed * 10_000 + n,
            )
            for n in range(options.shoppers)
        ]
        result.signed_in = sum(1 for s in shoppers if s.email)
        admin = Admin(world, db.dsn(), seed=options.seed)
        injector = FaultInjector(
            Targets(control, instances, redis, db),
            traffic,
            duration=options.duration,
            cycle_seconds=min(options.cycle_seconds, options.duration),
        )
        result.faults = injector.log
        await asyncio.wait_for(
            asyncio.gather(
                *(shopper.run() for shopper in shoppers),
                admin.run(every=options.refund_every),
                injector.run(),
            ),
            timeout=options.duration + 180,
        )
        result.actions = world.actions
        result.refund_outcomes = admin.outcomes
        # Faults are over: everything is up and SumUp behaves.
        await control.behave()
        connection = await asyncpg.connect(**db.dsn())
        result.settled_after, left = await settle(
            connection, control, traffic, options.settle_seconds
        )
        stats = await control.stats()
        payments = sandbox_payments(stats)
        redis_client = create_redis(redis.url)
        try:
            entries = await read_stream(redis_client, stream)
        finally:
            await redis_client.aclose()
        result.webhooks = webhook_answers(
            sandbox.log_path.read_text(errors="replace"),
            traffic.wall0,
            {instance.port: instance.name for instance in instances},
        )
        five_hundreds, result.failures = no_unexplained_5xx(
            traffic.answers + result.webhooks, injector.log.windows
        )
        result.invariants = [
            await payments_recorded_once(connection, payments),
            await payments_kept_or_refunded(connection, payments, stats["money"]),
            await one_paid_event_per_paid_order(connection, entries),
            await no_line_bought_and_still_in_cart(connection),
            await no_booking_in_two_live_orders(connection),
            await totals_add_up(connection),
            five_hundreds,
        ]
        if left:
            result.invariants[0].note += f"; not settled after {options.settle_seconds:g}s: " + (
                ", ".join(left)
            )
        result.facts = await gather_facts(connection, control)
    finally:
        await control.aclose()
        await connection.close()
    for instance in instances:
        result.app_errors += [
            f"{instance.name}: {line}" for line in logged_errors(instance.log_text())
        ]


def run_soak(options: SoakOptions, *, keep_logs: Path | None = None) -> SoakResult:
    """The whole soak, every server it started stopped again, whatever happens."""
    run = uuid.uuid4().hex[:10]
    result = SoakResult(options, started_at=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    began = time.monotonic()
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cart-soak-")))
        base_url, result.servers = stack.enter_context(postgres_server(DATA_DIR))
        db = SoakDatabase(base_url, f"cart_soak_{run}")
        db.create()
        stack.callback(db.drop)
        asyncio.run(seed(db.url))
        redis = RedisServer(workdir)
        redis.start()
        stack.callback(redis.stop)
        sandbox = SandboxServer(workdir, checkout_ttl_seconds=options.sandbox_checkout_ttl)
        sandbox.start()
        stack.callback(sandbox.stop)
        env = instance_env(options, db, redis, sandbox, run)
        instances = [AppInstance(name, workdir, env) for name in ("A", "B")]
        for instance in instances:
            stack.callback(instance.stop)
            instance.spawn()
        if keep_logs is not None:
            stack.callback(_copy_logs, workdir, keep_logs)
        asyncio.run(
            drive(
                options,
                result,
                db,
                redis,
                sandbox,
                instances,
                env["INTERNAL_API_TOKEN"],
                env["EVENTS_STREAM"],
            )
        )
    result.wall_seconds = time.monotonic() - began
    return result


def _copy_logs(workdir: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for log in workdir.glob("*.log"):
        (target / log.name).write_bytes(log.read_bytes())


def environment_summary() -> str:
    """Where the run happened, for the report."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpus} CPUs usable"


ERROR_MARKS = (
    " ERROR ",
    " CRITICAL ",
    "[error",
    "[critical",
    '"level": "error"',
    '"level": "critical"',
)


def logged_errors(log_text: str) -> list[str]:
    """Each error record of a server log (readable or JSON lines), with the exception
    that ended its traceback when one follows."""
    records: list[list[str]] = []
    for line in log_text.splitlines():
        if any(mark in line for mark in ERROR_MARKS):
            records.append([line.strip()])
        elif records and len(records[-1]) == 1 and _is_exception_line(line):
            records[-1].append(line.strip())
    return [" → ".join(record) for record in records]


def _is_exception_line(line: str) -> bool:
    """`ValueError: …` ends a traceback; log records start with a date, `[` or `{`."""
    if not line or line[0].isspace() or line[0].isdigit() or line[0] in "[{":
        return False
    return not line.startswith(("Traceback", "During handling", "The above exception"))
