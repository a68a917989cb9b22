"""Every code the server puts on the wire: ``error`` codes and WebSocket close codes.

docs/protocol.md ("Error codes", "Close codes") is the contract; this module is its one definition
in Python, used by the server (:mod:`xes.errors`, :mod:`xes.server.app`) and the Python peer alike.
The browser's tables in ``web/protocol.js`` must list exactly the same codes, and a test reads
both (and the documentation's tables) to prove they agree.

It imports nothing from XES, so anything may import it.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = ["ErrorCode", "CloseCode"]


class ErrorCode(StrEnum):
    """The ``code`` of an ``error`` message: why a client's message was refused.

    A client must still accept a code it does not know (a later server may add one) and treat it
    as a refusal it cannot explain: the wire field is a string, not this enum.
    """

    # The message cannot be read (xes.errors.ProtocolError).
    BAD_JSON = "bad-json"
    UNKNOWN_TYPE = "unknown-type"
    BAD_FIELD = "bad-field"
    TOO_BIG = "too-big"
    # Readable, but not allowed now (xes.errors.Refused).
    NOT_JOINED = "not-joined"
    ALREADY_JOINED = "already-joined"
    PEER_NOT_FOUND = "peer-not-found"
    ROOM_FULL = "room-full"
    ROOM_LOCKED = "room-locked"
    PASSWORD_REQUIRED = "password-required"
    WRONG_PASSWORD = "wrong-password"
    BANNED = "banned"
    DECLINED = "declined"
    NOT_HOST = "not-host"
    NOT_QUEUED = "not-queued"
    TURN_UNAVAILABLE = "turn-unavailable"
    SESSION_GONE = "session-gone"
    # Identity and safety (docs/moderation.md).
    IDENTITY_REQUIRED = "identity-required"
    IDENTITY_REFUSED = "identity-refused"
    TOO_MANY_IDENTITIES = "too-many-identities"
    IDENTITY_BANNED = "identity-banned"
    COOLDOWN = "cooldown"


class CloseCode(IntEnum):
    """The WebSocket close codes the server sends, and only those."""

    NORMAL = 1000
    """The client closed, and the server answered."""
    GOING_AWAY = 1001
    """Heartbeat lost (no pong in time)."""
    MESSAGE_TOO_BIG = 1009
    """A frame over the hard cap (sent by picows itself, from the server's ``max_frame_size``)."""
    INTERNAL_ERROR = 1011
    """An exception XES did not expect while handling this connection; only this one is closed."""
    SERVICE_RESTART = 1012
    """The server is restarting on purpose (SIGTERM) and kept the sessions for its successor:
    reconnect at once and resume (docs/protocol.md, "Restarts")."""
    TOO_MANY_ERRORS = 4002
    """Too many ``error`` replies in a row without a valid message in between."""
    NOT_READING = 4009
    """The client left more than the outgoing limit (1 MiB) unread: dropped, not buffered for.
    Its session detaches and may be resumed (docs/protocol.md, "Sessions")."""
    REPLACED = 4010
    """Another connection resumed this session: this socket is superseded. Do not reconnect."""
    FLOOD = 4029
    """Message rate over the limit."""
