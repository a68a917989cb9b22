"""What a :class:`xes.peer.Peer` tells its user, as plain frozen values.

Read them with ``async for event in peer.events()``. They are facts, named in the past tense or
as states; each carries the :class:`~xes.peer.peer.RemotePeer` it is about, whose fields
(state, route, name) are live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xes.peer.connection import LinkState, Route
    from xes.peer.errors import ConnectionLost
    from xes.peer.peer import RemotePeer, Room
    from xes.protocol.messages import Rules

__all__ = [
    "Event",
    "Joined",
    "Queued",
    "WaitingInLobby",
    "PeerJoined",
    "PeerLeft",
    "LinkChanged",
    "AudioStarted",
    "HostChanged",
    "RulesChanged",
    "Knocked",
    "RoomLeft",
    "ServerError",
    "Reconnecting",
    "Resumed",
    "Reconnected",
    "Disconnected",
    "SafetyCodeChanged",
    "SafetyAlert",
    "ChatReceived",
]


@dataclass(frozen=True)
class Joined:
    """We are in a room (after ``join``, or when the matchmaker paired us)."""

    room: Room


@dataclass(frozen=True)
class Queued:
    """We wait in the matchmaking queue for a stranger."""


@dataclass(frozen=True)
class WaitingInLobby:
    """The room has a lobby; we wait for its host to let us in."""

    room_id: str


@dataclass(frozen=True)
class PeerJoined:
    """Someone entered the room; they will offer to us."""

    peer: RemotePeer


@dataclass(frozen=True)
class PeerLeft:
    """Someone left the room (`reason`: left, disconnected, removed or banned)."""

    peer: RemotePeer
    reason: str


@dataclass(frozen=True)
class LinkChanged:
    """The connection to a member changed state; `route` is set once connected."""

    peer: RemotePeer
    state: LinkState
    route: Route | None


@dataclass(frozen=True)
class AudioStarted:
    """The first audio frame from a member arrived."""

    peer: RemotePeer


@dataclass(frozen=True)
class HostChanged:
    """The room's host is now `peer_id`."""

    peer_id: str


@dataclass(frozen=True)
class RulesChanged:
    """The host changed the room's rules (``locked``, ``lobby``, ``password``, ``max_peers``)."""

    rules: Rules


@dataclass(frozen=True)
class Knocked:
    """To the host: `peer_id` waits in the lobby (admit or decline it)."""

    peer_id: str
    name: str


@dataclass(frozen=True)
class RoomLeft:
    """We are out of the room: `reason` is ``left`` (we asked), ``removed``, ``banned``, or
    ``disconnected`` (the signalling connection was lost for longer than the server's grace, so
    the server ended our session; a room, not a match, is joined again at once)."""

    room_id: str
    reason: str


@dataclass(frozen=True)
class ServerError:
    """The server refused a message that was not a join (those raise instead).

    `code` is one of :class:`xes.protocol.codes.ErrorCode`, or a code added by a later server.
    """

    code: str
    message: str
    ref: str | None


@dataclass(frozen=True)
class Reconnecting:
    """The signalling connection was lost (`error` says how); the peer is reconnecting to resume
    its session. The calls go on meanwhile: links and audio are untouched."""

    error: ConnectionLost


@dataclass(frozen=True)
class Resumed:
    """The session continues on a new connection: same peer id, same room, every link untouched;
    whatever the server sent meanwhile follows as ordinary events."""

    peer_id: str


@dataclass(frozen=True)
class Reconnected:
    """A new connection, but the server no longer had our session (grace over, or restarted
    without it): we are `peer_id` now. A ``RoomLeft`` (``disconnected``) came just before if we
    were in a room; a room is joined again by itself (a ``Joined`` follows), a match is not."""

    peer_id: str


@dataclass(frozen=True)
class Disconnected:
    """The signalling connection ended for good (closed, shut out, or no new connection within
    ``Peer.reconnect_for`` seconds); no more events follow."""

    error: ConnectionLost | None


@dataclass(frozen=True)
class SafetyCodeChanged:
    """The room's safety code changed: `words` once every link of every member is attested by
    both ends (read them aloud; everyone should see the same), None while links are checked."""

    words: tuple[str, ...] | None


@dataclass(frozen=True)
class SafetyAlert:
    """The peer itself found that someone may be in the middle: a reveal that does not match its
    commitment, or two members who see different keys for their link (docs/verification.md)."""

    text: str


@dataclass(frozen=True)
class ChatReceived:
    """A chat message from a member, over its link's data channel (never through the server).

    `text` is trimmed, 1 to 4,000 characters (docs/protocol.md, "Between peers")."""

    peer: RemotePeer
    text: str


Event = (
    Joined
    | Queued
    | WaitingInLobby
    | PeerJoined
    | PeerLeft
    | LinkChanged
    | AudioStarted
    | HostChanged
    | RulesChanged
    | Knocked
    | RoomLeft
    | ServerError
    | Reconnecting
    | Resumed
    | Reconnected
    | Disconnected
    | SafetyCodeChanged
    | SafetyAlert
    | ChatReceived
)
"""One of the events above."""
