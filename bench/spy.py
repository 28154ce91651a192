"""What py-spy saw in a server during one of `bench.run --py-spy DIR`'s measured runs.

    .venv/bin/python -m bench.spy DIR/summary-30-lines.txt            # top 40 both ways
    .venv/bin/python -m bench.spy DIR/summary-30-lines.txt --top 80 --match services/

Each function with the share of samples it was on the stack (inclusive, counted once
per stack however deep it recurses) and at the top of it (self). The samples are of
the real server under wrk, hypercorn and the event loop included, which the
in-process `bench.profile` leaves out.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

# py-spy names a frame "function (path/to/file.py:line)"; the line is dropped so that
# one function is one row.
FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>.*?)(?::\d+)?\)$")


def function_of(frame: str) -> str:
    match = FRAME.match(frame)
    if match is None:
        return frame
    path = match["file"]
    for marker in ("site-packages/", "lib/python3.11/", "/work/main/"):
        path = path.split(marker, 1)[-1]
    return f"{match['name']} ({path})"


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(function_of(f) for f in frames.split(";"))] += int(count)
    return stacks


def report(stacks: Counter[tuple[str, ...]], top: int, match: str | None) -> list[str]:
    total = sum(stacks.values()) or 1
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for frames, count in stacks.items():
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
    lines = [f"{total} samples"]
    for title, counter in (("on the stack", inclusive), ("at the top", own)):
        lines.append(f"\n{title}:")
        rows = [(n, c) for n, c in counter.most_common() if not match or match in n]
        lines += [f"  {100 * c / total:5.1f} %  {n}" for n, c in rows[:top]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stacks", type=Path, help="a file written by bench.run --py-spy")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", help="only functions whose name or file holds this")
    args = parser.parse_args(argv)
    print("\n".join(report(read_stacks(args.stacks), args.top, args.match)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
