"""Where a request's CPU goes: the app and the reference app driven in-process.

    .venv/bin/python -m bench.profile                          # CPU ms per request, every row
    .venv/bin/python -m bench.profile --only "summary, 30 lines" --profile
    .venv/bin/python -m bench.profile --only "page cart, 30 lines" --profile --html out.html
    .venv/bin/python -m bench.profile --only "summary, 30 lines" --hooks --repeats 7

No server and no load generator: the ASGI apps are called directly under uvloop
with `--concurrency` requests in flight, on the data set and the requests of
`bench.run` (the same shoppers, cookies and forms), so the process's CPU time per
request is the app's own cost without hypercorn's and wrk's. `/floor` and `/hello`
run the same way, so every row is also given as a ratio to them. With `--profile`
the measured requests of each row run under pyinstrument and its call tree is
printed (or written as HTML); profiling slows everything, so read the ratios from a
run without it. With `--hooks`, each row is measured again without each of the app's
request hooks in turn, then without all of them (`HOOKS_KEPT` stay: they hand the
request's connections back), which is what the hooks cost the row and what the row
would cost with none. A tool for finding the time, not the report: the report's
numbers come from `bench.run`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import bench_environment, forget_redis_keys
from bench.dataset import measured_dataset
from bench.run import (
    FLOOR,
    HELLO,
    Endpoint,
    WrkRequest,
    endpoints,
    requests_for,
    sandbox_command,
    served,
    wait_until_up,
)

Asgi = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

# The hooks `--hooks` never takes out: without them a request's connections never go
# back to the pool, and the pool runs dry within a few dozen requests.
HOOKS_KEPT = frozenset({"init_request_commit.<locals>._finish_session"})
HOOK_KINDS = ("before_request_funcs", "after_request_funcs")


async def call(app: Asgi, request: WrkRequest) -> tuple[int, dict[str, str]]:
    """One request through the ASGI app; its status and headers (the body is dropped)."""
    path, _, query = request.path.partition("?")
    body = request.body.encode()
    headers = [(b"host", b"127.0.0.1")]
    headers += [(k.lower().encode(), v.encode()) for k, v in request.headers.items()]
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
        "extensions": {},
    }
    sent = False
    answer: dict[str, Any] = {}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}

    await app(scope, receive, send)
    return answer.get("status", 0), answer.get("headers", {})


async def drive(app: Asgi, requests: list[WrkRequest], count: int, concurrency: int) -> None:
    """`count` requests, `concurrency` in flight, cycling through `requests`."""
    queue = iter(range(count))

    async def worker() -> None:
        for n in queue:
            status, _ = await call(app, requests[n % len(requests)])
            if status >= 400 or status == 0:
                raise RuntimeError(f"{requests[n % len(requests)].path} answered {status}")

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def cpu_per_request(
    app: Asgi, requests: list[WrkRequest], args: argparse.Namespace, profiler: Any = None
) -> float:
    """CPU ms per request: the least of `--repeats` runs of `--requests` requests."""
    await drive(app, requests, args.requests // 4, args.concurrency)  # warm up
    best = float("inf")
    for _ in range(args.repeats):
        if profiler is not None:
            profiler.start()
        started = time.process_time()
        await drive(app, requests, args.requests, args.concurrency)
        best = min(best, (time.process_time() - started) * 1000 / args.requests)
        if profiler is not None:
            profiler.stop()
    return best


async def run(args: argparse.Namespace, setup: Any) -> int:
    from config import load_settings

    settings = load_settings()
    data = await measured_dataset(setup, settings, args.shoppers)
    from app import create_app
    from bench import reference_app

    cart = create_app()
    bearer = f"Bearer {settings.internal_api_token.reveal()}"
    rows = [e for e in endpoints(bearer) if not args.only or e.name in args.only]
    apps: dict[str, Any] = {"app": cart, "reference": reference_app.app}
    for app in apps.values():
        await app.startup()
    try:
        reference: dict[str, float] = {}
        for endpoint in (FLOOR, HELLO):
            reference[endpoint.name] = await cpu_per_request(
                apps["reference"], requests_for(endpoint, data), args
            )
            print(f"{endpoint.name:<32} {reference[endpoint.name]:6.3f} ms CPU/req", flush=True)
        for endpoint in rows:
            await profile_row(endpoint, apps, data, reference, args)
    finally:
        for app in apps.values():
            await app.shutdown()
        await forget_redis_keys(setup.redis_url, keys=data.session_keys, patterns=[])
    return 0


async def profile_row(
    endpoint: Endpoint,
    apps: dict[str, Any],
    data: Any,
    reference: dict[str, float],
    args: argparse.Namespace,
) -> None:
    profiler = None
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002, async_mode="disabled")
    requests = requests_for(endpoint, data)
    ms = await cpu_per_request(apps[endpoint.server], requests, args, profiler)
    print(
        f"{endpoint.name:<32} {ms:6.3f} ms CPU/req   × floor {reference['/floor'] / ms:5.2f}"
        f"   × hello {reference['/hello'] / ms:5.2f}",
        flush=True,
    )
    if args.hooks and endpoint.server == "app":
        await hook_costs(apps["app"], requests, args, reference["/floor"], ms)
    if profiler is not None:
        if args.html:
            name = endpoint.name.replace(" ", "_").replace(",", "")
            path = Path(args.html).with_stem(f"{Path(args.html).stem}-{name}")
            path.write_text(profiler.output_html())
            print(f"  profile: {path}")
        else:
            print(profiler.output_text(unicode=True, color=False, show_all=False))


async def hook_costs(
    app: Any, requests: list[Any], args: argparse.Namespace, floor: float, measured: float
) -> None:
    """The row without each app-wide request hook in turn, then without all of them.

    Each variant runs between two runs with every hook and is compared with their
    mean, so that a drift of the row (a write's data set changing, caches warming) is
    not counted as a hook's cost."""
    hooks = {kind: list(getattr(app, kind)[None]) for kind in HOOK_KINDS}

    async def without(left_out: set[Any]) -> float:
        for kind, funcs in hooks.items():
            getattr(app, kind)[None][:] = [f for f in funcs if f not in left_out]
        try:
            return await cpu_per_request(app, requests, args)
        finally:
            for kind, funcs in hooks.items():
                getattr(app, kind)[None][:] = funcs

    names = {f.__qualname__ for funcs in hooks.values() for f in funcs}
    if missing := HOOKS_KEPT - names:  # renamed: leaving it out would drain the pool
        raise RuntimeError(f"no hook called {', '.join(sorted(missing))}")
    removable = [f for funcs in hooks.values() for f in funcs if f.__qualname__ not in HOOKS_KEPT]
    variants = [({hook}, f"without {hook.__qualname__}", False) for hook in removable]
    variants.append((set(removable), f"without all {len(removable)}", True))
    before = measured
    for left_out, name, show_ratio in variants:
        ms = await without(left_out)
        after = await cpu_per_request(app, requests, args)
        base = (before + after) / 2
        print(
            f"  {name:<64} {ms:6.3f}   {base - ms:+.3f} ms   (with all: {before:.3f}, {after:.3f})"
            + (f"   × floor {floor / ms:5.2f}" if show_ratio else ""),
            flush=True,
        )
        before = after


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--only", nargs="+", default=[], help="only these rows, by name")
    parser.add_argument("--shoppers", type=int, default=3000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--html", help="write each profile as HTML beside this path")
    parser.add_argument(
        "--hooks", action="store_true", help="each row again without each request hook"
    )
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    import uvloop

    with (
        bench_environment(production=True) as setup,
        tempfile.TemporaryDirectory(prefix="cart-profile-") as workdir,
        served("sandbox", sandbox_command, Path(workdir), dict(os.environ)) as sandbox,
    ):
        # As `bench.run` configures both servers; the checkout row pays at the sandbox.
        os.environ.update(
            SESSION_COOKIE_SECURE="true",
            PUBLIC_URL="http://127.0.0.1",
            SUMUP_BASE_URL=sandbox.base_url,
            SUMUP_API_KEY="sup_sk_sandbox_coop",
            SUMUP_MERCHANT_CODE="MCOOP0001",
        )
        uvloop.run(wait_until_up(sandbox, "/_sandbox/healthz"))
        return uvloop.run(run(args, setup))


if __name__ == "__main__":
    sys.exit(main())
