"""What the benchmark reads about a process from /proc: CPU time and resident memory.

CPU is utime+stime from /proc/<pid>/stat, which covers every thread of the process (node's
libuv and V8 helper threads included), in clock ticks (usually 100 per second: windows of a few
seconds keep the rounding under one percent).
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

__all__ = ["TICKS", "cpu_seconds", "stat_ticks", "rss_kib", "machine"]

TICKS = os.sysconf("SC_CLK_TCK")


def stat_ticks(path: str) -> tuple[str, int]:
    """The command name and user plus system CPU ticks so far from a `stat` file of /proc: a
    process's (/proc/<pid>/stat) or one thread's (/proc/<pid>/task/<tid>/stat). Raises OSError
    if it is gone."""
    stat = Path(path).read_text()
    # The command name (field 2) may hold spaces; every field after its closing ")" is plain.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return stat[stat.index("(") + 1:stat.rindex(")")], utime + stime


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the whole process so far."""
    return stat_ticks(f"/proc/{pid}/stat")[1] / TICKS


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "?"


def machine() -> dict[str, object]:
    """What the figures were measured on, for the results file."""
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": _first_line(["node", "--version"]),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
