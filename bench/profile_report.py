"""Summarise a py-spy `--format raw` (folded stacks) profile: where the server's CPU goes.

Each line of the file is `frame;frame;...;leaf count`. Self time is the count of stacks that end
in a function; inclusive time counts a function once per stack it appears in.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["summarize_folded"]

# py-spy frames look like "receive (xes/server/app.py:240)"; keep function and file, drop the line
# so that one function's samples are not split across its lines.
_LINE = re.compile(r":\d+\)$")


def _name(frame: str) -> str:
    frame = _LINE.sub(")", frame.strip())
    return frame.replace("/work/main/src/", "").replace("/work/main/.venv/lib/python3.11/", "")


def summarize_folded(path: Path, top: int = 25) -> dict[str, Any]:
    self_c: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        frames = [_name(f) for f in stack.split(";") if f]
        # py-spy prefixes the thread ("process 123:\"python\"", "thread (0x...)"): not functions.
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        self_c[frames[-1]] += count
        for f in set(frames):
            incl[f] += count
    pct = 100.0 / total if total else 0.0
    return {
        "samples": total,
        "top_self": [(f, round(c * pct, 2)) for f, c in self_c.most_common(top)],
        "top_inclusive": [(f, round(c * pct, 2)) for f, c in incl.most_common(top)],
    }


if __name__ == "__main__":
    report = summarize_folded(Path(sys.argv[1]))
    print(f"{report['samples']} samples\n-- self --")
    for f, p in report["top_self"]:
        print(f"{p:6.1f}%  {f}")
    print("-- inclusive --")
    for f, p in report["top_inclusive"]:
        print(f"{p:6.1f}%  {f}")
