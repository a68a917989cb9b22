"""Fixtures for the TURN relay tests: a real coturn per test, stopped even when the test fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .coturn import Coturn, start_coturn


@pytest.fixture
def start_turn(tmp_path: Path) -> Iterator[Callable[..., Coturn]]:
    """Factory: start a coturn (keyword arguments as for `start_coturn`); all stop at teardown."""
    started: list[Coturn] = []

    def start(**kwargs: Any) -> Coturn:
        run_dir = tmp_path / f"coturn{len(started)}"
        coturn = start_coturn(run_dir, **kwargs)
        started.append(coturn)
        return coturn

    yield start
    for coturn in started:
        coturn.stop()
