"""The soak's short form: a few shoppers for half a minute, every kind of fault once.

It runs `python -m soak` as `make soak` does (its own database on this run's
PostgreSQL server, its own Redis, sandbox and two app instances), then reads the
report it wrote. The long form (`make soak`, minutes and dozens of shoppers) runs
by hand; its reports are under bench/results/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOPPERS = 10
SECONDS = 30
FAULT_KINDS = {
    "webhooks dropped",
    "webhooks twice",
    "sandbox slow",
    "sandbox slower than the app's timeout",
    "sandbox 5xx",
    "sandbox 5xx after doing the call",
    "app instance SIGKILLed and restarted",
    "PostgreSQL connections terminated",
    "Redis stopped and started",
}
POSTGRES_DROP = "PostgreSQL connections terminated"


@pytest.fixture(scope="module")
def soak(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One short soak run: its JSON report and exit code."""
    folder = tmp_path_factory.mktemp("soak")
    report = folder / "report.json"
    env = dict(os.environ)
    # The server this test run uses, not its database: the soak makes its own.
    env["DATABASE_URL_ASYNC"] = os.environ["CART_TEST_BASE_DATABASE_URL"]
    command = [sys.executable, "-m", "soak", "--shoppers", str(SHOPPERS)]
    command += ["--duration", str(SECONDS), "--settle", "45", "--json", str(report)]
    command += ["--logs", str(folder / "logs")]
    soak = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = soak.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        soak.terminate()  # it stops its servers and drops its database on SIGTERM
        stdout, stderr = soak.communicate(timeout=60)
        pytest.fail(f"the soak ran over 240 s:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    if not report.exists():
        pytest.fail(f"the soak wrote no report ({soak.returncode}):\n{stdout}\n{stderr[-5000:]}")
    data: dict[str, Any] = json.loads(report.read_text())
    data["exit code"] = soak.returncode
    data["text"] = stdout
    return data


def _invariant(soak: dict[str, Any], starts: str) -> dict[str, Any]:
    found: dict[str, Any] = next(i for i in soak["invariants"] if i["name"].startswith(starts))
    return found


def test_soak_drives_shoppers_through_every_kind_of_fault(soak: dict[str, Any]) -> None:
    assert set(soak["faults injected"]) == FAULT_KINDS, soak["fault errors"]
    assert not soak["fault errors"]
    assert soak["shoppers"]["total"] == SHOPPERS
    assert soak["requests"]["total"] > 200
    assert soak["facts"]["orders by status"].get("paid", 0) > 0
    assert soak["facts"]["SumUp"]["payments taken"] > 0


def test_soak_settles_once_the_faults_stop(soak: dict[str, Any]) -> None:
    assert soak["settled after seconds"] is not None, soak["text"]


@pytest.mark.parametrize(
    "invariant",
    [
        "every SumUp payment recorded here exactly once",
        "every payment kept by exactly one order or refunded",
        "one order.paid per paid order",
        "no cart line both bought and still in the cart",
        "no calendar entry claimed by two live orders",
        "every order's total",
    ],
)
def test_soak_invariant_holds(soak: dict[str, Any], invariant: str) -> None:
    found = _invariant(soak, invariant)
    assert found["checked"] > 0
    assert found["passed"], found["examples"]


def test_no_5xx_but_503_during_outages_other_than_postgres_drops(soak: dict[str, Any]) -> None:
    # A 503 outside the injected faults is an outage the soak did not plan (a SumUp call
    # on a stale keep-alive connection, once in thousands): reported by the soak, not
    # failed here, where a short run on a busy machine would make it a coin toss.
    unexplained = [
        failure
        for failure in soak["unexplained 5xx and missing answers"]
        if POSTGRES_DROP not in failure["faults"] and failure["status"] != 503
    ]
    assert not unexplained


@pytest.mark.xfail(
    strict=False,
    reason=(
        "PostgreSQL connection loss is answered 503 or retried now (tests/soak/"
        "test_found_by_soak.py passes, and so did this in the runs seen); not strict, as a "
        "request racing the termination inside asyncpg's protocol is down to timing"
    ),
)
def test_no_5xx_but_503_during_outages(soak: dict[str, Any]) -> None:
    assert not soak["unexplained 5xx and missing answers"]


def test_soak_exit_code_says_whether_every_invariant_held(soak: dict[str, Any]) -> None:
    assert soak["exit code"] == (0 if soak["passed"] else 1), soak["text"][-3000:]
