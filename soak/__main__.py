"""`python -m soak [--shoppers N --duration S ...]`: run the soak, print its report.

Exits 1 when an invariant was violated, 0 when every one held.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from soak.report import as_json_text, as_text
from soak.run import SoakOptions, run_soak


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = SoakOptions()
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__.split("\n")[0])
    parser.add_argument("--shoppers", type=int, default=defaults.shoppers)
    parser.add_argument("--duration", type=float, default=defaults.duration, help="seconds")
    parser.add_argument("--max-requests", type=int, default=defaults.max_requests)
    parser.add_argument(
        "--cycle", type=float, default=defaults.cycle_seconds, help="seconds per fault cycle"
    )
    parser.add_argument("--settle", type=float, default=defaults.settle_seconds, help="seconds")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument("--text", type=Path, help="also write the text report here")
    parser.add_argument("--logs", type=Path, help="keep the servers' logs in this folder")
    args = parser.parse_args(argv)
    if not 1 <= args.shoppers <= 500:
        parser.error("--shoppers must be 1 to 500")
    if not 5 <= args.duration <= 3600:
        parser.error("--duration must be 5 to 3600 seconds")
    return args


def _stop(signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C: every server the run started is stopped on the way out.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    options = SoakOptions(
        shoppers=args.shoppers,
        duration=args.duration,
        max_requests=args.max_requests,
        cycle_seconds=args.cycle,
        settle_seconds=args.settle,
        seed=args.seed,
    )
    result = run_soak(options, keep_logs=args.logs)
    text = as_text(result)
    print(text)
    if args.text:
        args.text.write_text(text + "\n")
    if args.json:
        args.json.write_text(as_json_text(result) + "\n")
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
