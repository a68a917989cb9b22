"""Fixtures for the Python peer's tests: tone files.

The xes server and coturn come from tests/conftest.py (`xes_server`, `start_xes_server`,
`coturn`: the production TURN configuration on loopback, TURN REST credentials).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peer.tones import write_tone


@pytest.fixture
def tones(tmp_path: Path) -> Callable[[float], Path]:
    """Factory: tones(440) -> path of a 10 s 440 Hz WAV in this test's tmp dir."""
    return lambda frequency: write_tone(tmp_path / "tones", frequency)
