"""The XES error tree.

Every error a client can cause carries a stable wire code (docs/protocol.md, "Error codes") and is
answered with an ``error`` message; nothing changes for anyone else. Errors that are XES's own fault
are ordinary exceptions and never reach this tree.

    SignallingError                       a client's message was refused
    ├── ProtocolError                     the message itself is unreadable
    │   ├── BadJson            bad-json
    │   ├── UnknownType        unknown-type
    │   ├── BadField           bad-field
    │   └── TooBig             too-big
    └── Refused                           readable, but not allowed now
        ├── NotJoined          not-joined
        ├── AlreadyJoined      already-joined
        ├── PeerNotFound       peer-not-found
        ├── RoomFull           room-full
        ├── RoomLocked         room-locked
        ├── PasswordRequired   password-required
        ├── WrongPassword      wrong-password
        ├── Banned             banned
        ├── Declined           declined
        ├── NotHost            not-host
        ├── NotQueued          not-queued
        └── TurnUnavailable    turn-unavailable
"""

from __future__ import annotations

__all__ = [
    "SignallingError", "ProtocolError", "BadJson", "UnknownType", "BadField", "TooBig", "Refused",
    "NotJoined", "AlreadyJoined", "PeerNotFound", "RoomFull", "RoomLocked", "PasswordRequired",
    "WrongPassword", "Banned", "Declined", "NotHost", "NotQueued", "TurnUnavailable",
]


class SignallingError(Exception):
    """A client's message was refused. ``code`` is the stable wire code."""

    code: str = "error"

    def __init__(self, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref


class ProtocolError(SignallingError):
    """The message could not be read as a valid protocol message."""


class BadJson(ProtocolError):
    code = "bad-json"


class UnknownType(ProtocolError):
    code = "unknown-type"


class BadField(ProtocolError):
    code = "bad-field"


class TooBig(ProtocolError):
    code = "too-big"


class Refused(SignallingError):
    """The message was valid but is not allowed in the current state."""


class NotJoined(Refused):
    code = "not-joined"


class AlreadyJoined(Refused):
    code = "already-joined"


class PeerNotFound(Refused):
    code = "peer-not-found"


class RoomFull(Refused):
    code = "room-full"


class RoomLocked(Refused):
    code = "room-locked"


class PasswordRequired(Refused):
    code = "password-required"


class WrongPassword(Refused):
    code = "wrong-password"


class Banned(Refused):
    code = "banned"


class Declined(Refused):
    code = "declined"


class NotHost(Refused):
    code = "not-host"


class NotQueued(Refused):
    code = "not-queued"


class TurnUnavailable(Refused):
    code = "turn-unavailable"
