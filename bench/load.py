"""Requests per second and latency under load, against hypercorn in a subprocess.

    .venv/bin/python -m bench.load --workers 2 --concurrency 32 --duration 10

Serves `app:app` with `python -m hypercorn --workers N` on a fresh bench database
holding a catalogue, makes K shoppers with a cart of ~10 lines each by driving the
app's forms over HTTP (their session cookies and CSRF tokens are kept), then drives
each scenario with an asyncio + httpx load generator at a fixed concurrency for a
fixed time, after a short warm-up. Any answer that is not 2xx/3xx is an error and
fails the run. When `wrk` is installed it measures the summary and /healthz again
as a second opinion (`--no-wrk` skips it).

Besides throughput and latency, each row says how the workers shared the
connections, the app's CPU time per request, PostgreSQL transactions per request and
connections opened (from `pg_stat_database`), and who used the CPUs: the generator
shares the machine with the app, PostgreSQL and Redis (see `bench/meter.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from bench.common import (
    ROOT,
    SESSION_COOKIE,
    BenchSetup,
    asyncpg_dsn,
    bench_environment,
    csrf_token_in,
    database_session,
    describe_machine,
    forget_redis_keys,
    seed_catalogue,
    usable_cpus,
)
from bench.meter import Measured, Meter, connections_per_worker, machine_busy

SCENARIOS = ("summary", "overview", "add", "healthz")
WRK_SCENARIOS = ("summary", "healthz")
JSON = {"Accept": "application/json"}


@dataclass(frozen=True)
class LoadShopper:
    """A shopper made over HTTP: the session cookie, a CSRF token, the products held."""

    cookie: str
    token: str
    product_ids: list[int]
    quantity: int

    @property
    def sid(self) -> str:
        """The session id inside the signed cookie (`<sid>.<signature>`)."""
        return self.cookie.rsplit(".", 1)[0]

    @property
    def cookie_header(self) -> str:
        return f"{SESSION_COOKIE}={self.cookie}"


# --- the server --------------------------------------------------------------------


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def hypercorn_server(
    app: str, workers: int, port: int, log_path: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m hypercorn app:app` with the bench environment; stopped with SIGTERM."""
    env = dict(os.environ, PUBLIC_URL=f"http://127.0.0.1:{port}")
    command = [sys.executable, "-m", "hypercorn", app]
    command += ["--workers", str(workers), "--bind", f"127.0.0.1:{port}"]
    with log_path.open("wb") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield server
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


