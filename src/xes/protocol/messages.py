"""The wire contract: every message of docs/protocol.md as a msgspec struct, for every Python speaker.

Both directions are tagged unions on ``type``, so each side reads the other's messages in one
typed pass and a renamed field fails the type check on both sides:

- the server decodes client messages with :func:`decode` (field types and limits checked by
  msgspec itself) and encodes its own with :func:`encode`;
- the Python peer (:mod:`xes.peer`) encodes client messages with :func:`encode_client` and decodes
  the server's with :func:`decode_server`.

A client ``signal``'s ``data`` is kept as raw JSON bytes, so the server relays it without ever
parsing or re-encoding the SDP or ICE inside: the relayed ``signal`` is spliced from bytes by
:func:`encode_signal`, and :class:`SignalData` (the shape browsers and the Python peer put in it)
is read only by the receiving client.
"""

from __future__ import annotations

import re
from typing import Annotated, Final, Literal

import msgspec

from ..errors import BadField, BadJson, TooBig, UnknownType

__all__ = [
    "PROTOCOL_VERSION", "MAX_MESSAGE_BYTES", "MAX_NESTING", "ID_PATTERN",
    "Join", "Leave", "Signal", "IceRefresh", "SetRules", "Admit", "Decline", "Remove", "Ban",
    "MatchRequest", "Next", "Block", "Stop", "Resume", "Hearing", "Identify", "Rate", "Report",
    "ClientMessage", "decode", "check_utf8", "encode_client", "IDENTIFY_CONTEXT",
    "SessionDescription", "IceCandidate", "SignalData",
    "Limits", "Hello", "PeerInfo", "Rules", "IceServer", "Joined", "PeerJoined", "PeerLeft", "Left",
    "Host", "RulesChanged", "Lobby", "KnockPeer", "Knock", "KnockWithdrawn", "Removed", "Queued",
    "Unqueued", "IceServers", "Identified", "Noted", "Error", "RelayedSignal", "RoomState",
    "Resumed", "PeerAway", "PeerBack", "ServerMessage", "UnknownMessage", "encode",
    "decode_server", "encode_signal", "signal_head", "with_seq",
]

PROTOCOL_VERSION: Final = 2
MAX_MESSAGE_BYTES: Final = 65_536
# JSON nesting always accepted (docs/protocol.md, "Limits"); deeper nesting is refused from where
# the decoder's recursion guard stops it (about 980 levels on CPython 3.11), never by a crash.
MAX_NESTING: Final = 500
ID_PATTERN: Final = r"^[A-Za-z0-9_-]{22}$"

