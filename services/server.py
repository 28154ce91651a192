"""Serve the app: hypercorn workers under a supervisor that stops them all gracefully.

`python -m services.server` (the container's entrypoint `exec`s it) listens on
`settings.server.address` (`BIND`, or `0.0.0.0:$PORT`) with `WORKERS` processes.

Why not `hypercorn --workers N`: hypercorn 0.18's runner waits for the *first* worker
to exit and then terminates the others, so on SIGTERM an idle worker's quick exit
cuts the requests still running in its siblings (a slow SumUp create was lost after
1 s with two workers). Here the same hypercorn worker code (`worker_serve`) runs in
each process, but the supervisor:

* on SIGTERM or SIGINT tells every worker to stop, closes its own copy of the
  listening socket (so new connections are refused at once instead of queueing),
  and waits for *all* of them: each finishes its requests in flight (up to
  `GRACEFUL_TIMEOUT`), then its background loops' round, then closes its pools;
* kills a worker only past `GRACEFUL_TIMEOUT + SHUTDOWN_MARGIN_SECONDS`;
* stops everything (gracefully) and exits non-zero when a worker dies on its own,
  so the orchestrator restarts the container rather than run it half-staffed;
* gives the workers one Prometheus multiprocess folder, emptied at start.

Workers ignore SIGINT and SIGTERM (only the supervisor decides) and stop by
themselves if the supervisor disappears.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from importlib import import_module
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from types import FrameType

import uvloop
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app

from config import ConfigError, Settings, load_settings
from config.settings import report_config_error
from services.logging_setup import setup_logging

log = logging.getLogger("cart.server")

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# After GRACEFUL_TIMEOUT for requests: the background loops' round (services.background
# gives them STOP_GRACE_SECONDS) and closing the pools.
SHUTDOWN_MARGIN_SECONDS = 15.0
POLL_SECONDS = 0.1


def hypercorn_config(settings: Settings) -> Config:
    """hypercorn's settings for the workers: our access lines, its errors through our logs."""
    config = Config()
    config.bind = [settings.server.address]
    config.workers = settings.server.workers
    config.graceful_timeout = settings.server.graceful_timeout_seconds
    config.accesslog = None  # services.logging_setup writes one line per request
    config.errorlog = logging.getLogger("hypercorn.error")
    config.include_server_header = False  # no banner (config/hypercorn.toml for the seed)
    return config


def _serve_worker(config: Config, sockets: Sockets, stop: Event, supervisor_pid: int) -> None:
    """One worker process: the app on the inherited sockets until `stop` is set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    app = wrap_app(import_module("app").app, config.wsgi_max_body_size, None)

    async def stopped() -> None:
        # A multiprocessing Event cannot be awaited: poll it (and the supervisor's life).
        while not stop.is_set() and os.getppid() == supervisor_pid:  # noqa: ASYNC110
            await asyncio.sleep(POLL_SECONDS)

    # uvloop, as the benchmarks measure (bench/README.md): hypercorn's `--worker-class
    # uvloop` does the same for its own runner.
    uvloop.run(worker_serve(app, config, sockets=sockets, shutdown_trigger=stopped))


def prepare_metrics_folder() -> Path:
    """The workers' shared Prometheus folder, emptied (a restart must not add up old counts)."""
    folder = Path(os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="cart-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    return folder


class Supervisor:
    """Starts the workers, waits for all of them, stops them all together."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.context = multiprocessing.get_context("spawn")
        self.stop = self.context.Event()
        self.workers: list[BaseProcess] = []
        self.stopping_since: float | None = None
        self.signalled: str | None = None
        self.exit_code = 0

    def _ask_to_stop(self, why: str) -> None:
        self.stop.set()
        if self.stopping_since is not None:
            return
        self.stopping_since = time.monotonic()
        log.info(
            "stopping: workers finish their requests",
            extra={"why": why, "graceful_timeout_s": self.config.graceful_timeout},
        )

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        # Only flags here (no logging inside a signal handler); the loop does the rest.
        self.signalled = signal.Signals(signum).name
        self.stop.set()

    def run(self) -> int:
        """Serve until stopped; 0 when every worker ended cleanly."""
        sockets = self.config.create_sockets()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        for _ in range(self.config.workers):
            worker = self.context.Process(
                target=_serve_worker,
                kwargs={
                    "config": self.config,
                    "sockets": sockets,
                    "stop": self.stop,
                    "supervisor_pid": os.getpid(),
                },
            )
            worker.start()
            self.workers.append(worker)
        log.info(
            "serving",
            extra={"bind": self.config.bind, "workers": self.config.workers, "pid": os.getpid()},
        )
        try:
            self._wait_for_workers(sockets)
        finally:
            _close(sockets)
        log.info("stopped", extra={"exit_code": self.exit_code})
        return self.exit_code

    def _wait_for_workers(self, sockets: Sockets) -> None:
        sockets_open = True
        while self.workers:
            wait([worker.sentinel for worker in self.workers], timeout=POLL_SECONDS * 5)
            if self.signalled is not None:
                self._ask_to_stop(self.signalled)
            for worker in [w for w in self.workers if w.exitcode is not None]:
                self._reap(worker)
            if self.stopping_since is None:
                continue
            if sockets_open:
                _close(sockets)
                sockets_open = False
            overdue = time.monotonic() - self.stopping_since
            if overdue > self.config.graceful_timeout + SHUTDOWN_MARGIN_SECONDS:
                for worker in self.workers:
                    log.error("worker did not stop in time; killing it", extra={"pid": worker.pid})
                    worker.kill()
                self.exit_code = 1

    def _reap(self, worker: BaseProcess) -> None:
        worker.join()
        self.workers.remove(worker)
        _mark_dead(worker.pid)
        if self.stopping_since is None:
            log.error(
                "a worker exited on its own; stopping the others",
                extra={"pid": worker.pid, "exit_code": worker.exitcode},
            )
            self.exit_code = 1
            self._ask_to_stop("worker exited")
        elif worker.exitcode:
            self.exit_code = 1


def _close(sockets: Sockets) -> None:
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
        sock.close()


def _mark_dead(pid: int | None) -> None:
    if pid is not None and os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


def main() -> int:
    """`python -m services.server`: validate the settings, then serve."""
    try:
        settings = load_settings()
    except ConfigError as error:
        report_config_error(error)
        return 2
    setup_logging(settings)
    created_folder = MULTIPROC_ENV not in os.environ
    folder = prepare_metrics_folder()
    try:
        return Supervisor(hypercorn_config(settings)).run()
    finally:
        if created_folder:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
