"""One Markdown table from several `bench.run` results: medians and ranges over all rounds.

.venv/bin/python -m bench.report bench/results/2026-12-02T18*-short.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bench.run import Row, markdown_table


def _row(data: dict[str, Any]) -> Row:
    fields = {name: data[name] for name in Row.__dataclass_fields__ if name in data}
    return Row(**fields)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="bench/results/*.json files")
    args = parser.parse_args()
    rounds: list[list[Row]] = []
    soaked: list[Row] = []
    for path in args.results:
        report = json.loads(path.read_text())
        rounds += [[_row(row) for row in rnd] for rnd in report["rounds"]]
        soaked += [_row(row) for row in report["soak"]]
        print(
            f"<!-- {path.name}: {report['date']}, {report['command']}, machine busy before: "
            f"{report['machine_busy_before_percent_of_one_cpu']}% of one CPU -->"
        )
    print("\n".join(markdown_table(rounds, soaked)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
