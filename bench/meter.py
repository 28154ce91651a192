"""Who used the machine while a scenario ran, and what PostgreSQL counted.

Reads /proc (Linux): CPU time of the app's processes, of the load generator, of the
bench database's PostgreSQL backends and Redis, of interrupts (loopback networking)
and of everything else; which worker holds which connection; and, from
`pg_stat_database`, the transactions run and the connections opened.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # fields after the command name


def _process_tree(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _proc_stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += frontier
    return tree


def _cpu_by_pid(pids: list[int]) -> dict[int, float]:
    seconds = {}
    for pid in pids:
        if (fields := _proc_stat(pid)) is not None:
            seconds[pid] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return seconds


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds of the processes alive at both ends (backends come and go)."""
    return sum(max(after[pid] - before[pid], 0.0) for pid in before.keys() & after.keys())


def _machine_seconds() -> tuple[float, float]:
    """CPU seconds the machine was busy, and those of them spent in interrupts."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / CLOCK_TICKS, (values[5] + values[6]) / CLOCK_TICKS


def _server_pids(database: str) -> list[int]:
    """PostgreSQL backends of the bench database, and Redis servers."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if comm.startswith("redis-server") or (comm == "postgres" and f" {database} " in command):
            pids.append(int(entry.name))
    return pids


@dataclass
class CpuSplit:
    """CPU used during a scenario, in % of one CPU (as `top` shows it)."""

    app: float
    generator: float
    servers: float
    interrupts: float
    other: float
    app_seconds: float  # not a share: the app's CPU seconds in the window

    def __str__(self) -> str:
        return (
            f"app {self.app:.0f}, gen {self.generator:.0f}, pg+redis {self.servers:.0f}, "
            f"irq {self.interrupts:.0f}, other {self.other:.0f}"
        )


@dataclass
class Measured:
    """What one measured window cost: CPU by whom, and PostgreSQL's own counters."""

    cpu: CpuSplit | None = None
    transactions: int = 0  # committed and rolled back, in the bench database
    sessions: int = 0  # connections opened to the bench database


class Meter:
    """Measures CPU (app, generator, PostgreSQL and Redis, the rest) and PostgreSQL's
    transactions and new connections while a scenario runs."""

    def __init__(
        self, server_pid: int, port: int, database: str, stats: asyncpg.Connection
    ) -> None:
        self.server_pid = server_pid
        self.port = port
        self.database = database
        self.stats = stats

    async def _pg_counters(self) -> tuple[int, int]:
        row = await self.stats.fetchrow(
            "SELECT xact_commit + xact_rollback AS transactions, sessions "
            "FROM pg_stat_database WHERE datname = current_database()"
        )
        assert row is not None
        return int(row["transactions"]), int(row["sessions"])

    @asynccontextmanager
    async def measure(self, *, generator_is_child: bool = False) -> AsyncIterator[Measured]:
        measured = Measured()
        # The statistics of other backends reach pg_stat_database within about a
        # second; a fresh snapshot is taken at both ends.
        await self.stats.execute("SELECT pg_stat_clear_snapshot()")
        pg0 = await self._pg_counters()
        app_pids = _process_tree(self.server_pid)
        server0 = _cpu_by_pid(_server_pids(self.database))
        app0 = _cpu_by_pid(app_pids)
        (busy0, irq0), own0 = _machine_seconds(), _own_cpu(generator_is_child)
        wall0 = time.monotonic()
        yield measured
        wall = time.monotonic() - wall0
        app = _cpu_used(app0, _cpu_by_pid(app_pids))
        server1 = _cpu_by_pid(_server_pids(self.database))
        # Backends opened during the window count whole; those that also closed in it
        # are missed, so this is a lower bound when connections churn.
        servers = _cpu_used(server0, server1) + sum(
            seconds for pid, seconds in server1.items() if pid not in server0
        )
        generator = _own_cpu(generator_is_child) - own0
        busy1, irq1 = _machine_seconds()
        busy, irq = busy1 - busy0, irq1 - irq0
        other = max(busy - irq - app - servers - generator, 0.0)

        def share(seconds: float) -> float:
            return 100 * seconds / wall

        measured.cpu = CpuSplit(
            app=share(app),
            generator=share(generator),
            servers=share(servers),
            interrupts=share(irq),
            other=share(other),
            app_seconds=app,
        )
        await asyncio.sleep(1.1)
        await self.stats.execute("SELECT pg_stat_clear_snapshot()")
        pg1 = await self._pg_counters()
        measured.transactions, measured.sessions = pg1[0] - pg0[0], pg1[1] - pg0[1]


def _own_cpu(children: bool) -> float:
    times = os.times()
    if children:  # wrk, once it has exited
        return times.children_user + times.children_system
    return times.user + times.system


async def machine_busy(seconds: float = 2.0) -> float:
    """How busy the machine is before the run (other work), in % of one CPU."""
    before, started = _machine_seconds()[0], time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (_machine_seconds()[0] - before) / (time.monotonic() - started)


def connections_per_worker(server_pid: int, port: int) -> str:
    """Established connections to the app's port held by each worker, e.g. `20/12`.

    hypercorn's workers share one listening socket, and an asyncio worker accepts
    every connection pending when it wakes up, so a burst of connections (wrk opens
    all of its own at once) can land on one worker and leave the others idle.
    """
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                inodes.add(f"socket:[{fields[9]}]")
    counts = []
    for pid in _process_tree(server_pid)[1:]:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if (held := sum(1 for link in links if link in inodes)) or "spawn_main" in _cmdline(pid):
            counts.append(held)
    return "/".join(str(n) for n in counts)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
