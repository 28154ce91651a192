"""The cart's endpoints under wrk, each read as a fraction of the stack's floor.

    .venv/bin/python -m bench.run            # short form (`make bench`): a few minutes
    .venv/bin/python -m bench.run --long     # long form, by hand: 30 s each, 3 rounds

Two servers run side by side with the same settings (hypercorn, one uvloop worker,
production mode, the background loops as configured): the cart app and the
reference app (`bench/reference_app.py`: `/floor`, one Redis GET plus one aggregate
query over raw asyncpg; `/hello`, bare Quart). They share one fresh database holding
the data set of `bench/dataset.py` (10,000 shoppers by default) and the SumUp
sandbox. Each round measures the floor and /hello, then every endpoint of the cart,
then the floor and /hello again; every figure is reported beside its ratio to the
round's floor and /hello (the mean of the two measurements), so that a machine
shared with other work still gives comparable numbers. Then a soak at more
connections checks that nothing fails under overload.

Results go to `bench/results/<date>-<form>.json`; a Markdown table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx

from bench.common import (
    ROOT,
    RUN_ID,
    asyncpg_dsn,
    bench_environment,
    describe_machine,
    forget_redis_keys,
)
from bench.dataset import BenchShopper, DataSet, measured_dataset
from bench.meter import Meter, connections_per_worker, machine_busy

RESULTS = ROOT / "bench" / "results"
FORM = "application/x-www-form-urlencoded"
JSON_ACCEPT = "application/json"


# --- what is requested -------------------------------------------------------------


@dataclass(frozen=True)
class WrkRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: str = ""


@dataclass(frozen=True)
class Endpoint:
    """One row of the report: whom it asks for, how, and of which server."""

    name: str
    shoppers: Callable[[DataSet], list[BenchShopper]]
    request: Callable[[BenchShopper, int], WrkRequest]
    server: str = "app"  # or "reference"
    expect: tuple[int, ...] = (200,)
    redirect_to: str | None = None  # where a 303 must point (the start of its Location)


def _get(path: str, shopper: BenchShopper, **headers: str) -> WrkRequest:
    return WrkRequest("GET", path, {"Cookie": shopper.cookie_header, **headers})


def _post(path: str, shopper: BenchShopper, form: dict[str, str], *, json: bool) -> WrkRequest:
    headers = {"Cookie": shopper.cookie_header, "Content-Type": FORM}
    if json:
        headers["Accept"] = JSON_ACCEPT
    return WrkRequest("POST", path, headers, urlencode({"csrf_token": shopper.token, **form}))


def endpoints(bearer: str, hosted_pages: str = "") -> list[Endpoint]:
    """Every measured endpoint, in the order they run (reads before writes)."""

    def summary(scoped: bool) -> Callable[[BenchShopper, int], WrkRequest]:
        def request(shopper: BenchShopper, _: int) -> WrkRequest:
            query = f"?page={shopper.page_slug}" if scoped else ""
            return _get(f"/internal/cart/summary{query}", shopper, Authorization=bearer)

        return request

    def lines(count: int) -> Callable[[DataSet], list[BenchShopper]]:
        return lambda data: data.with_lines(count)

    def change(path: str, *, json: bool) -> Callable[[BenchShopper, int], WrkRequest]:
        def request(shopper: BenchShopper, n: int) -> WrkRequest:
            line = shopper.lines[n % len(shopper.lines)]
            form = {"quantity": str(n % 3 + 1), "market_place": str(line.market_place_id)}
            return _post(f"/cart/{path}/{line.product_id}/", shopper, form, json=json)

        return request

    rows = []
    for count in (1, 30):
        rows += [
            Endpoint(f"summary, {count} line{'s' * (count > 1)}", lines(count), summary(False)),
            Endpoint(
                f"summary, {count} line{'s' * (count > 1)}, page", lines(count), summary(True)
            ),
        ]
    for count in (3, 30):
        rows += [
            Endpoint(f"cart overview, {count} lines", lines(count), lambda s, _: _get("/cart/", s)),
            Endpoint(
                f"page cart, {count} lines",
                lines(count),
                lambda s, _: _get(f"/cart/{s.page_slug}/", s),
            ),
        ]
    rows += [
        Endpoint("order list", DataSet.with_orders, lambda s, _: _get("/orders/", s)),
        Endpoint(
            "order page",
            DataSet.with_orders,
            lambda s, n: _get(f"/orders/{s.order_ids[n % len(s.order_ids)]}/", s),
        ),
        Endpoint("add (JSON)", _everyone, change("add", json=True)),
        Endpoint("add (form)", _everyone, change("add", json=False), expect=(303,)),
        Endpoint("update (JSON)", _everyone, change("update", json=True)),
        Endpoint("update (form)", _everyone, change("update", json=False), expect=(303,)),
        Endpoint(
            "checkout to the hosted page",
            _everyone,
            lambda s, _: _post("/cart/checkout/", s, {}, json=False),
            expect=(303,),
            redirect_to=f"{hosted_pages}/pay/",
        ),
    ]
    return rows


def _everyone(data: DataSet) -> list[BenchShopper]:
    return data.shoppers


FLOOR = Endpoint("/floor", _everyone, lambda s, _: _get("/floor", s), "reference")
HELLO = Endpoint("/hello", _everyone, lambda s, _: WrkRequest("GET", "/hello", {}), "reference")


# --- wrk ---------------------------------------------------------------------------

WRK_SCRIPT = """
local requests = {%(requests)s}
local formatted = {}
local n = 0
init = function(args)
  for i, r in ipairs(requests) do
    formatted[i] = wrk.format(r[1], r[2], r[3], r[4])
  end
