"""XES: privacy-first peer-to-peer voice chat. The server signals; audio goes peer to peer."""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from xes.peer import Peer as Peer


def __getattr__(name: str) -> object:
    # `xes.Peer` is imported on first use only: it needs aiortc (the `peer` extra), and the
    # server must import `xes` without it.
    if name == "Peer":
        from xes.peer import Peer

        return Peer
    raise AttributeError(f"module 'xes' has no attribute {name!r}")
