"""The noise check: did anything but the benchmark use the CPU during a measured window?

A figure taken while a neighbour (another test suite, a browser, a compiler) shares the cores is
not a figure about the server: the server's CPU per operation grows with cache and scheduler
pressure, and latency measures the neighbour's time slices. So every measured window is watched:

- the machine's CPU time, from /proc/stat (user + nice + system of every core, and steal: time
  the hypervisor gave this VM's cores to someone else);
- minus the benchmark's own CPU time: every process descended from the coordinator (servers,
  load generators, browsers, the coordinator itself), from /proc/<pid>/stat (utime + stime, plus
  cutime + cstime for children that ended and were reaped inside the tree).

What remains is other processes' CPU. A window where it, or steal, is above the limit is
discarded and measured again (a bounded number of times); a figure that never got a quiet
window is reported as such, never printed as if it were clean.

Interrupt and softirq time are left out on both sides: on loopback most of it is the
benchmark's own TCP traffic, which /proc/<pid>/stat does not charge to any process.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["NoiseLimits", "NoiseReading", "NoiseProbe", "own_ticks"]

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class NoiseLimits:
    """What a quiet window allows, in cores (1.0 = one core busy the whole window)."""

    others_cores: float = 0.05
    steal_cores: float = 0.05


@dataclass
class NoiseReading:
    seconds: float
    others_cores: float   # other processes' CPU, averaged over the window
    steal_cores: float
    own_cores: float      # the benchmark's own processes, for reference
    quiet: bool

    def as_dict(self) -> dict[str, object]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}

    def __str__(self) -> str:
        return (f"others {self.others_cores:.3f} cores, steal {self.steal_cores:.3f}"
                f"{'' if self.quiet else ' (disturbed)'}")


def _machine_ticks() -> tuple[int, int]:
    """(user + nice + system, steal) over all cores, in clock ticks."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    # cpu user nice system idle iowait irq softirq steal guest guest_nice
    user, nice, system, steal = int(fields[1]), int(fields[2]), int(fields[3]), int(fields[8])
    return user + nice + system, steal


def _stat_fields(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone between listing and reading
        return None
    # The command name (field 2) may hold spaces; every field after its closing ")" is plain.
    return text[text.rindex(")") + 2:].split()


def own_ticks(root: int) -> int:
    """CPU ticks of `root` and every process descended from it, reaped children included."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(entry)
        if fields is None:
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])  # field 4 of proc(5): ppid
        # fields 14-17 of proc(5): utime, stime, cutime, cstime
        ticks[pid] = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    total = 0
    for pid, own in ticks.items():
        p, hops = pid, 0
        while p and p != root and hops < 64:
            p, hops = parent.get(p, 0), hops + 1
        if p == root:
            total += own
    return total


class NoiseProbe:
    """Brackets one window: start() at its beginning, stop() at its end."""

    def __init__(self, limits: NoiseLimits, root: int | None = None) -> None:
        self.limits = limits
        self.root = root if root is not None else os.getpid()
        self._t0 = 0.0
        self._busy0 = self._steal0 = self._own0 = 0

    def start(self) -> None:
        self._own0 = own_ticks(self.root)
        self._busy0, self._steal0 = _machine_ticks()
        self._t0 = time.monotonic()

    def stop(self) -> NoiseReading:
        busy, steal = _machine_ticks()
        own = own_ticks(self.root)
        seconds = max(1e-3, time.monotonic() - self._t0)
        own_s = (own - self._own0) / TICKS
        others = max(0.0, (busy - self._busy0) / TICKS - own_s) / seconds
        stolen = (steal - self._steal0) / TICKS / seconds
        quiet = others <= self.limits.others_cores and stolen <= self.limits.steal_cores
        return NoiseReading(seconds, others, stolen, own_s / seconds, quiet)
