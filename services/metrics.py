"""Prometheus metrics of the service, correct across worker processes.

Counters and histograms live in this module. When `PROMETHEUS_MULTIPROC_DIR` is set
(`services.server` sets it for its workers, to a folder it empties at start), every
worker writes its samples there and a scrape of any worker reports the sum of all of
them; without it (tests, `hypercorn app:app` with one worker) the process's own
registry is reported. Gauges that describe the database (orders by state, outbox
lag, the relay's wait) are not kept in any process: they are read from PostgreSQL
when `/metrics` is scraped (`database_gauges`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from quart import Quart, Response, g, request
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter("cart_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "cart_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
ORDERS_CREATED = Counter("cart_orders_created_total", "Orders created from carts")
ORDERS_PAID = Counter("cart_orders_paid_total", "Orders moved to paid")
SUMUP_CALLS = Counter("cart_sumup_calls_total", "Calls to SumUp", ["operation", "outcome"])
SUMUP_LATENCY = Histogram(
    "cart_sumup_request_seconds",
    "Time a call to SumUp's API took, by operation (create, get, list, deactivate, refund)",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
SUMUP_ERRORS = Counter(
    "cart_sumup_errors_total",
    "Calls to SumUp that raised, by operation and error class",
    ["operation", "error"],
)
STATUS_MISMATCHES = Counter(
    "cart_sumup_mismatches_total", "SumUp checkouts that did not match their order"
)
CHECKOUT_OUTCOMES = Counter(
    "cart_checkout_outcomes_total",
    "Checkout and pay-again requests by how they ended for the shopper",
    ["outcome"],
)
EVENTS_PUBLISHED = Counter("cart_events_published_total", "Domain events relayed to Redis")
SWEEP_RUNS = Counter("cart_reconcile_runs_total", "Reconcile sweep rounds", ["result"])
SWEEP_FINDINGS = Counter(
    "cart_reconcile_findings_total",
    "What reconcile sweeps found: orders checked, paid, failed, expired, errors",
    ["finding"],
)

# The routes where a shopper starts paying; their answer is the checkout's outcome.
CHECKOUT_ENDPOINTS = frozenset({"cart_global.checkout", "cart_page.checkout", "order.pay"})


@asynccontextmanager
async def observe_sumup(operation: str) -> AsyncIterator[None]:
    """Time one call to SumUp; an exception leaving the block is counted as its error."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as error:
        SUMUP_ERRORS.labels(operation, type(error).__name__).inc()
        raise
    finally:
        SUMUP_LATENCY.labels(operation).observe(time.perf_counter() - started)


def record_sweep(findings: dict[str, int] | None) -> None:
    """Count one reconcile round: its findings, or a failed round when None."""
    SWEEP_RUNS.labels("ok" if findings is not None else "failed").inc()
    for finding, count in (findings or {}).items():
        if count:
            SWEEP_FINDINGS.labels(finding).inc(count)


def checkout_outcome(status: int) -> str:
    """How a checkout request ended, from its answer."""
    if status in (302, 303):
        return "sent_to_payment"  # SumUp's hosted page, or the order that is already paid
    if status >= 500:
        return "payment_provider_unavailable"
    if status == 429:
        return "rate_limited"
    return "refused"


# Any token is a method to HTTP: others are counted together, so a client cannot mint series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def init_metrics(app: Quart) -> None:
    """Count and time every request by route (the rule, not the URL, to bound cardinality)."""

    # The labelled children, looked up once per method, route and status: `labels()`
    # validates and locks on every call. Routes are the app's rules, so these stay small.
    latencies: dict[tuple[str, str], Any] = {}
    counts: dict[tuple[str, str, int], Any] = {}

    @app.after_request
    async def _observe(response: Response) -> Response:
        rule = request.url_rule
        route = rule.rule if rule is not None else "unmatched"
        method = request.method if request.method in KNOWN_METHODS else "other"
        # Started by the request logging's before-request hook (`services.logging_setup`).
        started = g.get("request_started_at")
        if started is not None:
            latency = latencies.get((method, route))
            if latency is None:
                latency = latencies[method, route] = LATENCY.labels(method, route)
            latency.observe(time.perf_counter() - started)
        status = response.status_code
        count = counts.get((method, route, status))
        if count is None:
            count = counts[method, route, status] = REQUESTS.labels(method, route, str(status))
        count.inc()
        if request.endpoint in CHECKOUT_ENDPOINTS:
            CHECKOUT_OUTCOMES.labels(checkout_outcome(status)).inc()
        return response