async def wait_until_ready(base_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    """Until /readyz answers 200 (database and Redis reachable) a few times in a row."""
    deadline = time.monotonic() + 90
    ready = 0
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        while ready < 5:
            if server.poll() is not None:
                raise RuntimeError(f"hypercorn exited ({server.returncode}):\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"hypercorn not ready after 90 s:\n{_tail(log)}")
            try:
                ready = ready + 1 if (await client.get("/readyz")).status_code == 200 else 0
            except httpx.HTTPError:
                ready = 0
            await asyncio.sleep(0.1 if ready else 0.3)


# --- shoppers, made through the app's forms ---------------------------------------


async def make_shopper(base_url: str, product_ids: list[int], lines: int) -> LoadShopper:
    """Sign-in page for a CSRF token, then `lines` adds, as a browser would post them."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        token = csrf_token_in((await client.get("/dev/login")).text)
        chosen = random.sample(product_ids, lines)
        quantity = 0
        for product_id in chosen:
            amount = random.randint(1, 3)
            response = await client.post(
                f"/cart/add/{product_id}/",
                data={"csrf_token": token, "quantity": str(amount)},
                headers=JSON,
            )
            if response.status_code != 200:
                raise RuntimeError(f"add {product_id}: {response.status_code} {response.text}")
            quantity += amount
        cookie = client.cookies.get(SESSION_COOKIE)
        if not cookie:
            raise RuntimeError("the app set no session cookie")
        return LoadShopper(cookie, token, chosen, quantity)


async def make_shoppers(
    base_url: str, product_ids: list[int], *, count: int, lines: int
) -> list[LoadShopper]:
    gate = asyncio.Semaphore(8)

    async def one() -> LoadShopper:
        async with gate:
            return await make_shopper(base_url, product_ids, lines)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def check_shoppers(base_url: str, bearer: str, shopper: LoadShopper, lines: int) -> None:
    """The cookies work: the summary and the overview show the shopper's cart."""
    headers = {"Cookie": shopper.cookie_header}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        summary = await client.get(
            "/internal/cart/summary", headers={**headers, "Authorization": bearer}
        )
        page = await client.get("/cart/", headers=headers)
    if summary.status_code != 200 or summary.json()["product_count"] != shopper.quantity:
        raise RuntimeError(f"the summary does not see the cart: {summary.text}")
    if page.text.count('data-testid="cart-line"') != lines:
        raise RuntimeError("the overview does not show the cart's lines")


# --- the load generator ------------------------------------------------------------

Send = Callable[[httpx.AsyncClient, LoadShopper], Awaitable[httpx.Response]]


def scenario_requests(bearer: str) -> dict[str, tuple[str, Send]]:
    """Each scenario's description and how it sends one request for a shopper."""

    def summary(client: httpx.AsyncClient, shopper: LoadShopper) -> Awaitable[httpx.Response]:
        headers = {"Authorization": bearer, "Cookie": shopper.cookie_header}
        return client.get("/internal/cart/summary", headers=headers)

    def overview(client: httpx.AsyncClient, shopper: LoadShopper) -> Awaitable[httpx.Response]:
        return client.get("/cart/", headers={"Cookie": shopper.cookie_header})

    def add(client: httpx.AsyncClient, shopper: LoadShopper) -> Awaitable[httpx.Response]:
        return client.post(
            f"/cart/add/{random.choice(shopper.product_ids)}/",
            data={"csrf_token": shopper.token, "quantity": "1"},
            headers={**JSON, "Cookie": shopper.cookie_header},
        )

    def healthz(client: httpx.AsyncClient, shopper: LoadShopper) -> Awaitable[httpx.Response]:
        return client.get("/healthz")

    return {
        "summary": ("GET /internal/cart/summary", summary),
        "overview": ("GET /cart/", overview),
        "add": ("POST /cart/add/<id>/ (JSON)", add),
        "healthz": ("GET /healthz", healthz),
    }


@dataclass
class Result:
    scenario: str
    tool: str
    requests: int
    errors: int
    seconds: float
    p50: float
    p95: float
    p99: float
    max: float
    measured: Measured = field(default_factory=Measured)
    connections: str = ""
    samples: list[str] = field(default_factory=list)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


async def drive(
    clients: list[httpx.AsyncClient],
    send: Send,
    shoppers: list[LoadShopper],
    *,
    seconds: float,
) -> tuple[list[float], Counter[str], float]:
    """One loop per client sending requests for `seconds`; latencies (ms), outcomes, time."""
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    deadline = time.perf_counter() + seconds

    async def loop(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            shopper = random.choice(shoppers)
            started = time.perf_counter()
            try:
                response = await send(client, shopper)
                outcome = str(response.status_code)
                if not 200 <= response.status_code < 400:
                    outcome += f" {response.text[:120]!r}"
            except httpx.HTTPError as error:
                outcome = f"{error.__class__.__name__}: {error}"
            latencies.append((time.perf_counter() - started) * 1000)
            outcomes[outcome] += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(client) for client in clients))
    return latencies, outcomes, time.perf_counter() - started


async def run_python(
    base_url: str,
    scenario: str,
    send: Send,
    shoppers: list[LoadShopper],
    meter: Meter,
    *,
    concurrency: int,
    duration: float,
    warmup: float,
) -> Result:
    # A client (one keep-alive connection) per loop, like one browser each: httpx's
    # shared pool costs about 4x the CPU per request at this concurrency.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30)
            )
            for _ in range(concurrency)
        ]
        # Connect one client at a time, as shoppers arrive, not in one burst: a burst
        # is accepted by whichever worker wakes first (see connections_per_worker).
        for client in clients:
            await send(client, random.choice(shoppers))
        await drive(clients, send, shoppers, seconds=warmup)
        connections = connections_per_worker(meter.server_pid, meter.port)
        async with meter.measure() as measured:
            latencies, outcomes, elapsed = await drive(clients, send, shoppers, seconds=duration)
    latencies.sort()
    good = sum(n for outcome, n in outcomes.items() if outcome[:1] in ("2", "3"))
    return Result(
        scenario=scenario,
        tool="httpx",
        connections=connections,
        requests=len(latencies),
        errors=len(latencies) - good,
        seconds=elapsed,
        p50=percentile(latencies, 0.50),
        p95=percentile(latencies, 0.95),
        p99=percentile(latencies, 0.99),
        max=latencies[-1] if latencies else 0.0,
        measured=measured,
        samples=[
            f"{n}× {outcome}"
            for outcome, n in outcomes.most_common()
            if outcome[:1] not in ("2", "3")
        ],
    )


# --- wrk, as a second opinion ------------------------------------------------------

