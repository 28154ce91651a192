"""Prometheus metrics of the service."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from quart import Quart, Response, g, request

REQUESTS = Counter("cart_http_requests_total", "HTTP requests", ["method", "endpoint", "status"])
LATENCY = Histogram(
    "cart_http_request_seconds",
    "HTTP request latency",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ORDERS_CREATED = Counter("cart_orders_created_total", "Orders created from carts")
ORDERS_PAID = Counter("cart_orders_paid_total", "Orders moved to paid")
SUMUP_CALLS = Counter("cart_sumup_calls_total", "Calls to SumUp", ["operation", "outcome"])
STATUS_MISMATCHES = Counter(
    "cart_sumup_mismatches_total", "SumUp checkouts that did not match their order"
)
EVENTS_PUBLISHED = Counter("cart_events_published_total", "Domain events relayed to Redis")


def init_metrics(app: Quart) -> None:
    """Count and time every request by endpoint (not by URL, to bound cardinality)."""

    @app.before_request
    async def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    async def _observe(response: Response) -> Response:
        endpoint = request.endpoint or "unmatched"
        started = g.get("request_started")
        if started is not None:
            LATENCY.labels(request.method, endpoint).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        return response
