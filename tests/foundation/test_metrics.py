"""Metrics helpers: SumUp latency and errors per operation, sweep rounds, checkout outcomes."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY
from quart.typing import TestClientProtocol as Client

from services.metrics import checkout_outcome, observe_sumup, record_sweep


def _value(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


async def test_a_sumup_call_is_timed_under_its_operation() -> None:
    before = _value("cart_sumup_request_seconds_count", {"operation": "create"})
    total = _value("cart_sumup_request_seconds_sum", {"operation": "create"})
    async with observe_sumup("create"):
        await asyncio.sleep(0.05)
    assert _value("cart_sumup_request_seconds_count", {"operation": "create"}) == before + 1
    assert _value("cart_sumup_request_seconds_sum", {"operation": "create"}) - total >= 0.05


async def test_a_failing_sumup_call_counts_its_error_and_still_raises() -> None:
    labels = {"operation": "get", "error": "TimeoutError"}
    before = _value("cart_sumup_errors_total", labels)
    timed = _value("cart_sumup_request_seconds_count", {"operation": "get"})
    with pytest.raises(TimeoutError):
        async with observe_sumup("get"):
            raise TimeoutError
    assert _value("cart_sumup_errors_total", labels) == before + 1
    assert _value("cart_sumup_request_seconds_count", {"operation": "get"}) == timed + 1


def test_a_sweep_round_counts_its_findings_and_a_failed_round_counts_as_failed() -> None:
    ok, failed = (
        _value("cart_reconcile_runs_total", {"result": "ok"}),
        _value("cart_reconcile_runs_total", {"result": "failed"}),
    )
    paid = _value("cart_reconcile_findings_total", {"finding": "paid"})
    record_sweep({"checked": 3, "paid": 2, "expired": 0})
    record_sweep(None)
    assert _value("cart_reconcile_runs_total", {"result": "ok"}) == ok + 1
    assert _value("cart_reconcile_runs_total", {"result": "failed"}) == failed + 1
    assert _value("cart_reconcile_findings_total", {"finding": "paid"}) == paid + 2


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (303, "sent_to_payment"),
        (503, "payment_provider_unavailable"),
        (429, "rate_limited"),
        (409, "refused"),
    ],
)
def test_a_checkout_answer_names_its_outcome(status: int, outcome: str) -> None:
    assert checkout_outcome(status) == outcome


async def test_requests_are_counted_and_timed_by_route_and_an_unknown_method_is_other(
    client: Client,
) -> None:
    labels = {"method": "GET", "route": "/healthz", "status": "200"}
    before = _value("cart_http_requests_total", labels)
    timed = _value("cart_http_request_seconds_count", {"method": "GET", "route": "/healthz"})
    for _ in range(2):
        assert (await client.get("/healthz")).status_code == 200
    assert _value("cart_http_requests_total", labels) == before + 2
    assert (
        _value("cart_http_request_seconds_count", {"method": "GET", "route": "/healthz"})
        == timed + 2
    )
    other = {"method": "other", "route": "unmatched", "status": "405"}
    counted = _value("cart_http_requests_total", other)
    response = await client.open("/healthz", method="BREW", json=None)
    assert response.status_code == 405
    assert _value("cart_http_requests_total", other) == counted + 1
    assert _value("cart_http_requests_total", {**other, "method": "BREW"}) == 0