WRK_SCRIPT = """
local cookies = {%(cookies)s}
local bearer = "%(bearer)s"
local path = "%(path)s"
local n = 0
request = function()
  local headers = {}
  if bearer ~= "" then headers["Authorization"] = bearer end
  if #cookies > 0 then
    n = n %% #cookies + 1
    headers["Cookie"] = cookies[n]
  end
  return wrk.format("GET", path, headers)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%%d duration_us=%%d status_errors=%%d socket_errors=%%d "
    .. "p50=%%d p95=%%d p99=%%d max=%%d\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""


async def run_wrk(
    base_url: str,
    scenario: str,
    shoppers: list[LoadShopper],
    bearer: str,
    meter: Meter,
    *,
    concurrency: int,
    duration: float,
    workdir: Path,
) -> Result:
    with_cart = scenario == "summary"
    script = workdir / f"{scenario}.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "cookies": ", ".join(f'"{s.cookie_header}"' for s in shoppers) if with_cart else "",
            "bearer": bearer if with_cart else "",
            "path": "/internal/cart/summary" if with_cart else "/healthz",
        }
    )
    threads = max(1, min(usable_cpus(), concurrency))
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration))}s"]
    command += ["--timeout", "30s", "-s", str(script), base_url]
    async with meter.measure(generator_is_child=True) as measured:
        wrk = await asyncio.create_subprocess_exec(*command, stdout=subprocess.PIPE)
        await asyncio.sleep(min(1.0, duration / 2))
        connections = connections_per_worker(meter.server_pid, meter.port)
        stdout, _ = await wrk.communicate()
    output = stdout.decode(errors="replace")
    if wrk.returncode:
        raise RuntimeError(f"wrk failed ({wrk.returncode}):\n{output}")
    match = re.search(r"^BENCH (.*)$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk said:\n{output}")
    numbers = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    errors = numbers["status_errors"] + numbers["socket_errors"]
    return Result(
        scenario=scenario,
        tool="wrk",
        connections=connections,
        requests=numbers["requests"],
        errors=errors,
        seconds=numbers["duration_us"] / 1e6,
        p50=numbers["p50"] / 1000,
        p95=numbers["p95"] / 1000,
        p99=numbers["p99"] / 1000,
        max=numbers["max"] / 1000,
        measured=measured,
        samples=[f"{errors} errors (wrk: non-2xx/3xx or socket errors)"] if errors else [],
    )


# --- the run -----------------------------------------------------------------------


def print_results(results: list[Result], descriptions: dict[str, str]) -> None:
    head = ["scenario", "tool", "conns/worker", "requests", "req/s", "errors"]
    head += ["p50 ms", "p95 ms", "p99 ms", "max ms", "app CPU ms/req", "PG xact/req"]
    head += ["PG conns opened", "CPU % of one CPU, by whom"]
    rows = []
    for r in results:
        cpu, requests = r.measured.cpu, r.requests or 1
        rows.append(
            [
                descriptions[r.scenario],
                r.tool,
                r.connections,
                str(r.requests),
                f"{r.rps:.0f}",
                str(r.errors),
                f"{r.p50:.1f}",
                f"{r.p95:.1f}",
                f"{r.p99:.1f}",
                f"{r.max:.1f}",
                f"{1000 * cpu.app_seconds / requests:.2f}" if cpu else "",
                f"{r.measured.transactions / requests:.2f}",
                str(r.measured.sessions),
                str(cpu or ""),
            ]
        )
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    for n, row in enumerate([head, *rows]):
        cells = [
            cell.ljust(width) if i in (0, 1, 2, len(row) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))


async def run_scenarios(
    base_url: str,
    shoppers: list[LoadShopper],
    bearer: str,
    meter: Meter,
    args: argparse.Namespace,
    workdir: Path,
) -> list[Result]:
    """Each scenario with the httpx generator, then the summary and /healthz with wrk."""
    results = []
    requests = scenario_requests(bearer)
    for name in args.scenarios:
        description, send = requests[name]
        result = await run_python(
            base_url,
            name,
            send,
            shoppers,
            meter,
            concurrency=args.concurrency,
            duration=args.duration,
            warmup=args.warmup,
        )
        results.append(result)
        print(f"  {description}: {result.rps:.0f} req/s (httpx)", flush=True)
    if args.wrk and shutil.which("wrk"):
        for name in (s for s in WRK_SCENARIOS if s in args.scenarios):
            result = await run_wrk(
                base_url,
                name,
                shoppers,
                bearer,
                meter,
                concurrency=args.concurrency,
                duration=args.duration,
                workdir=workdir,
            )
            results.append(result)
            print(f"  {requests[name][0]}: {result.rps:.0f} req/s (wrk)", flush=True)
    elif args.wrk:
        print("  (wrk is not installed: `apt-get install -y wrk` for a second opinion)")
    return results


async def run(setup: BenchSetup, args: argparse.Namespace, workdir: Path) -> int:
    from config import load_settings

    settings = load_settings()
    bearer = f"Bearer {settings.internal_api_token.reveal()}"
    async with database_session(setup.database_url) as db:
        catalogue = await seed_catalogue(db, pages=args.pages, products_per_page=12)
    product_ids = [product.id for product in catalogue.products]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = workdir / "hypercorn.log"
    shoppers: list[LoadShopper] = []
    results: list[Result] = []
    descriptions = {name: text for name, (text, _) in scenario_requests(bearer).items()}
    busy_before = await machine_busy()
    try:
        with hypercorn_server(args.app, args.workers, port, log_path) as server:
            await wait_until_ready(base_url, server, log_path)
            started = time.perf_counter()
            shoppers = await make_shoppers(
                base_url, product_ids, count=args.shoppers, lines=args.lines
            )
            await check_shoppers(base_url, bearer, shoppers[0], args.lines)
            print(
                f"{len(shoppers)} shoppers with {args.lines} lines each made over HTTP "
                f"in {time.perf_counter() - started:.1f} s",
                flush=True,
            )
            stats = await asyncpg.connect(**asyncpg_dsn(setup.database_url, setup.database_name))
            try:
                meter = Meter(server.pid, port, setup.database_name, stats)
                results = await run_scenarios(base_url, shoppers, bearer, meter, args, workdir)
            finally:
                await stats.close()
    finally:
        await forget_redis_keys(
            setup.redis_url,
            keys=[settings.session.redis_prefix + s.sid for s in shoppers],
            patterns=[f"{setup.events_stream}*"],
        )
    log_text = log_path.read_text(errors="replace")
    problems = logged_errors(log_text)

    print()
    for line in await describe_machine(setup):
        print(line)
    print(
        f"hypercorn {args.app} --workers {args.workers}; generator: one asyncio process, "
        f"concurrency {args.concurrency}, {args.duration:g} s per scenario after "
        f"{args.warmup:g} s warm-up; {len(shoppers)} shoppers × {args.lines} lines; "
        "the generator shares the machine with the app, PostgreSQL and Redis"
    )
    print(
        f"machine busy with other work before the run: {busy_before:.0f}% of one CPU; "
        "app CPU ms/req: CPU time of the app's processes per request; last column: "
        "% of one CPU used by the app's workers, the generator, PostgreSQL (the bench "
        "database's backends) and Redis, "
        "interrupts (loopback networking) and anything else, during the measured seconds"
    )
    print()
    print_results(results, descriptions)
    errors = [r for r in results if r.errors]
    for result in errors:
        print(f"\n{result.tool} {descriptions[result.scenario]}: {result.errors} errors")
        for sample in result.samples[:5]:
            print(f"  {sample}")
    if problems:
        # Not counted as errors (every answer was 2xx/3xx), but worth a look: e.g. wrk
        # drops its connections mid-request when its time is up.
        print(f"\nWARNING: the app logged {len(problems)} errors:")
        for problem in problems[:5]:
            print(f"  {problem}")
    if errors:
        print("\nFAIL; the server log ends:\n" + "\n".join(log_text.splitlines()[-40:]))
        return 1
    print("\nOK: no errors")
    return 0


def logged_errors(log_text: str) -> list[str]:
    """Each ERROR record of the server log, with the exception that ended its traceback."""
    records: list[list[str]] = []
    for line in log_text.splitlines():
        if " ERROR " in line or " CRITICAL " in line:
            records.append([line.strip()])
        elif records and len(records[-1]) == 1 and _is_exception_line(line):
            records[-1].append(line.strip())
    return [" → ".join(record) for record in records]


def _is_exception_line(line: str) -> bool:
    """`ValueError: …` ends a traceback; log records start with a date or `[`."""
    if not line or line[0].isspace() or line[0].isdigit() or line[0] == "[":
        return False
    return not line.startswith(("Traceback", "During handling", "The above exception"))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="hypercorn workers (2)")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (32)")
    parser.add_argument("--duration", type=float, default=10, help="seconds per scenario (10)")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds (2)")
    parser.add_argument("--shoppers", type=int, default=50, help="shoppers with a cart (50)")
    parser.add_argument("--lines", type=int, default=10, help="lines in each cart (10)")
    parser.add_argument("--pages", type=int, default=5, help="pages of 12 products (5)")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        help="which scenarios, in order (all)",
    )
    parser.add_argument("--no-wrk", dest="wrk", action="store_false", help="skip wrk")
    parser.add_argument(
        "--app", default="app:app", help="what hypercorn serves (app:app; for experiments)"
    )
    args = parser.parse_args(argv)
    if args.lines > args.pages * 12:
        parser.error("--lines cannot exceed the catalogue (12 products per page)")
    return args


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="cart-bench-") as tmp, bench_environment() as setup:
        return asyncio.run(run(setup, args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
