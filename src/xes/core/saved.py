"""What of a room must outlive the process: its protection, as plain values.

A crash (SIGKILL, power loss) loses every connection and everything in memory. A room that had
any protection — a password, a lock, a lobby, bans, a lowered maximum — must not come back
weaker: the next person to open its link would otherwise walk into an open room and take the
host role. So the shell writes the protected rooms' :class:`SavedRoom` records to disk whenever
one changes (:attr:`~xes.core.signalling.Signalling.saved_version` tells it when), and on start
hands them back to :meth:`~xes.core.signalling.Signalling.restore`.

A record holds no secret in the clear and nothing that identifies a person: the password as the
salted scrypt hash the room already kept, banned identities as the keyed hashes XES keeps of
public keys (docs/moderation.md: without the server's key they cannot be linked to a key), the
host's key as a SHA-256 digest (a random string, so the digest cannot be reversed by guessing),
no names, no peer ids, no addresses. Encoding is pure (bytes in, bytes out); the file is the shell's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import msgspec

__all__ = ["SavedRoom", "SavedRooms", "SAVED_ROOMS_FORMAT", "encode_saved", "decode_saved",
           "digest_secret"]

SAVED_ROOMS_FORMAT: Final = 2


def digest_secret(secret: str) -> str:
    """SHA-256 (hex) of a random secret (a host key, a resume token): what is kept instead of it.

    A fast hash suffices: these are random strings, not passwords a person chose, so there is
    nothing to guess from the digest.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


class SavedRoom(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One protected room: its rules, its bans and the digest of its host's key."""

    id: str
    max_peers: int
    locked: bool
    lobby: bool
    password_salt: bytes | None = None
    password_digest: bytes | None = None
    banned_identities: list[str] = []
    host_key_digest: str | None = None


class SavedRooms(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """The whole file: a format number, so a later version can read an older file or refuse it."""

    format: int
    rooms: list[SavedRoom]


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(SavedRooms)


def encode_saved(rooms: Sequence[SavedRoom]) -> bytes:
    return _encoder.encode(SavedRooms(format=SAVED_ROOMS_FORMAT, rooms=list(rooms)))


def decode_saved(data: bytes) -> list[SavedRoom]:
    """The records in ``data``.

    Raises:
        ValueError: Not a saved-rooms document of a format this version reads.
    """
    try:
        saved = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a saved-rooms file: {exc}") from None
    if saved.format != SAVED_ROOMS_FORMAT:
        raise ValueError(f"saved-rooms format {saved.format} is not {SAVED_ROOMS_FORMAT}")
    return saved.rooms
