"""Background loops run beside the web app (event relay, reconcile sweep).

Each loop is a coroutine taking a stop event; it is started in `before_serving`
and asked to stop in `after_serving`, then given a grace period to finish its batch.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable

from quart import Quart

log = logging.getLogger(__name__)

Loop = Callable[[Quart, asyncio.Event], Awaitable[None]]
STOP_GRACE_SECONDS = 10.0


def background_loops(app: Quart) -> dict[str, Loop]:
    """The loops this app's settings switch on."""
    settings = app.config["SETTINGS"]
    loops: dict[str, Loop] = {}
    if settings.events.relay_in_app:
        from services.events import run_relay_in_app

        loops["events-relay"] = run_relay_in_app
    if settings.reconcile.in_app:
        from bp.cart.services.reconcile import run_reconcile_in_app

        loops["reconcile"] = run_reconcile_in_app
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
                task.cancel()
            tasks.clear()