# --- the scrape ----------------------------------------------------------------------


def process_metrics() -> bytes:
    """The counters and histograms: of all workers in multiprocess mode, else this one's."""
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


class _Families:
    """A collector that hands out families computed beforehand (at scrape time)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def render(families: list[Metric]) -> bytes:
    """The families in Prometheus' text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def _split_lock_key(key: int) -> tuple[int, int]:
    """pg_locks shows a bigint advisory key as two 32-bit halves (classid, objid)."""
    return (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF


async def _orders_by_status(connection: AsyncConnection) -> list[Metric]:
    from models.order import ORDER_STATUSES, Order

    rows = await connection.execute(select(Order.status, func.count()).group_by(Order.status))
    counts = dict.fromkeys(ORDER_STATUSES, 0) | {status: count for status, count in rows}
    family = GaugeMetricFamily("cart_orders", "Orders by status, now", labels=["status"])
    for status, count in sorted(counts.items()):
        family.add_metric([status], count)
    return [family]


async def _outbox(connection: AsyncConnection) -> list[Metric]:
    from models.domain_event import DomainEvent

    waiting, oldest = (
        await connection.execute(
            select(
                func.count(),
                func.extract("epoch", func.clock_timestamp() - func.min(DomainEvent.occurred_at)),
            ).where(DomainEvent.published_at.is_(None))
        )
    ).one()
    return [
        GaugeMetricFamily(
            "cart_outbox_unpublished", "Domain events not yet published", value=waiting
        ),
        GaugeMetricFamily(
            "cart_outbox_oldest_unpublished_seconds",
            "Age of the oldest unpublished domain event (0 when none waits)",
            value=float(oldest or 0),
        ),
    ]


async def _relay_wait(connection: AsyncConnection) -> list[Metric]:
    """What holds the relay back: transactions that emitted events and are still open.

    The relay publishes only up to the oldest open emitting transaction (the outbox
    write lock, services/events.py); a long one here is a stuck event stream.
    """
    from services.events import OUTBOX_WRITE_LOCK

    high, low = _split_lock_key(OUTBOX_WRITE_LOCK)
    open_seconds, waiting = (
        await connection.execute(
            text(
                "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - a.xact_start))"
                "         FILTER (WHERE l.granted), 0),"
                "       count(*) FILTER (WHERE NOT l.granted)"
                "  FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.database = ("
                "       SELECT oid FROM pg_database WHERE datname = current_database())"
                "   AND l.classid = CAST(:high AS oid) AND l.objid = CAST(:low AS oid)"
                "   AND l.objsubid = 1"
            ),
            {"high": high, "low": low},
        )
    ).one()
    return [
        GaugeMetricFamily(
            "cart_outbox_oldest_open_emitter_seconds",
            "How long the oldest open transaction that wrote events has been open "
            "(the relay cannot publish past it)",
            value=float(open_seconds),
        ),
        GaugeMetricFamily(
            "cart_outbox_relay_waiting",
            "Relays waiting right now for open emitting transactions to end",
            value=waiting,
        ),
    ]


async def database_gauges(engine: AsyncEngine) -> list[Metric]:
    """Gauges read from PostgreSQL now; a part that cannot be read is left out and logged."""
    families: list[Metric] = []
    up = 1
    try:
        async with engine.connect() as connection:
            # LOCAL: the pooled connection keeps its own timeout once this scrape ends.
            await connection.execute(text("SET LOCAL statement_timeout = '2s'"))
            for part in (_orders_by_status, _outbox, _relay_wait):
                try:
                    async with connection.begin_nested():
                        families.extend(await part(connection))
                except Exception as error:
                    up = 0
                    log.warning(
                        "metrics: %s could not be read",
                        part.__name__.strip("_"),
                        extra={"error": type(error).__name__},
                    )
            await connection.rollback()
    except Exception as error:
        up = 0
        log.warning("metrics: the database did not answer", extra={"error": type(error).__name__})
    families.append(
        GaugeMetricFamily(
            "cart_metrics_database_up",
            "1 when every database gauge of this scrape could be read",
            value=up,
        )
    )
    return families


def metrics_response(body: bytes) -> Response:
    """A Prometheus text answer."""
    return Response(body, content_type=CONTENT_TYPE_LATEST)
