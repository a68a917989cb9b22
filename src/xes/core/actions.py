"""What the core asks its shell to do. Commands, named as such; the shell carries them out in order."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Send", "Close", "Action"]


@dataclass(frozen=True, slots=True)
class Send:
    """Send one text frame (already-encoded JSON) to a connected peer."""

    to: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class Close:
    """Close a peer's connection with a WebSocket close code (docs/protocol.md, "Close codes")."""

    peer: str
    code: int
    reason: str


Action = Send | Close
