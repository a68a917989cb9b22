"""What the core asks its shell to do. Commands, named as such; the shell carries them out in order.

There is one kind today, :class:`Send`. Every close code (docs/protocol.md, "Close codes") is
about the transport (flood, oversized frames, error streaks, lost heartbeats, shutdown), so the
shell decides those itself; a rule of the core never ends a connection: a removed or banned peer
is told (``removed``) and may still join another room or look for a match. A new kind of command
is added here, to the ``Action`` union, and to ``XesServer.execute``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .safety import Rating, ReportReason, Standing

__all__ = ["Send", "CreateIdentity", "SaveStanding", "SaveBlock", "SaveRating", "SaveReport",
           "StoreAction", "Action"]


@dataclass(frozen=True, slots=True)
class Send:
    """Send one text frame (already-encoded JSON) to a session.

    ``numbered``: the shell stamps the next ``seq`` into the payload and keeps the frame in the
    session's replay buffer (:class:`xes.core.outbox.Outbox`), and writes it only if the session
    has a socket. ``hello``, ``resumed`` and the replayed frames (already numbered) are not.
    """

    to: str
    payload: bytes
    numbered: bool = True


# What the core asks the shell to store (the core decides, the shell stores: never on the relay path).


@dataclass(frozen=True, slots=True)
class CreateIdentity:
    """A new identity: store it, and count it against its network for today."""

    standing: Standing
    network: str | None


@dataclass(frozen=True, slots=True)
class SaveStanding:
    standing: Standing


@dataclass(frozen=True, slots=True)
class SaveBlock:
    blocker: str
    blocked: str
    at: float


@dataclass(frozen=True, slots=True)
class SaveRating:
    """Store the rating and apply it to the target's stored standing (``safety.apply_rating``)."""

    rating: Rating


@dataclass(frozen=True, slots=True)
class SaveReport:
    reporter: str
    target: str
    reason: ReportReason
    text: str
    at: float
    call_seconds: float


StoreAction = CreateIdentity | SaveStanding | SaveBlock | SaveRating | SaveReport
Action = Send | StoreAction