end
request = function()
  n = n %% #formatted + 1
  return formatted[n]
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%%d duration_us=%%d status_errors=%%d socket_errors=%%d "
    .. "p50=%%d p90=%%d p99=%%d max=%%d\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua(text: str) -> str:
    # json.dumps quotes ASCII the way Lua reads it; the requests are ASCII throughout.
    return json.dumps(text, ensure_ascii=True)


def wrk_script(requests: list[WrkRequest]) -> str:
    """A wrk script that cycles through the given requests, one per call."""
    rows = []
    for r in requests:
        headers = ", ".join(f"[{_lua(k)}] = {_lua(v)}" for k, v in r.headers.items())
        body = _lua(r.body) if r.body else "nil"
        rows.append(f"{{{_lua(r.method)}, {_lua(r.path)}, {{{headers}}}, {body}}}")
    return WRK_SCRIPT % {"requests": ",\n".join(rows)}


@dataclass
class Row:
    """One wrk run of one endpoint."""

    endpoint: str
    connections: int
    seconds: float
    requests: int
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    conns_per_worker: str = ""
    app_cpu_ms_per_request: float | None = None
    pg_transactions_per_request: float | None = None
    pg_connections_opened: int | None = None
    x_floor: float | None = None
    x_hello: float | None = None
    # The floor's CPU per request over this one's: the ratio a busy machine disturbs least.
    x_floor_cpu: float | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "rps": round(self.rps, 1)}


@dataclass
class Server:
    name: str
    base_url: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path


