"""`make run`: its own ports and sandbox, and nothing left running when it stops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.devserver import PID_FILE, PidFile, Refusal, own_sandbox
from sandbox.sumup_sandbox import running_sandbox
from tests.conftest import REDIS_PREFIX, ROOT, free_port


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUMUP_", "PROMETHEUS_"))}
    env.update(APP_ENV="development", EVENTS_STREAM=f"{REDIS_PREFIX}events", LOG_FORMAT="json")
    return env


def _start(data_dir: Path, port: int, sandbox_port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox.devserver",
            "--port",
            str(port),
            "--sandbox-port",
            str(sandbox_port),
            "--data-dir",
            str(data_dir),
        ],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_serving(port: int, process: subprocess.Popen[Any], within: float = 90) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        assert process.poll() is None, "it exited before serving"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("make run never served")


def _stop(process: subprocess.Popen[str]) -> None:
    """Test clean-up: the orderly stop first, so a failing test leaves nothing running."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours is gone for every purpose here.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


def _wait_gone(pids: list[int], within: float = 45) -> None:
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still running: {[p for p in pids if _alive(p)]}"
        time.sleep(0.1)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@pytest.fixture
def listener() -> Iterator[int]:
    """A port somebody else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_taken_shop_port_is_refused_in_one_line(tmp_path: Path, listener: int) -> None:
    process = _start(tmp_path, listener, free_port())
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"make run: port {listener} (the shop) is already in use on 127.0.0.1"
    )
    assert not (tmp_path / PID_FILE).exists()


def test_a_taken_sandbox_port_is_refused_in_one_line(tmp_path: Path, listener: int) -> None:
    process = _start(tmp_path, free_port(), listener)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert err.strip().splitlines()[-1] == (
        f"make run: port {listener} (the SumUp sandbox) is already in use on 127.0.0.1"
    )


def test_a_sandbox_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    port = free_port()
    with (
        running_sandbox(port=port),  # someone else's sandbox
        pytest.raises(Refusal),
        own_sandbox(port, PidFile(tmp_path)),
    ):
        pass


def _children(data_dir: Path) -> dict[str, int]:
    children: dict[str, int] = json.loads((data_dir / PID_FILE).read_text())["children"]
    return children


def test_sigterm_stops_everything_it_started(tmp_path: Path) -> None:
    port, sandbox_port = free_port(), free_port()
    process = _start(tmp_path, port, sandbox_port)
    try:
        _wait_serving(port, process)
        children = _children(tmp_path)
        assert set(children) == {"sandbox", "app"}
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        _stop(process)
    _wait_gone(list(children.values()))
    assert _port_free(port) and _port_free(sandbox_port)
    assert not (tmp_path / PID_FILE).exists()


def _leftover_app(port: int) -> subprocess.Popen[bytes]:
    """An app server as a SIGKILLed make run leaves it: alive, in a session of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "services.server"],
        cwd=ROOT,
        env={**_env(), "BIND": f"127.0.0.1:{port}", "WORKERS": "1"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_a_stale_pid_file_makes_the_next_run_stop_the_leftovers_first(tmp_path: Path) -> None:
    port, sandbox_port = free_port(), free_port()
    dead = subprocess.Popen(["true"])  # noqa: S607 - the pid of a make run that is gone
    dead.wait()
    leftover = _leftover_app(port)
    try:
        _wait_serving(port, leftover)
        tmp_path.mkdir(exist_ok=True)
        (tmp_path / PID_FILE).write_text(
            json.dumps({"pid": dead.pid, "children": {"app": leftover.pid}})
        )
        run = _start(tmp_path, port, sandbox_port)
        try:
            _wait_gone([leftover.pid])  # the leftover is stopped first...
            _wait_serving(port, run)  # ...then the new run serves on its port
            run.send_signal(signal.SIGINT)  # as Ctrl-C
            assert run.wait(timeout=60) == 0
        finally:
            _stop(run)
    finally:
        if leftover.poll() is None:
            leftover.terminate()
            leftover.wait(timeout=60)
    stderr = run.stderr.read() if run.stderr else ""
    assert f"stopping app (pid {leftover.pid}) left by an unclean exit" in stderr
    assert _port_free(port) and _port_free(sandbox_port)
    assert not (tmp_path / PID_FILE).exists()


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("CART_SLOW_TESTS"), reason="long form: CART_SLOW_TESTS=1")
def test_the_next_run_stops_what_a_sigkilled_run_left_behind(tmp_path: Path) -> None:
    """The long form of the test above (two whole runs, about 35 s)."""
    port, sandbox_port = free_port(), free_port()
    first = _start(tmp_path, port, sandbox_port)
    try:
        _wait_serving(port, first)
    except AssertionError:
        _stop(first)
        raise
    left = _children(tmp_path)
    first.kill()  # SIGKILL: no clean-up at all
    first.wait()
    assert all(_alive(pid) for pid in left.values())

    second = _start(tmp_path, port, sandbox_port)
    try:
        _wait_gone(list(left.values()))
        _wait_serving(port, second)
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=60) == 0
    finally:
        _stop(second)
    assert _port_free(port) and _port_free(sandbox_port)
