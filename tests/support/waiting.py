"""Waiting for a condition that real processes make true in their own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# How often a condition is looked at again: often enough not to add to what a test waits, rarely
# enough that its reads (a page's getStats, say) do not load the machine that must make it true.
POLL_S = 0.25


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    """`read()` again every POLL_S until `done` holds for what it read, or `timeout` seconds
    passed; return the last reading either way (the caller asserts on it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(POLL_S)


def wait_for(condition: Callable[[], bool], what: str | Callable[[], str], timeout: float) -> None:
    """Return once `condition()` holds; after `timeout` seconds fail, saying `what` was awaited.

    A wait, not a measurement: the bound only costs time when it fails. `what` may be a callable,
    read only on failure, so that the message shows the state at the end of the wait.
    """
    if not poll(condition, bool, timeout):
        raise AssertionError(f"not within {timeout} s: {what() if callable(what) else what}")