async def run_wrk(
    server: Server,
    endpoint: Endpoint,
    requests: list[WrkRequest],
    meter: Meter,
    *,
    connections: int,
    seconds: float,
    warmup: float,
    workdir: Path,
    spy: Path | None = None,
) -> Row:
    """wrk -t1 against one endpoint: a warm-up run, then the measured one (sampled by
    py-spy into `spy` when given)."""
    script = workdir / "requests.lua"
    script.write_text(wrk_script(requests))
    base = ["wrk", "-t1", f"-c{connections}", "--timeout", "10s", "-s", str(script)]

    async def wrk(duration: float) -> str:
        process = await asyncio.create_subprocess_exec(
            *base, f"-d{max(1, round(duration))}s", server.base_url, stdout=subprocess.PIPE
        )
        await asyncio.sleep(min(1.0, duration / 2))
        conns = connections_per_worker(server.process.pid, server.port)
        stdout, _ = await process.communicate()
        if process.returncode:
            raise RuntimeError(f"wrk failed ({process.returncode}): {stdout.decode()}")
        return conns + "\n" + stdout.decode(errors="replace")

    if warmup:
        await wrk(warmup)
    async with meter.measure(generator_is_child=True) as measured:
        sampler = await start_py_spy(server, endpoint, seconds, spy) if spy else None
        output = await wrk(seconds)
    if sampler is not None:
        await sampler.wait()
    conns, _, report = output.partition("\n")
    match = re.search(r"^BENCH (.*)$", report, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk said:\n{report}")
    numbers = {k: int(v) for k, v in (pair.split("=") for pair in match.group(1).split())}
    count = numbers["requests"] or 1
    return Row(
        endpoint=endpoint.name,
        connections=connections,
        seconds=numbers["duration_us"] / 1e6,
        requests=numbers["requests"],
        errors=numbers["status_errors"] + numbers["socket_errors"],
        p50_ms=numbers["p50"] / 1000,
        p90_ms=numbers["p90"] / 1000,
        p99_ms=numbers["p99"] / 1000,
        max_ms=numbers["max"] / 1000,
        conns_per_worker=conns,
        app_cpu_ms_per_request=(
            round(1000 * measured.cpu.app_seconds / count, 3) if measured.cpu else None
        ),
        pg_transactions_per_request=round(measured.transactions / count, 3),
        pg_connections_opened=measured.sessions,
    )


async def check_endpoint(server: Server, endpoint: Endpoint, request: WrkRequest) -> None:
    """One request by hand before the load: the answer is the one expected."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        response = await client.request(
            request.method, request.path, headers=request.headers, content=request.body or None
        )
    location = response.headers.get("Location", "")
    if response.status_code not in endpoint.expect or not location.startswith(
        endpoint.redirect_to or ""
    ):
        raise RuntimeError(
            f"{endpoint.name}: {request.method} {request.path} answered "
            f"{response.status_code} {location}: {response.text[:300]}"
        )


PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


async def start_py_spy(
    server: Server, endpoint: Endpoint, seconds: float, folder: Path
) -> asyncio.subprocess.Process:
    """py-spy sampling the server for the measured run, as collapsed stacks in `folder`."""
    name = re.sub(r"[^a-z0-9]+", "-", endpoint.name.lower()).strip("-")
    return await asyncio.create_subprocess_exec(
        # --subprocesses: hypercorn serves from a worker process under its own.
        *(PY_SPY, "record", "--pid", str(server.process.pid), "--subprocesses", "--rate", "250"),
        *("--duration", str(max(1, round(seconds) - 1)), "--format", "raw", "--nonblocking"),
        *("--output", str(folder / f"{name}.txt")),
        stdout=subprocess.DEVNULL,
        stderr=(folder / f"{name}.log").open("wb"),
    )


# --- the servers -------------------------------------------------------------------


def server_command(app: str, port: int) -> list[str]:
    """The one server setup both apps get: hypercorn, one uvloop worker."""
    return [
        *(sys.executable, "-m", "hypercorn", app),
        *("--worker-class", "uvloop", "--workers", "1"),
        *("--bind", f"127.0.0.1:{port}", "--graceful-timeout", "5"),
    ]


def sandbox_command(port: int) -> list[str]:
    """The SumUp sandbox, in its own process (its log goes to the run's folder)."""
    return [
        sys.executable,
        "-m",
        "sandbox.sumup_sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]


@contextmanager
def served(
    name: str, command: Callable[[int], list[str]], workdir: Path, env: dict[str, str]
) -> Iterator[Server]:
    """A server process on a free port, stopped with SIGTERM (then SIGKILL) at the end."""
    port = free_port()
    log = workdir / f"{name}.log"
    environment = dict(env, PUBLIC_URL=f"http://127.0.0.1:{port}")
    with log.open("wb") as out:
        process = subprocess.Popen(
            command(port),
            cwd=ROOT,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield Server(name, f"http://127.0.0.1:{port}", process, port, log)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def wait_until_up(server: Server, path: str) -> None:
    """Until `path` answers 200 (for the app, /readyz: PostgreSQL and Redis reachable)."""
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(base_url=server.base_url, timeout=5) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(f"{server.name} exited:\n{server.log.read_text()[-3000:]}")
            try:
                if (await client.get(path)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{server.name} did not start:\n{server.log.read_text()[-3000:]}")


# --- the run -----------------------------------------------------------------------


def requests_for(endpoint: Endpoint, data: DataSet, limit: int = 10_000) -> list[WrkRequest]:
    shoppers = endpoint.shoppers(data)[:limit]
    if not shoppers:
        raise RuntimeError(f"no shopper for {endpoint.name}")
    return [endpoint.request(shopper, n) for n, shopper in enumerate(shoppers)]


async def measure_round(
    number: int,
    servers: dict[str, Server],
    meters: dict[str, Meter],
    data: DataSet,
    wanted: list[Endpoint],
    args: argparse.Namespace,
    workdir: Path,
) -> list[Row]:
    """Floor and /hello, every endpoint, floor and /hello again; ratios to their means."""

    async def one(endpoint: Endpoint, connections: int, seconds: float) -> Row:
        server = servers[endpoint.server]
        requests = requests_for(endpoint, data)
        await check_endpoint(server, endpoint, requests[-1])
        row = await run_wrk(
            server,
            endpoint,
            requests,
            meters[endpoint.server],
            connections=connections,
            seconds=seconds,
            warmup=args.warmup,
            workdir=workdir,
            spy=args.py_spy,
        )
        print(
            f"  round {number}: {row.endpoint:<32} {row.rps:6.0f} rps"
            f"  p50 {row.p50_ms:6.1f}  p99 {row.p99_ms:6.1f} ms  errors {row.errors}"
            f"  cpu {row.app_cpu_ms_per_request} ms/req  xact/req {row.pg_transactions_per_request}"
            f"  conns opened {row.pg_connections_opened}",
            flush=True,
        )
        return row

    references = [await one(e, args.connections, args.duration) for e in (FLOOR, HELLO)]
    rows = [await one(e, args.connections, args.duration) for e in wanted]
    references += [await one(e, args.connections, args.duration) for e in (FLOOR, HELLO)]
    floor = statistics.mean(r.rps for r in references if r.endpoint == "/floor")
    hello = statistics.mean(r.rps for r in references if r.endpoint == "/hello")
    floor_cpu = statistics.mean(
        r.app_cpu_ms_per_request or 0 for r in references if r.endpoint == "/floor"
    )
    everything = references[:2] + rows + references[2:]
    for row in everything:
        row.x_floor, row.x_hello = round(row.rps / floor, 3), round(row.rps / hello, 3)
        if row.app_cpu_ms_per_request:
            row.x_floor_cpu = round(floor_cpu / row.app_cpu_ms_per_request, 3)
    return everything


async def soak(
    servers: dict[str, Server],
    meters: dict[str, Meter],
    data: DataSet,
    args: argparse.Namespace,
    workdir: Path,
) -> list[Row]:
    """More connections than the pool for longer: every answer must still be a good one."""
    rows = []
    wanted = {e.name: e for e in endpoints(args.bearer)}
    for name in ("summary, 30 lines", "cart overview, 30 lines"):
        endpoint = wanted[name]
        row = await run_wrk(
            servers["app"],
            endpoint,
            requests_for(endpoint, data),
            meters["app"],
            connections=args.soak_connections,
            seconds=args.soak_duration,
            warmup=0,
            workdir=workdir,
        )
        row.endpoint = f"{name} (soak)"
        print(
            f"  soak: {row.endpoint:<32} {row.rps:8.0f} rps  p99 {row.p99_ms:6.1f} ms  "
            f"errors {row.errors}",
            flush=True,
        )
        rows.append(row)
    return rows


def _spread(values: list[float], digits: int) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:.{digits}f}"
    return f"{middle:.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def markdown_table(rounds: list[list[Row]], soaked: list[Row]) -> list[str]:
    """Median over the rounds, with the range when there were several."""
    names = list(dict.fromkeys(row.endpoint for row in rounds[0]))
    out = [
        "| endpoint | rps | p50 ms | p99 ms | errors | × floor | × hello | app CPU ms/req "
        "| × floor, CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        rows = [row for rnd in rounds for row in rnd if row.endpoint == name]
        cpu = [row.app_cpu_ms_per_request for row in rows if row.app_cpu_ms_per_request]
        out.append(
            f"| {name} | {_spread([r.rps for r in rows], 0)} "
            f"| {_spread([r.p50_ms for r in rows], 1)} | {_spread([r.p99_ms for r in rows], 1)} "
            f"| {sum(r.errors for r in rows)} "
            f"| {_spread([r.x_floor or 0 for r in rows], 2)} "
            f"| {_spread([r.x_hello or 0 for r in rows], 2)} "
            f"| {_spread(cpu, 2) if cpu else ''} "
            f"| {_spread([r.x_floor_cpu or 0 for r in rows], 2)} |"
        )
    for row in soaked:
        out.append(
            f"| {row.endpoint}, {row.connections} connections, {row.seconds:.0f} s "
            f"| {row.rps:.0f} | {row.p50_ms:.1f} | {row.p99_ms:.1f} | {row.errors} | | | "
            f"{row.app_cpu_ms_per_request or ''} | |"
        )
    return out


async def run(setup: Any, args: argparse.Namespace, workdir: Path) -> int:
    """The SumUp sandbox for the checkouts, then the measurements."""
    env = dict(os.environ)
    with served("sandbox", sandbox_command, workdir, env) as sandbox:
        await wait_until_up(sandbox, "/_sandbox/healthz")
        env.update(
            SUMUP_BASE_URL=sandbox.base_url,
            SUMUP_API_KEY="sup_sk_sandbox_coop",
            SUMUP_MERCHANT_CODE="MCOOP0001",
            SESSION_COOKIE_SECURE="true",
            # Production refuses to start without one; each server gets its own below.
            PUBLIC_URL="http://127.0.0.1",
        )
        return await measure(setup, args, workdir, env)


async def measure(setup: Any, args: argparse.Namespace, workdir: Path, env: dict[str, str]) -> int:
    """The data set, the two servers, the rounds and the soak; the report."""
    from config import load_settings

    settings = load_settings(env)
    args.bearer = f"Bearer {settings.internal_api_token.reveal()}"
    started = time.perf_counter()
    data = await measured_dataset(setup, settings, args.shoppers)
    lines = sum(len(s.lines) for s in data.shoppers)
    print(
        f"data set: {len(data.shoppers)} shoppers, {lines} cart lines over "
        f"{len(data.catalogue.page_slugs)} pages, {sum(len(s.order_ids) for s in data.shoppers)} "
        f"orders; built in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    hosted = env["SUMUP_BASE_URL"]
    wanted = [e for e in endpoints(args.bearer, hosted) if not args.only or e.name in args.only]
    busy = await machine_busy()
    rounds: list[list[Row]] = []
    soaked: list[Row] = []
    try:
        with (
            served("app", partial(server_command, "app:app"), workdir, env) as app_server,
            served(
                "reference", partial(server_command, "bench.reference_app:app"), workdir, env
            ) as reference,
        ):
            servers = {"app": app_server, "reference": reference}
            await wait_until_up(app_server, "/readyz")
            await wait_until_up(reference, "/hello")
            stats = await asyncpg.connect(**asyncpg_dsn(setup.database_url, setup.database_name))
            try:
                meters = {
                    name: Meter(server.process.pid, server.port, setup.database_name, stats)
                    for name, server in servers.items()
                }
                for number in range(1, args.rounds + 1):
                    rounds.append(
                        await measure_round(number, servers, meters, data, wanted, args, workdir)
                    )
                if args.soak_duration:
                    soaked = await soak(servers, meters, data, args, workdir)
            finally:
                await stats.close()
            app_log = app_server.log.read_text(errors="replace")
    finally:
        await forget_redis_keys(
            setup.redis_url, keys=data.session_keys, patterns=[f"{setup.events_stream}*"]
        )
    machine = await describe_machine(setup)
    when = datetime.now(UTC)
    command = " ".join(["python -m bench.run", *sys.argv[1:]])
    report = {
        "date": when.isoformat(timespec="seconds"),
        "command": command,
        "machine": machine,
        "machine_busy_before_percent_of_one_cpu": round(busy),
        "server": " ".join(server_command("<app>", 0)[1:]).replace(":0", ":<port>"),
        "settings": {
            "connections": args.connections,
            "seconds": args.duration,
            "warmup_seconds": args.warmup,
            "rounds": args.rounds,
            "shoppers": len(data.shoppers),
            "soak": [args.soak_connections, args.soak_duration],
            "app_env": env.get("APP_ENV"),
        },
        "rounds": [[row.as_json() for row in rnd] for rnd in rounds],
        "soak": [row.as_json() for row in soaked],
    }
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{when:%Y-%m-%dT%H%M}-{'long' if args.long else 'short'}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print()
    for line in machine:
        print(line)
    print(f"machine busy before the run: {busy:.0f}% of one CPU; wrote {path.relative_to(ROOT)}")
    print()
    print("\n".join(markdown_table(rounds, soaked)))
    errors = sum(row.errors for rnd in rounds for row in rnd) + sum(r.errors for r in soaked)
    # The app logs JSON lines in production; a warning or worse is worth reading here.
    log_lines = app_log.splitlines()
    trouble = [n for n, line in enumerate(log_lines) if _is_trouble(line)]
    if trouble:
        print(f"\nWARNING: the app logged {len(trouble)} warnings or errors; the first:")
        print(_readable("\n".join(log_lines[trouble[0] : trouble[0] + 40])))
    if errors:
        print(f"\nFAIL: {errors} answers were errors")
        return 1
    return 0


def _readable(text: str) -> str:
    """JSON log lines with their exception unfolded, for a person reading the report."""
    out = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            out.append(line)
            continue
        exception = record.pop("exception", None) if isinstance(record, dict) else None
        out.append(json.dumps(record)[:500])
        if exception:
            out.append(exception)
    return "\n".join(out)


def _is_trouble(line: str) -> bool:
    try:
        record = json.loads(line)
    except ValueError:
        return "Traceback" in line or " ERROR " in line
    return isinstance(record, dict) and record.get("level") in ("warning", "error", "critical")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--long", action="store_true", help="30 s per endpoint, 3 rounds")
    parser.add_argument("--connections", type=int, default=32, help="wrk -c (32)")
    parser.add_argument("--duration", type=float, help="seconds per endpoint (5; long 30)")
    parser.add_argument("--warmup", type=float, default=1, help="warm-up seconds (1)")
    parser.add_argument("--rounds", type=int, help="rounds (1; long 3)")
    parser.add_argument("--shoppers", type=int, default=10_000, help="shoppers (10,000)")
    parser.add_argument("--soak-connections", type=int, default=64, help="soak wrk -c (64)")
    parser.add_argument("--soak-duration", type=float, help="soak seconds (5; long 30; 0: none)")
    parser.add_argument("--only", nargs="+", help="only these endpoints, by name")
    parser.add_argument(
        "--py-spy",
        type=Path,
        metavar="DIR",
        help="sample the servers with py-spy during each measured run (slows them a little); "
        "stacks in DIR, read with `python -m bench.spy DIR/<endpoint>.txt`",
    )
    args = parser.parse_args(argv)
    long = args.long
    args.duration = args.duration or (30 if long else 5)
    args.rounds = args.rounds or (3 if long else 1)
    if args.soak_duration is None:
        args.soak_duration = 30 if long else 5
    return args


def main() -> int:
    args = parse_args()
    if shutil.which("wrk") is None:
        print("bench.run needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    if args.py_spy and not Path(PY_SPY).exists():
        print("--py-spy needs py-spy: make install (a dev dependency)", file=sys.stderr)
        return 2
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix="cart-bench-") as tmp,
        bench_environment(production=True) as setup,
    ):
        print(f"bench run {RUN_ID}: database {setup.database_name}", flush=True)
        return asyncio.run(run(setup, args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
