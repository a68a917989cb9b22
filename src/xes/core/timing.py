"""The core's one time contract: what ``now`` means on every entry point that needs time.

The core never reads a clock; the shell reads two and hands them in together as :class:`Now`:

- ``monotonic``: seconds on a clock that never steps (``time.monotonic()``). Everything the core
  compares or schedules uses it: matchmaking arrival order and relaxation deadlines, and the
  deadline :meth:`~xes.core.signalling.Signalling.next_deadline` gives the shell for its timer.
  A wall clock would make an NTP correction reorder the queue or fire a deadline early or late.
- ``unix``: wall-clock Unix seconds (``time.time()``), used only where the outside world reads
  the time: the expiry stamped into TURN credentials (``ice_expires_at``), which coturn compares
  with its own wall clock. If the wall clock steps, those expiries follow it, as they must.

Two named fields in one value, not two floats, so the two readings cannot be swapped unnoticed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Now"]


@dataclass(frozen=True, slots=True)
class Now:
    """One moment as the core sees it: a monotonic reading and a wall-clock reading.

    Attributes:
        monotonic: Monotonic seconds (any origin): deadlines, queue order, timers.
        unix: Wall-clock seconds since the Unix epoch: TURN credential expiry only.

    Raises:
        ValueError: If either reading is not a finite number (a shell bug, refused before the
            core sees it, so it cannot fail half-way through a change).
    """

    monotonic: float
    unix: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.monotonic) and math.isfinite(self.unix)):
            raise ValueError(f"times must be finite numbers, not {self!r}")
