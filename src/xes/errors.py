"""The XES error tree.

Every error a client can cause carries a stable wire code (docs/protocol.md, "Error codes"; defined
once in :class:`xes.protocol.codes.ErrorCode`) and is answered with an ``error`` message; nothing
changes for anyone else. Errors that are XES's own fault are ordinary exceptions and never reach
this tree.

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
        ├── TurnUnavailable    turn-unavailable
        ├── SessionGone        session-gone
        ├── IdentityRequired   identity-required
        ├── IdentityRefused    identity-refused
        ├── TooManyIdentities  too-many-identities
        ├── IdentityBanned     identity-banned
        └── Cooldown           cooldown
"""

from __future__ import annotations

from typing import ClassVar

from .protocol.codes import ErrorCode

__all__ = [
    "SignallingError", "ProtocolError", "BadJson", "UnknownType", "BadField", "TooBig", "Refused",
    "NotJoined", "AlreadyJoined", "PeerNotFound", "RoomFull", "RoomLocked", "PasswordRequired",
    "WrongPassword", "Banned", "Declined", "NotHost", "NotQueued", "TurnUnavailable",
    "SessionGone",
    "IdentityRequired", "IdentityRefused", "TooManyIdentities", "IdentityBanned", "Cooldown",
]


class SignallingError(Exception):
    """A client's message was refused. ``code`` is the stable wire code."""

    code: ClassVar[ErrorCode]
    """Set by every concrete class below: one class per code of :class:`ErrorCode`."""

    def __init__(self, message: str, ref: str | None = None, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.ref = ref
        self.retry_after = retry_after


class ProtocolError(SignallingError):
    """The message could not be read as a valid protocol message."""


class BadJson(ProtocolError):
    code = ErrorCode.BAD_JSON


class UnknownType(ProtocolError):
    code = ErrorCode.UNKNOWN_TYPE


class BadField(ProtocolError):
    code = ErrorCode.BAD_FIELD


class TooBig(ProtocolError):
    code = ErrorCode.TOO_BIG


class Refused(SignallingError):
    """The message was valid but is not allowed in the current state."""


class NotJoined(Refused):
    code = ErrorCode.NOT_JOINED


class AlreadyJoined(Refused):
    code = ErrorCode.ALREADY_JOINED


class PeerNotFound(Refused):
    code = ErrorCode.PEER_NOT_FOUND


class RoomFull(Refused):
    code = ErrorCode.ROOM_FULL


class RoomLocked(Refused):
    code = ErrorCode.ROOM_LOCKED


class PasswordRequired(Refused):
    code = ErrorCode.PASSWORD_REQUIRED


class WrongPassword(Refused):
    code = ErrorCode.WRONG_PASSWORD


class Banned(Refused):
    code = ErrorCode.BANNED


class Declined(Refused):
    code = ErrorCode.DECLINED


class NotHost(Refused):
    code = ErrorCode.NOT_HOST


class NotQueued(Refused):
    code = ErrorCode.NOT_QUEUED


class TurnUnavailable(Refused):
    code = ErrorCode.TURN_UNAVAILABLE


class SessionGone(Refused):
    """``resume`` failed, for whichever reason: one code, one message (docs/protocol.md)."""

    code = ErrorCode.SESSION_GONE
class IdentityRequired(Refused):
    code = ErrorCode.IDENTITY_REQUIRED


class IdentityRefused(Refused):
    code = ErrorCode.IDENTITY_REFUSED


class TooManyIdentities(Refused):
    code = ErrorCode.TOO_MANY_IDENTITIES


class IdentityBanned(Refused):
    code = ErrorCode.IDENTITY_BANNED


class Cooldown(Refused):
    code = ErrorCode.COOLDOWN
