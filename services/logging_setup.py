"""Logging: JSON lines in production, readable text in development, one access line per request.

The code logs with the standard library (`logging.getLogger(__name__)`, details in
`extra={...}`); structlog's `ProcessorFormatter` renders every record, with the request
id of the request it belongs to, and scrubs the configured secrets from it. The request
id comes from the caller's `X-Request-ID` (when it is a sane token) or is made here; it
is echoed in the response and available to any code through `current_request_id()`.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from json import dumps as json_dumps
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import structlog
from quart import Quart, Response, g, request

if TYPE_CHECKING:
    from config import Settings

REQUEST_ID_HEADER = "X-Request-ID"
# What we accept from a caller as a request id: short, printable, no spaces or quotes.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_REDACTED = "[redacted]"
# Loggers that say too much at INFO, or repeat what our access line says.
_QUIET = {
    "alembic.runtime.plugins": logging.WARNING,
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "hypercorn.access": logging.WARNING,
    "asyncio": logging.WARNING,
}

_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger("cart.access")


def current_request_id() -> str | None:
    """The id of the request being served here, None outside one."""
    return _request_id.get()


def bind_request_id(request_id: str | None) -> None:
    """Make `request_id` the current one (for work done on a request's behalf)."""
    _request_id.set(request_id)


def request_id_from(header: str | None) -> str:
    """The caller's request id when it is a sane token, otherwise a new one."""
    if header and _SANE_REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


# --- processors ----------------------------------------------------------------------

EventDict = MutableMapping[str, Any]


def _add_request_id(_: Any, __: str, event: EventDict) -> EventDict:
    request_id = _request_id.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


class _Redactor:
    """Replaces every configured secret's value, wherever it shows in a line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self.secrets:
                if secret in value:
                    value = value.replace(secret, _REDACTED)
            return value
        if isinstance(value, dict):
            return {key: self.scrub(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(item) for item in value]
        return value

    def __call__(self, _: Any, __: str, event: EventDict) -> EventDict:
        if not self.secrets:
            return event
        for key, value in event.items():
            if not key.startswith("_"):
                event[key] = self.scrub(value)
        return event


def _shared_processors(redactor: _Redactor) -> list[Any]:
    return [
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # The message is "message", so an `extra={"event": "order.paid"}` keeps both.
        structlog.processors.EventRenamer("message"),
        structlog.stdlib.ExtraAdder(),
        structlog.processors.format_exc_info,
        redactor,
    ]


class _OurHandler(logging.StreamHandler):
    """Marks the handler this module installed, so configuring again replaces it."""


# What the access line carries besides the common keys (`_finish` below logs exactly these).
ACCESS_FIELDS = ("method", "route", "status", "duration_ms", "pid")


class _JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, with the access line rendered directly.

    The access line is written once per request, so the whole processor chain (a copy
    of the record, extras found by elimination, a stamper, a renderer) showed in every
    request's cost. Its fields are known: the same keys, in the same order, with the
    same scrubbing, are put together here and dumped once.
    """

    def __init__(self, redactor: _Redactor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        if record.name != access_log.name or record.args or record.exc_info:
            return super().format(record)
        event: dict[str, Any] = {}
        request_id = _request_id.get()
        if request_id is not None:
            event["request_id"] = request_id
        event["level"] = record.levelname.lower()
        event["logger"] = record.name
        event["timestamp"] = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        event["message"] = record.getMessage()
        for key in ACCESS_FIELDS:
            event[key] = getattr(record, key, None)
        return json_dumps(self.redactor(None, "", event))


def log_formatter(*, json: bool, secrets: Iterable[str] = ()) -> logging.Formatter:
    """The formatter of every record: JSON (`json`) or readable text, secrets scrubbed."""
    redactor = _Redactor(secrets)
    chain: dict[str, Any] = dict(foreign_pre_chain=_shared_processors(redactor))
    meta = structlog.stdlib.ProcessorFormatter.remove_processors_meta
    if json:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        return _JsonFormatter(redactor, processors=[meta, renderer], **chain)
    console = structlog.dev.ConsoleRenderer(
        colors=sys.stderr.isatty(), event_key="message", pad_event_to=40
    )
    return structlog.stdlib.ProcessorFormatter(processors=[meta, console], **chain)


def configure_logging(*, json: bool, level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Render every stdlib record with `log_formatter`, once per process.

    A root logger that already has handlers not made here (pytest's, an embedding
    program's) keeps them; only ours is replaced.
    """
    secrets = list(secrets)
    formatter = log_formatter(json=json, secrets=secrets)
    # structlog's own loggers (structlog.get_logger) end in the same formatter.
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(_Redactor(secrets)),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    ours = [handler for handler in root.handlers if isinstance(handler, _OurHandler)]
    for handler in ours:
        root.removeHandler(handler)
    if ours or not root.handlers:
        handler = _OurHandler(sys.stderr)
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(level)
    for name, quiet_level in _QUIET.items():
        logging.getLogger(name).setLevel(max(quiet_level, logging.getLevelName(level)))
    # hypercorn's error logger gets no handler of its own from us: it propagates to ours.
    logging.getLogger("hypercorn.error").handlers.clear()
    logging.getLogger("hypercorn.error").propagate = True


def configured_secrets(settings: Settings) -> list[str]:
    """The values no log line may show: the secrets and the passwords in the URLs."""
    secrets = [settings.secret_key.reveal(), settings.internal_api_token.reveal()]
    for secret in (
        settings.metrics_token,
        settings.sumup.api_key,
        settings.sumup.webhook_signing_secret,
    ):
        if secret is not None:
            secrets.append(secret.reveal())
    for url in (settings.database_url, settings.redis_url):
        password = urlsplit(url).password
        if password:
            secrets.append(unquote(password))
    return secrets


def setup_logging(settings: Settings) -> None:
    """Logging as the settings say: JSON in production, text elsewhere, secrets scrubbed."""
    configure_logging(
        json=settings.log_format == "json",
        level=settings.log.level,
        secrets=configured_secrets(settings),
    )


# --- one access line per request ---------------------------------------------------------


def init_request_logging(app: Quart) -> None:
    """Give every request an id (echoed in `X-Request-ID`) and log one line when it ends."""

    @app.before_request
    async def _start() -> None:
        request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        _request_id.set(request_id)
        g.request_id = request_id
        g.request_started_at = time.perf_counter()  # the metrics time the request from it too

    @app.after_request
    async def _finish(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is not None:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("request_started_at")
        duration_ms = round((time.perf_counter() - started) * 1000, 1) if started else None
        rule = request.url_rule
        # The route, not the path: paths carry order ids and webhook tokens.
        access_log.info(
            "request",
            extra={
                "method": request.method,
                "route": rule.rule if rule is not None else "unmatched",
                "status": response.status_code,
                "duration_ms": duration_ms,
                "pid": os.getpid(),  # which worker served it
            },
        )
        return response
