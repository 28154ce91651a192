"""The soak's report: what ran, what was injected, and each invariant's verdict."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
from collections import Counter
from dataclasses import asdict
from typing import Any

from soak.invariants import as_json
from soak.run import ROOT, SoakResult, environment_summary
from soak.traffic import DROPPED, REFUSED, TIMED_OUT


def _commit() -> str:
    try:
        return subprocess.run(
            [shutil.which("git") or "git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):  # not a git checkout
        return "unknown"


def _status(status: int) -> str:
    return {TIMED_OUT: "timed out", REFUSED: "refused", DROPPED: "dropped"}.get(status, str(status))


def _counts(counter: Counter[Any] | dict[str, Any]) -> str:
    items = counter.most_common() if isinstance(counter, Counter) else list(counter.items())
    return ", ".join(f"{key} {value}" for key, value in items) or "none"


def as_dict(result: SoakResult) -> dict[str, Any]:
    """The report as JSON-able data."""
    traffic = result.traffic
    return {
        "started_at": result.started_at,
        "commit": _commit(),
        "machine": f"{environment_summary()}, python {platform.python_version()}",
        "servers": result.servers,
        "options": asdict(result.options),
        "wall_seconds": round(result.wall_seconds, 1),
        "shoppers": {
            "total": result.options.shoppers,
            "signing in": result.signed_in,
            "anonymous only": result.options.shoppers - result.signed_in,
        },
        "requests": {
            "total": len(traffic.answers),
            "by class": dict(traffic.by_class()),
            "by status": {_status(k): v for k, v in sorted(traffic.by_status().items())},
            "failovers to the other instance": traffic.failovers,
            "to the sandbox (hosted page, control API)": dict(traffic.sandbox_calls),
            "webhooks by answer": {
                _status(k): v for k, v in Counter(w.status for w in result.webhooks).items()
            },
        },
        "actions": dict(result.actions.most_common()),
        "refund requests": dict(result.refund_outcomes.most_common()),
        "faults injected": dict(result.faults.by_kind()),
        "fault windows": [asdict(w) for w in result.faults.windows],
        "fault errors": result.faults.errors,
        "5xx and missing answers during outages": dict(result.failures.during_outages),
        "unexplained 5xx and missing answers": result.failures.as_json(),
        "settled after seconds": result.settled_after,
        "facts": result.facts,
        "invariants": as_json(result.invariants),
        "app log errors": len(result.app_errors),
        "app log error kinds": dict(_error_kinds(result.app_errors).most_common(10)),
        "passed": result.passed,
    }


def _error_kinds(errors: list[str]) -> Counter[str]:
    # "A: 2026-… ERROR name: message → Exception: text": keep logger and exception.
    kinds: Counter[str] = Counter()
    for line in errors:
        parts = line.split(" ERROR ", 1)
        tail = parts[1] if len(parts) == 2 else line
        logger, _, rest = tail.partition(": ")
        exception = rest.rsplit(" → ", 1)[-1] if " → " in rest else rest
        kinds[f"{logger}: {exception[:110]}"] += 1
    return kinds


def as_text(result: SoakResult) -> str:
    """The report for people."""
    data = as_dict(result)
    o = result.options
    lines = [
        f"cart soak, {data['started_at']}, commit {data['commit']}",
        f"machine: {data['machine']}; servers: {data['servers']}, own Redis, own SumUp sandbox,",
        "  two app instances (hypercorn soak.instance:app, one process each, loopback ports)",
        f"run: {o.duration:g}s of shopping, fault cycle {min(o.cycle_seconds, o.duration):g}s, "
        f"settle ≤ {o.settle_seconds:g}s; wall {data['wall_seconds']}s; seed {o.seed}",
        f"settings: sweep every {o.sweep_seconds:g}s, SumUp timeout {o.sumup_timeout_seconds:g}s, "
        f"unpaid expiry {o.unpaid_expiry_minutes} min, checkout lifetime "
        f"{o.checkout_lifetime_minutes} min (sandbox {o.sandbox_checkout_ttl:g}s); rate limits "
        "on, per-IP ones raised (one IP for all), per-session ones raised",
        "",
        f"shoppers: {o.shoppers} ({result.signed_in} sign in along the way, "
        f"{o.shoppers - result.signed_in} stay anonymous), plus one refunding admin",
        f"requests to the app: {data['requests']['total']}; by class: "
        f"{_counts(result.traffic.by_class())}",
        f"  by status: {_counts(data['requests']['by status'])}",
        f"  failovers to the other instance (connection refused): {result.traffic.failovers}",
        f"  to the sandbox: {_counts(result.traffic.sandbox_calls)}",
        "webhooks SumUp sent, by the app's answer: "
        + _counts(Counter(_status(w.status) for w in result.webhooks)),
        f"actions: {_counts(result.actions)}",
        f"refund requests (kind: status): {_counts(result.refund_outcomes)}",
        "",
    ]
    for name, value in result.facts.items():
        lines.append(f"{name}: {_counts(value) if isinstance(value, dict) else value}")
    lines += [
        "",
        f"faults injected ({len(result.faults.windows)}): {_counts(result.faults.by_kind())}",
    ]
    for error in result.faults.errors:
        lines.append(f"  fault failed to inject: {error}")
    lines += [
        f"5xx and missing answers explained by a fault: {_counts(result.failures.during_outages)}",
        "settled: "
        + (
            f"{result.settled_after:.1f}s after the faults stopped"
            if result.settled_after is not None
            else f"NOT within {o.settle_seconds:g}s"
        ),
        f"app log: {len(result.app_errors)} ERROR records"
        + (
            "; kinds: "
            + "; ".join(f"{n}× {k}" for k, n in _error_kinds(result.app_errors).most_common(6))
            if result.app_errors
            else ""
        ),
        "",
        "invariants:",
    ]
    for invariant in result.invariants:
        verdict = "PASS" if invariant.passed else "FAIL"
        lines.append(
            f"  {verdict}  {invariant.name}: {invariant.checked} checked, "
            f"{len(invariant.violations)} violations"
        )
        if invariant.note:
            lines.append(f"        {invariant.note}")
        for violation in invariant.violations[:8]:
            lines.append(f"        - {violation}")
        if len(invariant.violations) > 8:
            lines.append(f"        … and {len(invariant.violations) - 8} more")
    lines += ["", "PASS: every invariant held" if result.passed else "FAIL: invariants violated"]
    return "\n".join(lines)


def as_json_text(result: SoakResult) -> str:
    return json.dumps(as_dict(result), indent=2, default=str)
