"""bench/noise.py: the benchmark's noise check tells other processes' CPU from its own.

Both directions with real processes burning real CPU time (process_time, so a loaded machine only
makes them take longer, not burn less): the benchmark's own descendants never count as noise,
and anything outside its process tree does.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from noise import NoiseLimits, NoiseProbe  # noqa: E402

BURN_SECONDS = 0.5
BURN = (f"import time\nt = time.process_time()\n"
        f"while time.process_time() - t < {BURN_SECONDS}: pass\n")


def burn() -> None:
    """A child of this process burns BURN_SECONDS of CPU and is reaped."""
    subprocess.run([sys.executable, "-c", BURN], check=True, timeout=120)


def test_the_benchmarks_own_processes_are_not_noise() -> None:
    probe = NoiseProbe(NoiseLimits())  # the tree rooted here: the burner is inside it
    probe.start()
    burn()
    reading = probe.stop()
    assert reading.own_cores * reading.seconds >= 0.9 * BURN_SECONDS


def test_a_process_outside_the_benchmark_busy_in_the_window_is_noise() -> None:
    # The benchmark's tree is rooted at an idle process: this process's burner is outside it.
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        probe = NoiseProbe(NoiseLimits(others_cores=0.05), root=idle.pid)
        probe.start()
        burn()
        reading = probe.stop()
    finally:
        idle.kill()
        idle.wait(timeout=10)
    assert reading.others_cores * reading.seconds >= 0.9 * BURN_SECONDS
    assert not reading.quiet
