"""The whole signalling state as plain values, so a restart (SIGTERM) is invisible to clients.

On a stop the shell takes :func:`export_snapshot` in one go, writes it to its data directory and
closes every socket with 1012; on the next start it reads it back with :func:`import_snapshot`
(and deletes the file). Every session comes back *detached* with a fresh grace, under its old peer
id, in its room, lobby or queue, with its host role, its ``seq`` counter and its replay buffer, so
that clients ``resume`` as after any lost socket (docs/protocol.md, "Restarts"), and nobody sees
anyone leave.

What is kept, and what is not (docs/privacy.md, "What the server stores"):

- no resume token, only its SHA-256 digest (a token is 128 random bits: the digest cannot be
  turned back into it); host keys likewise; a session's identity as the keyed hash XES keeps
  anyway (never the public key), so that it resumes identified, and its last stranger (peer id,
  identity hash, call times, whether rated or reported) so that a rating still reaches them;
- display names, room ids and rules, the password's salted scrypt hash, who is host, members,
  lobby and queue, each session's skip list, and its replay buffer: the messages it was sent
  lately, which may include SDP and ICE candidates (so IP addresses) — what the server held in
  memory anyway, written for the seconds of the restart and deleted when read;
- times as ages (seconds before the snapshot), never clock readings, since the next process's
  monotonic clock need not share an origin.

Pure: values in, values out; the shell does the file.
"""

from __future__ import annotations

from typing import Final, Literal

import msgspec

from ..protocol import messages as m
from .access import PasswordHash
from .outbox import Outbox
from .signalling import Client, Partner, Room, Signalling
from .timing import Now

__all__ = ["Snapshot", "SessionRecord", "PartnerRecord", "RoomRecord", "TicketRecord", "export_snapshot",
           "import_snapshot", "encode_snapshot", "decode_snapshot", "SNAPSHOT_FORMAT"]

SNAPSHOT_FORMAT: Final = 2


class PartnerRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    peer: str
    identity: str | None
    started_at: float                       # unix seconds: the wall clock survives a restart
    ended_at: float | None
    rated: bool
    reported: bool


class SessionRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    token_digest: str
    name: str
    identity: str | None                    # the keyed hash (docs/moderation.md), never the key
    rollback: bool
    avoid: list[str]
    room: str | None = None
    knocking: str | None = None
    queued: m.MatchRequest | None = None   # the request `next` re-uses
    partner: PartnerRecord | None = None    # the current or last stranger, for `rate`/`report`
    seq: int = 0                            # the last seq sent (0: no outbox yet)
    # The replay buffer, oldest first, ending at `seq`: each frame is a JSON object, kept as is.
    frames: list[msgspec.Raw] = []
    detached_for: float | None = None       # seconds it had been detached, if it was


class RoomRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    id: str
    max_peers: int
    match: bool
    ice_transport_policy: Literal["all", "relay"]
    host: str | None
    members: list[str]                      # oldest first
    lobby: list[str]                        # oldest first
    locked: bool
    lobby_on: bool
    password_salt: bytes | None
    password_digest: bytes | None
    banned_identities: list[str]
    banned_peers: list[str]
    host_key_digest: str | None
    restore_left: float | None              # a restored room's wait still to run, in seconds


class TicketRecord(msgspec.Struct, frozen=True):
    peer: str
    waited: float                           # seconds in the queue at the snapshot


