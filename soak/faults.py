"""Faults injected on a schedule: SumUp slow, failing, losing and doubling webhooks;
an app instance SIGKILLed and restarted; the app's PostgreSQL connections
terminated; Redis stopped for a while.

The schedule is one cycle of faults spread over `cycle_seconds`, repeated for the
run; the sandbox's faults never overlap each other (a behaviour replaces the last
one), the others fall where they fall, overlapping the sandbox's. The last fifth of
every cycle is quiet. Each fault is recorded as a window (kind, start, end), which
the report sets every 5xx against.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from sandbox.sumup_sandbox import SandboxControl
from soak.servers import AppInstance, RedisServer, SoakDatabase
from soak.traffic import Traffic

log = logging.getLogger("soak.faults")

# Kinds whose windows allow a SumUp gateway answer (502/504) from payment routes.
SANDBOX_KINDS = frozenset(
    {
        "sandbox slow",
        "sandbox slower than the app's timeout",
        "sandbox 5xx",
        "sandbox 5xx after doing the call",
    }
)
WEBHOOK_KINDS = frozenset({"webhooks dropped", "webhooks twice"})


@dataclass(frozen=True)
class FaultWindow:
    """One injected fault: what, from when to when (seconds since the run began)."""

    kind: str
    start: float
    end: float
    detail: str = ""


@dataclass
class FaultLog:
    windows: list[FaultWindow] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def by_kind(self) -> Counter[str]:
        return Counter(window.kind for window in self.windows)


@dataclass
class Targets:
    """What the faults act on."""

    control: SandboxControl
    instances: list[AppInstance]
    redis: RedisServer
    database: SoakDatabase


class FaultInjector:
    """Runs the schedule against the targets, timed by the run's clock."""

    def __init__(
        self,
        targets: Targets,
        traffic: Traffic,
        *,
        duration: float,
        cycle_seconds: float,
        kill_seconds: float = 3.0,
        redis_seconds: float = 4.0,
    ) -> None:
        self.targets = targets
        self.traffic = traffic
        self.duration = duration
        self.cycle = cycle_seconds
        self.kill_seconds = kill_seconds
        self.redis_seconds = redis_seconds
        self.log = FaultLog()
        self._kills = 0
        self._after_apply = 0

    def schedule(self) -> list[tuple[float, Callable[[], Awaitable[None]]]]:
        """(when, what) for the whole run."""
        c = self.cycle
        cycle: list[tuple[float, Callable[[], Awaitable[None]]]] = [
            (0.00, lambda: self._sandbox("webhooks dropped", 0.14 * c, webhook="drop")),
            (0.05, self._terminate_postgres),
            (0.16, lambda: self._sandbox("sandbox slow", 0.11 * c, delay_seconds=1.5)),
            (0.20, self._stop_redis),
            (0.29, lambda: self._sandbox("sandbox 5xx", 0.10 * c, fail_status=503)),
            (0.40, self._kill_instance),
            (0.41, lambda: self._sandbox("webhooks twice", 0.13 * c, webhook="twice")),
            (0.56, self._sandbox_after_apply),
            (0.62, self._terminate_postgres),
            (
                0.68,
                lambda: self._sandbox(
                    "sandbox slower than the app's timeout",
                    0.10 * c,
                    delay_seconds=4.5,
                    only="create",
                ),
            ),
        ]
        planned = []
        start = 0.0
        while start < self.duration:
            planned += [
                (start + fraction * c, act)
                for fraction, act in cycle
                if start + fraction * c < self.duration
            ]
            start += c
        return sorted(planned, key=lambda item: item[0])

    async def run(self) -> None:
        """Inject every planned fault at its time; each runs to its end."""
        tasks = [asyncio.create_task(self._at(when, act)) for when, act in self.schedule()]
        await asyncio.gather(*tasks)

    async def _at(self, when: float, act: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(max(0.0, when - self.traffic.now()))
        try:
            await act()
        except Exception as error:  # a fault that failed to inject is reported, not fatal
            log.exception("fault failed")
            self.log.errors.append(f"{self.traffic.now():.1f}s: {error!r}")

    def _record(self, kind: str, start: float, detail: str = "") -> None:
        self.log.windows.append(FaultWindow(kind, start, self.traffic.now(), detail))

    async def _sandbox(self, kind: str, seconds: float, **behaviour: object) -> None:
        start = self.traffic.now()
        try:
            await self.targets.control.behave(**behaviour)
            await asyncio.sleep(seconds)
        finally:
            # The window is recorded whatever the control calls answered: a call whose
            # answer was lost (once: a kept-alive connection the sandbox closed as it was
            # reused) may have been applied, and left answers unexplained in the report.
            try:
                await self._behave_normally()
            finally:
                self._record(kind, start, ", ".join(f"{k}={v}" for k, v in behaviour.items()))

    async def _behave_normally(self) -> None:
        """Back to normal; tried once more when the answer is lost (it is idempotent)."""
        try:
            await self.targets.control.behave()
        except httpx.TransportError:
            await self.targets.control.behave()

    async def _sandbox_after_apply(self) -> None:
        # The call is done at SumUp but its answer is a 5xx: creates, refunds, retires.
        only = ("create", "refund", "deactivate")[self._after_apply % 3]
        self._after_apply += 1
        await self._sandbox(
            "sandbox 5xx after doing the call",
            0.10 * self.cycle,
            fail_status=500,
            fail_after_apply=True,
            only=only,
        )

    async def _terminate_postgres(self) -> None:
        start = self.traffic.now()
        killed = await self.targets.database.terminate_backends()
        self._record("PostgreSQL connections terminated", start, f"{killed} backends")

    async def _kill_instance(self) -> None:
        instance = self.targets.instances[self._kills % len(self.targets.instances)]
        self._kills += 1
        start = self.traffic.now()
        instance.kill()
        await asyncio.sleep(self.kill_seconds)
        instance.spawn()
        took = await instance.wait_ready()
        self._record(
            "app instance SIGKILLed and restarted",
            start,
            f"instance {instance.name}, ready {took:.1f}s after restart",
        )

    async def _stop_redis(self) -> None:
        start = self.traffic.now()
        await asyncio.to_thread(self.targets.redis.stop)
        await asyncio.sleep(self.redis_seconds)
        await asyncio.to_thread(self.targets.redis.start)
        self._record("Redis stopped and started", start, f"down {self.traffic.now() - start:.1f}s")
