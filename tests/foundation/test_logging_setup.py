"""Logs: stdlib records rendered as JSON (extras included), request ids, secrets scrubbed."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from quart.typing import TestClientProtocol as Client

from services.logging_setup import (
    REQUEST_ID_HEADER,
    bind_request_id,
    current_request_id,
    log_formatter,
    request_id_from,
)


def _render(record_kwargs: dict[str, Any], *, secrets: list[str] | None = None) -> dict[str, Any]:
    record = logging.getLogger("services.order_lifecycle").makeRecord(
        "services.order_lifecycle",
        logging.INFO,
        __file__,
        1,
        "order paid",
        (),
        None,
        extra=record_kwargs,
    )
    line = log_formatter(json=True, secrets=secrets or []).format(record)
    rendered: dict[str, Any] = json.loads(line)
    return rendered


def test_a_stdlib_record_renders_as_one_json_object_with_its_extras() -> None:
    rendered = _render({"order_id": 42, "event": "order.paid", "total": "12.50"})
    assert rendered["message"] == "order paid"
    assert rendered["event"] == "order.paid"
    assert rendered["order_id"] == 42
    assert rendered["total"] == "12.50"
    assert rendered["level"] == "info"
    assert rendered["logger"] == "services.order_lifecycle"
    assert rendered["timestamp"].endswith("Z")


def test_a_record_carries_the_request_id_it_was_logged_under() -> None:
    bind_request_id("req-77")
    try:
        assert _render({})["request_id"] == "req-77"
    finally:
        bind_request_id(None)
    assert "request_id" not in _render({})


def test_configured_secrets_are_scrubbed_wherever_they_show() -> None:
    rendered = _render(
        {"detail": "key sup_sk_live_hush in a sentence", "nested": {"k": ["sup_sk_live_hush"]}},
        secrets=["sup_sk_live_hush"],
    )
    assert "sup_sk_live_hush" not in json.dumps(rendered)
    assert rendered["detail"] == "key [redacted] in a sentence"


def test_an_exception_is_rendered_inside_the_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), __import__("sys").exc_info()
        )
    line = log_formatter(json=True).format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


@pytest.mark.parametrize(
    ("header", "kept"),
    [("abc-123_X.y:z", True), ("", False), ("has spaces", False), ("x" * 200, False)],
)
def test_a_callers_request_id_is_kept_only_when_it_is_a_sane_token(header: str, kept: bool) -> None:
    made = request_id_from(header)
    assert (made == header) is kept
    if not kept:
        assert len(made) == 32


@pytest.fixture
def access_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(log_formatter(json=True))
    logger = logging.getLogger("cart.access")
    logger.addHandler(handler)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)


async def test_each_request_gets_one_access_line_and_its_id_echoed(
    client: Client, access_lines: io.StringIO
) -> None:
    response = await client.get("/healthz", headers={REQUEST_ID_HEADER: "from-the-proxy-1"})
    made = await client.get("/orders/999/")
    assert response.headers[REQUEST_ID_HEADER] == "from-the-proxy-1"
    assert len(made.headers[REQUEST_ID_HEADER]) == 32
    lines = [json.loads(line) for line in access_lines.getvalue().splitlines()]
    assert [(line["route"], line["request_id"]) for line in lines] == [
        ("/healthz", "from-the-proxy-1"),
        ("/orders/<bigid:order_id>/", made.headers[REQUEST_ID_HEADER]),
    ]
    assert lines[0]["method"] == "GET" and lines[0]["status"] == 200
    assert isinstance(lines[0]["duration_ms"], float)
    assert current_request_id() is None  # nothing leaks out of the request


def _access_record(**fields: Any) -> logging.LogRecord:
    return logging.getLogger("cart.access").makeRecord(
        "cart.access", logging.INFO, __file__, 1, "request", (), None, extra=fields
    )


def test_the_access_line_has_the_keys_and_order_of_every_other_line() -> None:
    fields = {"method": "GET", "route": "/cart/", "status": 200, "duration_ms": 1.5, "pid": 7}
    bind_request_id("req-9")
    try:
        access = json.loads(log_formatter(json=True).format(_access_record(**fields)))
        general = json.loads(
            log_formatter(json=True).format(
                logging.getLogger("other").makeRecord(
                    "other", logging.INFO, __file__, 1, "request", (), None, extra=fields
                )
            )
        )
    finally:
        bind_request_id(None)
    assert list(access) == list(general)
    assert {k: v for k, v in access.items() if k not in ("logger", "timestamp")} == {
        k: v for k, v in general.items() if k not in ("logger", "timestamp")
    }
    assert access["logger"] == "cart.access" and access["timestamp"].endswith("Z")


def test_a_secret_sent_as_a_request_id_is_scrubbed_from_the_access_line() -> None:
    # Secrets are URL-safe tokens: one passes as a "sane" X-Request-ID.
    secret = "s3cret-token_value"
    assert request_id_from(secret) == secret
    bind_request_id(secret)
    try:
        record = _access_record(method="GET", route="/", status=200, duration_ms=1.0, pid=1)
        line = log_formatter(json=True, secrets=[secret]).format(record)
    finally:
        bind_request_id(None)
    assert secret not in line
    assert json.loads(line)["request_id"] == "[redacted]"
