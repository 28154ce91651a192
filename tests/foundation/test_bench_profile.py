"""`bench.profile --hooks`: each hook left out in turn, then all, and the app as it was."""

from __future__ import annotations

import argparse

import pytest
from quart import Quart, Response

from bench.profile import HOOK_KINDS, hook_costs
from bench.run import WrkRequest


def init_request_commit(app: Quart, handed_back: list[int]) -> None:
    """Named as the app's: `bench.profile.HOOKS_KEPT` keeps this one in every variant."""

    @app.after_request
    async def _finish_session(response: Response) -> Response:
        handed_back.append(1)
        return response


def _app(calls: dict[str, int], handed_back: list[int]) -> Quart:
    app = Quart(__name__)

    @app.get("/hello")
    async def hello() -> str:
        return "hello"

    @app.before_request
    async def first() -> None:
        calls["first"] += 1

    @app.after_request
    async def second(response: Response) -> Response:
        calls["second"] += 1
        return response

    init_request_commit(app, handed_back)
    return app


async def test_every_hook_is_left_out_in_turn_then_all_and_put_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls = {"first": 0, "second": 0}
    handed_back: list[int] = []
    app = _app(calls, handed_back)
    before = {kind: list(getattr(app, kind)[None]) for kind in HOOK_KINDS}
    args = argparse.Namespace(requests=40, repeats=1, concurrency=4)
    await app.startup()
    try:
        await hook_costs(app, [WrkRequest("GET", "/hello", {}, "")], args, 0.1, 0.2)
    finally:
        await app.shutdown()

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["without", "_app.<locals>.first"],
        ["without", "_app.<locals>.second"],
        ["without", "all"],
    ]
    assert "× floor" in lines[-1]
    # Each variant and each run with every hook between them (40 requests, a quarter more
    # to warm up): `first` ran in every run but its own and the one without all hooks.
    runs = 3 + 3  # three variants, three runs with every hook after them
    assert calls["first"] == (runs - 2) * 50
    assert calls["second"] == (runs - 2) * 50
    assert len(handed_back) == runs * 50  # the kept hook ran every time
    after = {kind: list(getattr(app, kind)[None]) for kind in HOOK_KINDS}
    assert after == before


async def test_an_app_without_the_hook_that_hands_connections_back_is_refused() -> None:
    """Renamed, it would be left out with the others and drain the pool: say so instead."""
    app = Quart(__name__)

    @app.after_request
    async def _finish_session(response: Response) -> Response:  # not the app's qualname
        return response

    args = argparse.Namespace(requests=4, repeats=1, concurrency=1)
    with pytest.raises(RuntimeError, match="no hook called init_request_commit"):
        await hook_costs(app, [WrkRequest("GET", "/hello", {}, "")], args, 0.1, 0.2)