class Snapshot(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    format: int
    sessions: list[SessionRecord]
    rooms: list[RoomRecord]
    queue: list[TicketRecord]               # in arrival order


def export_snapshot(core: Signalling, now: Now) -> Snapshot:
    """Everything a restart must keep. Sessions standing nowhere (idle) are left out: they
    would end on their next detach anyway."""
    sessions = [_export_session(client, now) for client in core.clients.values()
                if client.room is not None or client.knocking is not None or client.queued is not None]
    rooms = [_export_room(room, now) for room in core.rooms.values()]
    queue = [TicketRecord(peer=t.peer, waited=max(0.0, now.monotonic - t.enqueued_at))
             for t in core.queue.waiting()]
    return Snapshot(format=SNAPSHOT_FORMAT, sessions=sessions, rooms=rooms, queue=queue)


def _export_session(client: Client, now: Now) -> SessionRecord:
    outbox = client.outbox
    queued = client.queued
    return SessionRecord(
        id=client.id, token_digest=client.token_digest, name=client.name,
        identity=client.identity, rollback=client.rollback, avoid=list(client.avoid),
        room=client.room.id if client.room is not None else None,
        knocking=client.knocking.id if client.knocking is not None else None,
        queued=queued,
        partner=_export_partner(client.partner),
        seq=outbox.seq if outbox is not None else 0,
        frames=[msgspec.Raw(frame) for frame in outbox.frames] if outbox is not None else [],
        detached_for=(now.monotonic - client.detached_at) if client.detached_at is not None else None)


def _export_partner(partner: Partner | None) -> PartnerRecord | None:
    if partner is None:
        return None
    return PartnerRecord(peer=partner.peer, identity=partner.identity, started_at=partner.started_at,
                         ended_at=partner.ended_at, rated=partner.rated, reported=partner.reported)


def _export_room(room: Room, now: Now) -> RoomRecord:
    password = room.password
    return RoomRecord(
        id=room.id, max_peers=room.max_peers, match=room.match,
        ice_transport_policy=room.ice_transport_policy, host=room.host,
        members=list(room.members), lobby=list(room.lobby), locked=room.locked,
        lobby_on=room.lobby_on,
        password_salt=password.salt if password is not None else None,
        password_digest=password.digest if password is not None else None,
        banned_identities=sorted(room.banned_identities), banned_peers=sorted(room.banned_peers),
        host_key_digest=room.host_key_digest,
        restore_left=(max(0.0, room.restored_until - now.monotonic)
                      if room.restored_until is not None else None))


def import_snapshot(core: Signalling, snapshot: Snapshot, now: Now) -> None:
    """Put a snapshot's state into a fresh core: every session detached, with a fresh grace.

    A session that was already detached keeps the time it had been away against the cap on its
    grace; the others start their grace now. Nothing is sent: the sessions have no sockets, and
    their room-mates learn nothing (they resume into a room where everyone is as before).

    Raises:
        ValueError: The snapshot is of another format, or does not hold together (a member
            that is not a session, a session in a room that is not there).
    """
    if snapshot.format != SNAPSHOT_FORMAT:
        raise ValueError(f"snapshot format {snapshot.format} is not {SNAPSHOT_FORMAT}")
    if core.clients or core.rooms or len(core.queue):
        raise ValueError("a snapshot goes into a fresh core only")
    settings = core.settings
    clients: dict[str, Client] = {}
    for record in snapshot.sessions:
        client = Client(record.id, token_digest=record.token_digest, name=record.name,
                        identity=record.identity, rollback=record.rollback,
                        avoid=tuple(record.avoid), queued=record.queued)
        p = record.partner
        if p is not None:
            client.partner = Partner(p.peer, p.identity, p.started_at, p.ended_at, p.rated, p.reported)
        if record.seq:
            outbox = client.outbox = Outbox(settings.replay_messages, settings.replay_bytes)
            outbox.restore(record.seq, [bytes(frame) for frame in record.frames])
        away_for = record.detached_for or 0.0
        client.detached_at = now.monotonic - away_for
        client.expires_at = min(now.monotonic + settings.resume_grace_seconds,
                                client.detached_at + settings.resume_cap_seconds)
        clients[client.id] = client
    rooms: dict[str, Room] = {}
    try:
        for r in snapshot.rooms:
            password = (PasswordHash(r.password_salt, r.password_digest)
                        if r.password_salt is not None and r.password_digest is not None else None)
            room = Room(r.id, r.max_peers, match=r.match, ice_transport_policy=r.ice_transport_policy,
                        host=r.host, locked=r.locked, lobby_on=r.lobby_on, password=password,
                        banned_identities=frozenset(r.banned_identities),
                        banned_peers=frozenset(r.banned_peers), host_key_digest=r.host_key_digest,
                        restored_until=(now.monotonic + r.restore_left
                                        if r.restore_left is not None else None))
            room.members = {peer: clients[peer] for peer in r.members}
            room.lobby = {peer: clients[peer] for peer in r.lobby}
            rooms[room.id] = room
        for record in snapshot.sessions:
            client = clients[record.id]
            client.room = rooms[record.room] if record.room is not None else None
            client.knocking = rooms[record.knocking] if record.knocking is not None else None
    except KeyError as missing:
        raise ValueError(f"snapshot does not hold together: {missing} is missing") from None
    for client in clients.values():
        core.adopt_detached(client)
    for room in rooms.values():
        core.adopt_room(room)
    for ticket in snapshot.queue:
        if ticket.peer not in clients:
            raise ValueError(f"snapshot does not hold together: ticket {ticket.peer} has no session")
        core.requeue_suspended(clients[ticket.peer], now.monotonic - ticket.waited)
    core.saved_version += 1


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(Snapshot)


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return _encoder.encode(snapshot)


def decode_snapshot(data: bytes) -> Snapshot:
    """Raises: ValueError: not a snapshot."""
    try:
        return _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a snapshot: {exc}") from None
