"""Background loops run beside the web app (event relay, reconcile sweep).

Each loop is a coroutine taking a stop event; it is started when the server starts
and asked to stop when the server stops. Stopping never cuts a round: the relay
finishes the batch it is publishing and the sweep the round it is in (each order of
a round is its own transaction, so a round cut short would only leave work for the
next one, but a SumUp call cut in the middle is not checked by anyone). A loop still
busy after `STOP_GRACE_SECONDS` is cancelled.

The hypercorn server stops the app only once its requests in flight are done, so
these loops go on serving them (the relay publishes their events) until then.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import asdict
from datetime import timedelta

from quart import Quart

from services.metrics import record_sweep

log = logging.getLogger(__name__)

Loop = Callable[[Quart, asyncio.Event], Awaitable[None]]
STOP_GRACE_SECONDS = 10.0


async def run_sweep_rounds(app: Quart, stop: asyncio.Event) -> None:
    """The reconcile sweep every `reconcile.interval_seconds`, counted in the metrics."""
    from bp.cart.services.checkout_attempts import CheckoutContext
    from bp.cart.services.reconcile import reconcile_orders

    settings = app.config["SETTINGS"]
    context = CheckoutContext(settings, app.extensions["sumup"])
    log.info("reconcile sweep: every %gs", settings.reconcile.interval_seconds)
    while not stop.is_set():
        started = time.monotonic()
        try:
            report = await reconcile_orders(
                app.extensions["db_sessionmaker"],
                context,
                batch_size=settings.reconcile.batch_size,
                expire_after=timedelta(minutes=settings.orders.unpaid_expiry_minutes),
            )
        except Exception:
            record_sweep(None)
            log.exception("reconcile sweep failed; trying again next time")
        else:
            findings = {k: v for k, v in asdict(report).items() if isinstance(v, int)}
            record_sweep(findings)
            log.debug(
                "reconcile round done",
                extra={**findings, "duration_s": round(time.monotonic() - started, 3)},
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=settings.reconcile.interval_seconds)
    log.info("reconcile sweep: stopped")


def background_loops(app: Quart) -> dict[str, Loop]:
    """The loops this app's settings switch on."""
    settings = app.config["SETTINGS"]
    loops: dict[str, Loop] = {}
    if settings.events.relay_in_app:
        from services.events import run_relay_in_app

        loops["events-relay"] = run_relay_in_app
    if settings.reconcile.in_app:
        loops["reconcile"] = run_sweep_rounds
    return loops


def init_background_tasks(app: Quart) -> None:
    """Start the enabled loops with the server and stop them gracefully with it."""
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []

    async def guarded(name: str, loop: Loop) -> None:
        try:
            await loop(app, stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background loop %s crashed", name)

    # while_serving starts after every before_serving hook (engine, Redis ready) and
    # stops before any after_serving hook closes them.
    @app.while_serving
    async def _run() -> AsyncGenerator[None, None]:
        stop.clear()
        for name, loop in background_loops(app).items():
            tasks.append(asyncio.create_task(guarded(name, loop), name=name))
        yield
        stop.set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in pending:
                log.warning(
                    "background loop did not finish its round in time; cancelling it",
                    extra={"loop": task.get_name(), "grace_s": STOP_GRACE_SECONDS},
                )
                task.cancel()
            if pending:
                await asyncio.wait(pending)
            tasks.clear()
