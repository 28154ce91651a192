"""What the soak saw on the wire: every answer, timed, and the site's two instances.

`Site.request` sends a shopper's request to its home instance and, when that one
refuses the connection (killed, restarting), to the other, as a load balancer
would. A request that dies in flight is not sent again: its outcome is unknown, as
a browser's would be. Every answer (or failure to get one) is recorded with its
start and end times, so the report can set it against the faults injected then.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

# Statuses that mean "no HTTP answer": refused (nobody listening), died in flight, and
# not answered within the client's timeout (a slow server, not a broken one).
TIMED_OUT = -2
REFUSED = -1
DROPPED = 0
IDS = re.compile(r"/\d+(?=/|$)")


def route_of(path: str) -> str:
    """`/orders/42/pay/?x=1` → `/orders/<id>/pay/`, for counting by route."""
    return IDS.sub("/<id>", path.split("?", 1)[0])


@dataclass(frozen=True)
class Answer:
    """One request and what came of it."""

    actor: str
    method: str
    route: str
    status: int
    started: float
    ended: float
    instance: str
    detail: str = ""

    @property
    def status_class(self) -> str:
        if self.status == REFUSED:
            return "refused"
        if self.status == DROPPED:
            return "dropped"
        if self.status == TIMED_OUT:
            return "timed out"
        return f"{self.status // 100}xx"


@dataclass
class Traffic:
    """Every answer of the run, and the clock they are timed by."""

    t0: float = field(default_factory=time.monotonic)
    wall0: float = field(default_factory=time.time)
    answers: list[Answer] = field(default_factory=list)
    sandbox_calls: Counter[str] = field(default_factory=Counter)
    failovers: int = 0

    def now(self) -> float:
        """Seconds since the run began."""
        return time.monotonic() - self.t0

    def by_class(self) -> Counter[str]:
        return Counter(answer.status_class for answer in self.answers)

    def by_status(self) -> Counter[int]:
        return Counter(answer.status for answer in self.answers)


WEBHOOK_LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(?P<ms>\d{3}) \w+ sandbox\.sumup_sandbox: "
    r"webhook for checkout (?P<checkout>\S+) (?:answered (?P<status>\d+)|to (?P<url>\S+) failed)"
)
PORT = re.compile(r"//[^/:]+:(\d+)/cart/checkout/webhook/(\d+)/")


def webhook_answers(log_text: str, wall0: float, instances: dict[int, str]) -> list[Answer]:
    """What the app answered the webhooks SumUp (the sandbox) sent, from the sandbox's log:
    they are requests too, though no shopper sees their answers."""
    answers = []
    for line in log_text.splitlines():
        match = WEBHOOK_LINE.match(line)
        if match is None:
            continue
        moment = time.mktime(time.strptime(match["at"], "%Y-%m-%d %H:%M:%S"))
        at = moment + int(match["ms"]) / 1000 - wall0
        instance = "?"
        if match["status"]:
            status = int(match["status"])
        else:
            if "ConnectError" in line:
                status = REFUSED
            elif "Timeout" in line:
                status = TIMED_OUT
            else:
                status = DROPPED
            found = PORT.search(match["url"])
            instance = instances.get(int(found[1]), "?") if found else "?"
        answers.append(
            Answer(
                actor="SumUp webhook",
                method="POST",
                route="/cart/checkout/webhook/<id>/",
                status=status,
                # A delivery that timed out began the client's 5 s before.
                started=at - 5.0 if status in (DROPPED, TIMED_OUT) else at,
                ended=at,
                instance=instance,
                detail=f"checkout {match['checkout']}",
            )
        )
    return answers


class Site:
    """The two app instances as one site; `home` picks where a shopper goes first."""

    def __init__(self, bases: list[tuple[str, str]], traffic: Traffic) -> None:
        self.bases = bases  # (instance name, base URL)
        self.traffic = traffic

    async def request(
        self,
        client: httpx.AsyncClient,
        actor: str,
        home: int,
        method: str,
        path: str,
        **kwargs: Any,
    ) -> httpx.Response | None:
        """Send to the home instance, fail over on a refused connection; None: no answer."""
        order = [home % len(self.bases), (home + 1) % len(self.bases)]
        for attempt, index in enumerate(order):
            name, base = self.bases[index]
            started = self.traffic.now()
            try:
                response = await client.request(method, base + path, **kwargs)
            except httpx.ConnectError as error:
                self._record(actor, method, path, REFUSED, started, name, repr(error))
                if attempt == 0:
                    self.traffic.failovers += 1
                continue
            except httpx.TimeoutException as error:
                self._record(actor, method, path, TIMED_OUT, started, name, repr(error)[:200])
                return None
            except httpx.HTTPError as error:
                self._record(actor, method, path, DROPPED, started, name, repr(error)[:200])
                return None
            detail = response.text[:300] if response.status_code >= 500 else ""
            self._record(actor, method, path, response.status_code, started, name, detail)
            return response
        return None

    def _record(
        self,
        actor: str,
        method: str,
        path: str,
        status: int,
        started: float,
        instance: str,
        detail: str,
    ) -> None:
        self.traffic.answers.append(
            Answer(
                actor=actor,
                method=method,
                route=route_of(path),
                status=status,
                started=started,
                ended=self.traffic.now(),
                instance=instance,
                detail=detail,
            )
        )
