"""What can go wrong for a Python peer, as one tree of exceptions.

::

    PeerError                     anything this package raises on purpose
    ├── RoomLinkError             the room link or id (or the server URL) cannot be understood
    ├── ServerUnreachable         no WebSocket to the server could be opened
    ├── ConnectionLost            the server closed the WebSocket, or it broke
    ├── JoinRefused               the server refused `join`/`match` (room-full, room-locked, ...)
    ├── ServerProtocolError       the server said something this client does not understand
    └── AudioError                an input file or device cannot be read, or a recording written

The split follows who has to act: a wrong link or a refused join is the user's to fix, an
unreachable server is the network's or the operator's, a protocol error is a bug to report.
"""

from __future__ import annotations

from xes.protocol.codes import ErrorCode

__all__ = [
    "PeerError",
    "RoomLinkError",
    "ServerUnreachable",
    "ConnectionLost",
    "JoinRefused",
    "ServerProtocolError",
    "AudioError",
]


class PeerError(Exception):
    """Base class of every error the Python peer raises on purpose."""


class RoomLinkError(PeerError, ValueError):
    """A room link, room id or server URL that cannot be used."""


class ServerUnreachable(PeerError):
    """The signalling WebSocket could not be opened (refused, timed out, not an XES server)."""


class ConnectionLost(PeerError):
    """The signalling WebSocket closed while it was needed.

    Attributes:
        close_code: The WebSocket close code the server sent (one of
            :class:`xes.protocol.codes.CloseCode`, e.g. ``CloseCode.FLOOD``), or None when the
            connection broke without a close frame.
    """

    def __init__(self, message: str, close_code: int | None = None) -> None:
        super().__init__(message)
        self.close_code = close_code


class JoinRefused(PeerError):
    """The server answered `join` or `match` with an `error`.

    Attributes:
        code: The protocol's error code, e.g. ``ErrorCode.ROOM_FULL`` (a ``StrEnum``, so it also
            equals ``"room-full"``), ``ROOM_LOCKED``, ``PASSWORD_REQUIRED``, ``WRONG_PASSWORD``,
            ``BANNED``, ``DECLINED``.
    """

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ServerProtocolError(PeerError):
    """The server sent something that does not follow docs/protocol.md."""


class AudioError(PeerError):
    """An audio input (file or capture device) cannot be opened, or a recording cannot be written."""