Id = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
# Resume tokens look like ids (128 random bits, base64url) but are secrets: never logged.
Token = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]
# Names: 1-64 characters, no control characters (they could forge lines in a participant list).
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]*$")]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[^\x00-\x1f\x7f]*$")]
Language = Annotated[str, msgspec.Meta(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9-]*$")]
Password = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
# Identity (docs/protocol.md, "Identity"): an ECDSA P-256 public key as its 65-byte uncompressed
# point, and a signature as the 64 bytes r || s (WebCrypto's format), both unpadded base64url.
PublicKey = Annotated[str, msgspec.Meta(min_length=87, max_length=87, pattern=r"^[A-Za-z0-9_-]*$")]
SignatureText = Annotated[str, msgspec.Meta(min_length=86, max_length=86, pattern=r"^[A-Za-z0-9_-]*$")]
ReportText = Annotated[str, msgspec.Meta(max_length=1000)]
MaxPeers = Annotated[int, msgspec.Meta(ge=2, le=64)]


class _ClientMessage(msgspec.Struct, tag_field="type", forbid_unknown_fields=False, omit_defaults=True):
    """Decoded once and never mutated after ``__post_init__`` (not frozen only so that it may clean).

    ``omit_defaults`` only shapes what the Python peer sends: fields left at their default are
    not written, as the browser does not write them either.
    """

    pass


def _clean_name(name: str) -> str:
    cleaned = name.strip()
    if not cleaned:
        raise ValueError("name must not be blank")
    return cleaned


class Join(_ClientMessage, tag="join"):
    room: Id
    name: Name
    password: Password | None = None
    rollback: bool = True
    # The secret this client got as host (`joined`/`host` `host_key`): after a restart, it gives
    # the host its role back in the restored room (docs/protocol.md, "Restarts").
    host_key: Id | None = None

    def __post_init__(self) -> None:
        # msgspec turns a ValueError raised here into a ValidationError naming the message.
        self.name = _clean_name(self.name)


class Leave(_ClientMessage, tag="leave"):
    pass


class Signal(_ClientMessage, tag="signal"):
    """``data`` is opaque to the server (raw bytes, never parsed); clients put :class:`SignalData`
    in it (see :func:`signal_to`)."""

    to: Id
    data: msgspec.Raw

    def __post_init__(self) -> None:
        # Opaque, but an object: one byte tells, without parsing the SDP inside.
        if memoryview(self.data)[0] != 0x7B:  # "{"
            raise ValueError("`data` must be a JSON object")


class IceRefresh(_ClientMessage, tag="ice-refresh"):
    pass


# A sentinel distinguishes "password not mentioned" from "password: null" (clear it).
UNSET: Final = msgspec.UNSET


class SetRules(_ClientMessage, tag="set-rules"):
    locked: bool | msgspec.UnsetType = msgspec.UNSET
    lobby: bool | msgspec.UnsetType = msgspec.UNSET
    password: Password | None | msgspec.UnsetType = msgspec.UNSET
    max_peers: MaxPeers | msgspec.UnsetType = msgspec.UNSET


class Admit(_ClientMessage, tag="admit"):
    peer: Id


class Decline(_ClientMessage, tag="decline"):
    peer: Id


class Remove(_ClientMessage, tag="remove"):
    peer: Id


class Ban(_ClientMessage, tag="ban"):
    peer: Id


class MatchRequest(_ClientMessage, tag="match"):
    name: Name
    tags: Annotated[list[Tag], msgspec.Meta(max_length=8)] = []
    language: Language | None = None
    rollback: bool = True
    # The user's consent to a direct connection, which shows the stranger their IP address.
    # False (the default) means relay only; the server pairs accordingly (docs/protocol.md).
    direct: bool = False
    # No microphone: a text chat over the link's data channel, with no audio either way. Paired
    # only with text-only users and with voice users who sent `accept_text` (docs/protocol.md).
    text_only: bool = False
    # A voice user who accepts being paired with a text-only user (for a text chat).
    accept_text: bool = False

    def __post_init__(self) -> None:
        self.name = _clean_name(self.name)


class Next(_ClientMessage, tag="next"):
    pass


class Block(_ClientMessage, tag="block"):
    peer: Id


class Stop(_ClientMessage, tag="stop"):
    pass


class Resume(_ClientMessage, tag="resume"):
    """The first message on a new connection: continue session ``peer`` here (docs/protocol.md,
    "Sessions"). ``token`` is a secret: never log this message."""

    peer: Id
    token: Token
    last_seq: Annotated[int, msgspec.Meta(ge=0)]

    def __repr__(self) -> str:  # a traceback or a debug line must not carry the token
        return f"Resume(peer={self.peer!r}, token=<secret>, last_seq={self.last_seq})"


class Hearing(_ClientMessage, tag="hearing"):
    """The sender still receives ``peer``'s audio while ``peer`` is away: extends its grace."""

    peer: Id
class Identify(_ClientMessage, tag="identify"):
    """Proof of a pseudonymous identity: ``signature`` over ``IDENTIFY_CONTEXT + hello.challenge``."""

    public_key: PublicKey
    signature: SignatureText


class Rate(_ClientMessage, tag="rate"):
    """"Good call" (``good: true``) or "Bad call" about the current or last stranger."""

    peer: Id
    good: bool


class Report(_ClientMessage, tag="report"):
    peer: Id
    reason: Literal["harassment", "hate", "sexual-content", "under-18", "other"]
    text: ReportText = ""


ClientMessage = (
    Join | Leave | Signal | IceRefresh | SetRules | Admit | Decline | Remove | Ban
    | MatchRequest | Next | Block | Stop | Resume | Hearing | Identify | Rate | Report
)
# What a client signs: this, then the challenge from `hello` (ASCII bytes).
IDENTIFY_CONTEXT: Final = b"xes-identify-v1:"

_decoder: Final = msgspec.json.Decoder(ClientMessage)
_KNOWN_TYPES: Final = frozenset(
    t.__struct_config__.tag for t in ClientMessage.__args__
)
_PATH = re.compile(r"at `\$\.?([^`]*)`")
_TYPE_OF = re.compile(rb'"type"\s*:\s*"([a-z-]{1,20})"')


def decode(frame: bytes | memoryview) -> ClientMessage:
    """Parse one client frame.

    A ``signal``'s ``data`` is skipped, not checked for UTF-8: see :func:`check_utf8`.

    Raises:
        TooBig: The frame is over MAX_MESSAGE_BYTES.
        BadJson: Not UTF-8 JSON, not an object, or nested too deeply for the decoder.
        UnknownType: ``type`` missing, not a string, or not a client message type.
        BadField: A field is missing, mistyped or out of its limits.
    """
    if len(frame) > MAX_MESSAGE_BYTES:
        raise TooBig(f"message is {len(frame)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        return _decoder.decode(frame)
    except msgspec.DecodeError as exc:
        if isinstance(exc, msgspec.ValidationError):
            raise _classify(str(exc), frame) from None
        raise BadJson(f"not valid JSON: {exc}") from None
    except RecursionError:
        # msgspec follows nesting on the C stack, guarded by Python's recursion limit; catching
        # it here costs well-formed messages nothing (docs/protocol.md, "Limits": nesting).
        raise BadJson(f"JSON nested too deeply; {MAX_NESTING} levels are always accepted, "
                      "protocol messages need fewer than 10", ref=_guess_type(frame)) from None


def check_utf8(frame: bytes, ref: str | None = None) -> None:
    """Raise BadJson unless ``frame`` is valid UTF-8 (no surrogates, nothing above U+10FFFF).

    msgspec checks every string it decodes, but skips a ``signal``'s ``data`` (kept raw, to be
    relayed byte for byte): the relay checks the frame it is about to send with this.
    """
    try:
        frame.decode()
    except UnicodeDecodeError:
        raise BadJson("not valid UTF-8 (a text frame must be)", ref=ref) from None


def _guess_type(frame: bytes | memoryview) -> str | None:
    """The refused message's ``type`` for ``error.ref``, when a known one can be seen."""
    guess = _TYPE_OF.search(bytes(frame[:4096]))
    return guess.group(1).decode() if guess and guess.group(1).decode() in _KNOWN_TYPES else None


def _classify(detail: str, frame: bytes | memoryview) -> Exception:
    """Turn msgspec's validation message into the protocol's error code."""
    match = _PATH.search(detail)
    path = match.group(1) if match else ""
    ref = _guess_type(frame)
    if detail.startswith("Expected `object`") and not path:
        return BadJson("a message must be a JSON object")
    if path == "type" or "missing required field `type`" in detail:
        return UnknownType("unknown or missing message type; see docs/protocol.md", ref=None)
    return BadField(detail.split(" - at ")[0] + (f" (field `{path}`)" if path else ""), ref=ref)


_client_encoder: Final = msgspec.json.Encoder()


def encode_client(message: ClientMessage) -> bytes:
    """Serialise a client message (what the Python peer sends) to the bytes of one text frame."""
    return _client_encoder.encode(message)


# --------------------------------------------------------------- signal payloads, client to client


class SessionDescription(msgspec.Struct, frozen=True):
    """An SDP offer or answer, as ``RTCSessionDescriptionInit``."""

    type: Literal["offer", "answer"]
    sdp: str


class IceCandidate(msgspec.Struct, frozen=True, omit_defaults=True):
    """One trickled ICE candidate, as ``RTCIceCandidateInit`` (W3C field names on the wire)."""

    candidate: str
    """The ``candidate:...`` line; an empty string also means end of candidates."""
    sdp_mid: str | None = msgspec.field(default=None, name="sdpMid")
    sdp_mline_index: int | None = msgspec.field(default=None, name="sdpMLineIndex")


class SignalData(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a client puts in a ``signal``'s ``data``: a description, or one candidate.

    The server never reads it (it relays the bytes); only the receiving client decodes it, as part
    of :class:`RelayedSignal`. ``candidate: null`` is the end of the sender's candidates, which is
    why an absent candidate is UNSET rather than None. Other keys are ignored.
    """

    description: SessionDescription | None = None
    candidate: IceCandidate | None | msgspec.UnsetType = msgspec.UNSET
    answers: str | None = None
    """With an answer: the ICE ufrag (``a=ice-ufrag``) of the offer it answers, so that an
    offerer whose earlier offer was answered late can tell that answer from the one to its
    current offer (docs/protocol.md, "A repeated offer"). Absent: the answer is trusted."""


_data_encoder: Final = msgspec.json.Encoder()


def signal_to(peer: str, data: SignalData) -> Signal:
    """The client ``signal`` that sends `data` to `peer`."""
    return Signal(to=peer, data=msgspec.Raw(_data_encoder.encode(data)))


# ----------------------------------------------------------------------------- server messages


class _ServerMessage(msgspec.Struct, tag_field="type", kw_only=True):
    """Encoded by the server, decoded by the Python peer; unknown fields are ignored on decode.

    ``seq`` numbers every message after ``hello`` within a session (docs/protocol.md, "Sessions").
    The server never sets it here: it splices it into each frame as it sends it
    (:func:`with_seq`), since one encoded payload often goes to several members; a client reads it.
    UNSET is never written, so the encoded struct is the payload without ``seq``.
    """

    seq: int | msgspec.UnsetType = msgspec.UNSET


class Limits(msgspec.Struct, frozen=True):
    max_message_bytes: int
    max_peers: int
    rate_burst: int
    rate_per_second: float
    heartbeat_seconds: float
    # Sessions (docs/protocol.md, "Sessions"): how long a detached session waits, the cap that
    # `hearing` reports cannot pass, and the replay buffer's bounds.
    resume_grace_seconds: float = 20.0
    resume_cap_seconds: float = 120.0
    replay_messages: int = 256
    replay_bytes: int = 262_144


class Hello(_ServerMessage, tag="hello"):
    protocol: int
    peer: Id
    # The session's resume token: a secret (docs/privacy.md), never logged.
    resume: Token
    limits: Limits
    # Whether this server hands out a TURN relay: without one, "Hide my IP" cannot work and a
    # stranger can only be met by consenting to a direct connection.
    relay: bool
    # 32 random bytes (base64url) for this connection, to sign in `identify`.
    challenge: str


class PeerInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    id: Id
    name: str
    polite: bool
    # A stranger who asked for a text chat (`match` `text_only`): the call has no audio.
    # Written only when true, so room members' entries are unchanged.
    text_only: bool = False


class Rules(msgspec.Struct, frozen=True):
    locked: bool
    lobby: bool
    password: bool
    max_peers: int


class IceServer(msgspec.Struct, frozen=True, omit_defaults=True):
    """One entry of RTCConfiguration.iceServers, with the W3C field names."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class Joined(_ServerMessage, tag="joined", omit_defaults=True):
    room: Id
    you: Id
    # None while a room restored after a restart waits for its host (docs/protocol.md, "Restarts").
    host: Id | None
    peers: list[PeerInfo]
    rules: Rules
    ice_servers: list[IceServer]
    ice_expires_at: int | None
    ice_transport_policy: Literal["all", "relay"]
    match: bool
    # Only when you are the host of a room (not a match): keep it secret, send it in `join`.
    host_key: Id | None = None


class PeerJoined(_ServerMessage, tag="peer-joined"):
    peer: PeerInfo


class PeerLeft(_ServerMessage, tag="peer-left"):
    peer: Id
    reason: Literal["left", "disconnected", "removed", "banned"]


class Left(_ServerMessage, tag="left"):
    room: Id


class Host(_ServerMessage, tag="host", omit_defaults=True):
    peer: Id
    # Only in the copy sent to the new host itself.
    host_key: Id | None = None


class RulesChanged(_ServerMessage, tag="rules"):
    rules: Rules


class Lobby(_ServerMessage, tag="lobby"):
    room: Id


class KnockPeer(msgspec.Struct, frozen=True):
    id: Id
    name: str


class Knock(_ServerMessage, tag="knock"):
    peer: KnockPeer


class KnockWithdrawn(_ServerMessage, tag="knock-withdrawn"):
    peer: Id


class Removed(_ServerMessage, tag="removed"):
    room: Id
    banned: bool


class Queued(_ServerMessage, tag="queued"):
    pass


class Unqueued(_ServerMessage, tag="unqueued"):
    pass


class IceServers(_ServerMessage, tag="ice-servers"):
    ice_servers: list[IceServer]
    ice_expires_at: int | None


class Identified(_ServerMessage, tag="identified"):
    """Reply to `identify`: this connection now speaks for that identity."""

    cooldown_until: float | None
    banned: bool
    warning: str | None


class Noted(_ServerMessage, tag="noted"):
    """Reply to `rate`, `report` and `block`: recorded."""

    ref: str


class Error(_ServerMessage, tag="error", omit_defaults=True):
    code: str
    """One of :class:`xes.protocol.codes.ErrorCode`; a string on the wire, so that a client still
    reads a code added after it was written (and shows it as a refusal it cannot explain)."""
    message: str
    ref: str | None = None
    # With `cooldown`: seconds until `match` is allowed again.
    retry_after: int | None = None


class RelayedSignal(_ServerMessage, tag="signal"):
    """A ``signal`` relayed from another member. The server never builds this struct: it splices
    the frame from bytes (:func:`encode_signal`); clients decode it."""

    sender: Id = msgspec.field(name="from")
    data: SignalData


class RoomState(msgspec.Struct, frozen=True):
    """Where a resumed session stands in its room: ``joined``'s shape, plus who is away and who
    knocks (for the host), without the ICE fields (``resumed`` carries fresh ones)."""

    room: Id
    you: Id
    host: Id | None  # None while a room restored after a crash waits for its host, as in Joined
    peers: list[PeerInfo]
    rules: Rules
    ice_transport_policy: Literal["all", "relay"]
    match: bool
    away: list[Id]
    knocks: list[KnockPeer]


class Resumed(_ServerMessage, tag="resumed"):
    """The answer to a successful ``resume``; the replay follows it. ``resume`` is the new
    token (a secret)."""

    peer: Id
    resume: Token
    last_seq: int
    room: RoomState | None
    lobby: Id | None
    queued: bool
    ice_servers: list[IceServer]
    ice_expires_at: int | None


class PeerAway(_ServerMessage, tag="peer-away"):
    peer: Id


class PeerBack(_ServerMessage, tag="peer-back"):
    peer: Id


ServerMessage = (
    Hello | Joined | PeerJoined | PeerLeft | RelayedSignal | Left | Host | RulesChanged | Lobby
    | Knock | KnockWithdrawn | Removed | Queued | Unqueued | IceServers | Identified | Noted | Error
    | Resumed | PeerAway | PeerBack
)


class UnknownMessage(msgspec.Struct, frozen=True):
    """A server message of a type this client does not know (from a later server): ignored."""

    type: str


_encoder: Final = msgspec.json.Encoder()


def encode(message: ServerMessage) -> bytes:
    """Serialise a server message to the bytes of one text frame."""
    return _encoder.encode(message)


_server_decoder: Final = msgspec.json.Decoder(ServerMessage)
_type_decoder: Final = msgspec.json.Decoder(UnknownMessage)
_SERVER_TYPES: Final = frozenset(t.__struct_config__.tag for t in ServerMessage.__args__)


def decode_server(frame: bytes | memoryview) -> ServerMessage | UnknownMessage:
    """Parse one server frame (what a client receives).

    A message of a type this version does not know comes back as :class:`UnknownMessage`, so a
    client can ignore it; unknown fields of known messages are ignored by msgspec.

    Raises:
        msgspec.DecodeError: Not JSON, not an object with a string ``type``, or a known message
            with a field missing or of the wrong type (msgspec.ValidationError, a subclass).
    """
    try:
        return _server_decoder.decode(frame)
    except msgspec.ValidationError:
        kind = _type_decoder.decode(frame).type
        if kind in _SERVER_TYPES:
            raise
        return UnknownMessage(kind)


def signal_head(sender: str) -> bytes:
    """The start of every ``signal`` relayed from ``sender``, up to where ``data`` goes.

    Peer ids match ID_PATTERN, so they need no JSON escaping. The server builds this once per
    connection and splices each relayed frame as ``head + data + b"}"`` (see :func:`encode_signal`).
    """
    return b'{"type":"signal","from":"' + sender.encode() + b'","data":'


def with_seq(payload: bytes, seq: int) -> bytes:
    """``payload`` (one encoded server message, a JSON object) with ``"seq": seq`` added last.

    Appended rather than prepended so that ``type`` stays the first key, where decoders of
    tagged unions look first.
    """
    return b"".join((payload[:-1], b',"seq":', str(seq).encode(), b"}"))


def encode_signal(sender: str, data: msgspec.Raw) -> bytes:
    """The relayed ``signal``: the sender stamped by the server, ``data`` byte for byte.

    The bytes are exactly what :func:`encode` makes of a :class:`RelayedSignal` (a test checks).
    """
    return b"".join((signal_head(sender), data, b"}"))
