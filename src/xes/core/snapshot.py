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
from .safety import Standing
from .signalling import Client, CoreSettings, Partner, Room, Signalling
from .timing import Now

__all__ = ["Snapshot", "SessionRecord", "PartnerRecord", "RoomRecord", "TicketRecord", "export_snapshot",
           "import_snapshot", "encode_snapshot", "decode_snapshot", "SNAPSHOT_FORMAT",
           "SessionTransfer", "RoomTransfer", "export_session", "import_session", "export_room",
           "import_room", "encode_transfer", "decode_session_transfer", "decode_room_transfer"]

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
        client = _client(record, settings)
        _detach(client, record, now, settings)
        clients[client.id] = client
    rooms: dict[str, Room] = {}
    try:
        for r in snapshot.rooms:
            room = _room(r, now)
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


def _client(record: SessionRecord, settings: CoreSettings) -> Client:
    """A session from its record, attached and wired to nothing yet."""
    client = Client(record.id, token_digest=record.token_digest, name=record.name,
                    identity=record.identity, rollback=record.rollback,
                    avoid=tuple(record.avoid), queued=record.queued)
    p = record.partner
    if p is not None:
        client.partner = Partner(p.peer, p.identity, p.started_at, p.ended_at, p.rated, p.reported)
    if record.seq:
        outbox = client.outbox = Outbox(settings.replay_messages, settings.replay_bytes)
        outbox.restore(record.seq, [bytes(frame) for frame in record.frames])
    return client


def _detach(client: Client, record: SessionRecord, now: Now, settings: CoreSettings) -> None:
    """Detached from now, with a fresh grace; time already spent away counts against the cap."""
    away_for = record.detached_for or 0.0
    client.detached_at = now.monotonic - away_for
    client.expires_at = min(now.monotonic + settings.resume_grace_seconds,
                            client.detached_at + settings.resume_cap_seconds)


def _room(r: RoomRecord, now: Now) -> Room:
    """A room from its record, with no members yet."""
    password = (PasswordHash(r.password_salt, r.password_digest)
                if r.password_salt is not None and r.password_digest is not None else None)
    return Room(r.id, r.max_peers, match=r.match, ice_transport_policy=r.ice_transport_policy,
                host=r.host, locked=r.locked, lobby_on=r.lobby_on, password=password,
                banned_identities=frozenset(r.banned_identities),
                banned_peers=frozenset(r.banned_peers), host_key_digest=r.host_key_digest,
                restored_until=(now.monotonic + r.restore_left
                                if r.restore_left is not None else None))


# ---------------------------------------------------------------------------------------------
# One session, or one room with its sessions, moving between the nodes of a cluster
# (server.cluster): a session moves to the node that owns the room it joins, and a node takes
# over the rooms of a dead one from the snapshot their owner kept in Redis. The same plain values
# as above, plus what the receiving node could otherwise only load from the database: the
# identity's standing and lasting blocks.


class SessionTransfer(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    session: SessionRecord
    standing: Standing | None = None
    blocks: list[str] = []


class RoomTransfer(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    format: int
    room: RoomRecord
    sessions: list[SessionTransfer]          # its members, then its lobby, oldest first


def export_session(core: Signalling, peer: str, now: Now) -> SessionTransfer:
    """One session as plain values, replay buffer included, to move it to another node.

    Raises:
        KeyError: No such session.
    """
    client = core.clients[peer]
    identity = client.identity
    return SessionTransfer(
        session=_export_session(client, now),
        standing=core.standings.get(identity) if identity is not None else None,
        blocks=sorted(core.blocks.get(identity, ())) if identity is not None else [])


def import_session(core: Signalling, transfer: SessionTransfer) -> Client:
    """Take in a session another node let go of (it stood in no room): attached, as it was.

    Raises:
        ValueError: The session is in a room or lobby (a room moves with :func:`import_room`),
            or a session with its id is already here.
    """
    record = transfer.session
    if record.room is not None or record.knocking is not None:
        raise ValueError("a session in a room moves with its room")
    if record.id in core.clients:
        raise ValueError(f"session {record.id} is already here")
    client = _client(record, core.settings)
    if record.identity is not None:
        core.adopt_identity(record.identity, transfer.standing, transfer.blocks)
    core.adopt_attached(client)
    return client


def export_room(core: Signalling, room_id: str, now: Now, frames: bool = False) -> RoomTransfer:
    """A room with its members' and lobby's sessions, for a node that may take it over.

    ``frames``: keep the replay buffers too. The snapshot an owner keeps current in Redis leaves
    them out (they change with every relayed message, and can be megabytes): a session taken
    over keeps its ``seq`` and resumes with nothing replayed (:attr:`Outbox.continues`).

    Raises:
        KeyError: No such room.
    """
    room = core.rooms[room_id]
    sessions = []
    for client in (*room.members.values(), *room.lobby.values()):
        transfer = export_session(core, client.id, now)
        if not frames:
            transfer = msgspec.structs.replace(
                transfer, session=msgspec.structs.replace(transfer.session, frames=[]))
        sessions.append(transfer)
    return RoomTransfer(format=SNAPSHOT_FORMAT, room=_export_room(room, now), sessions=sessions)


def import_room(core: Signalling, transfer: RoomTransfer, now: Now) -> Room:
    """Take over a room from its snapshot: every session detached with a fresh grace, numbering
    on from its ``seq`` (a resume that is ahead continues above it). Nothing is sent: the
    clients resume as after any lost socket, and nobody sees anyone leave.

    Raises:
        ValueError: Another format, the room or one of its sessions is already here, or the
            snapshot does not hold together.
    """
    if transfer.format != SNAPSHOT_FORMAT:
        raise ValueError(f"snapshot format {transfer.format} is not {SNAPSHOT_FORMAT}")
    r = transfer.room
    if r.id in core.rooms:
        raise ValueError(f"room {r.id} is already here")
    records = {t.session.id: t for t in transfer.sessions}
    if set(records) != {*r.members, *r.lobby} or len(records) != len(transfer.sessions):
        raise ValueError("snapshot does not hold together: members and sessions differ")
    if any(peer in core.clients for peer in records):
        raise ValueError("a session of this room is already here")
    room = _room(r, now)
    settings = core.settings
    for t in transfer.sessions:
        record = t.session
        client = _client(record, settings)
        _detach(client, record, now, settings)
        if client.outbox is None:
            # Sent nothing numbered when the snapshot was taken: a join is written before its
            # `joined` goes out, and that client may resume having seen it.
            client.outbox = Outbox(settings.replay_messages, settings.replay_bytes)
        client.outbox.continues = True
        if record.room == r.id and client.id in r.members:
            client.room = room
            room.members[client.id] = client
        elif record.knocking == r.id and client.id in r.lobby:
            client.knocking = room
            room.lobby[client.id] = client
        else:
            raise ValueError(f"snapshot does not hold together: {client.id} is not where it says")
        if record.identity is not None:
            core.adopt_identity(record.identity, t.standing, t.blocks)
    # Members in the room's order (oldest first: host succession and politeness depend on it).
    room.members = {peer: room.members[peer] for peer in r.members}
    room.lobby = {peer: room.lobby[peer] for peer in r.lobby}
    for client in (*room.members.values(), *room.lobby.values()):
        core.adopt_detached(client)
    core.adopt_room(room)
    core.saved_version += 1
    return room


# JSON, like the restart snapshot: the replay buffer's frames are kept as the JSON they are.
_transfer_encoder: Final = msgspec.json.Encoder()
_session_decoder: Final = msgspec.json.Decoder(SessionTransfer)
_room_decoder: Final = msgspec.json.Decoder(RoomTransfer)


def encode_transfer(transfer: SessionTransfer | RoomTransfer) -> bytes:
    return _transfer_encoder.encode(transfer)


def decode_session_transfer(data: bytes) -> SessionTransfer:
    """Raises: ValueError: not a session transfer."""
    try:
        return _session_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a session transfer: {exc}") from None


def decode_room_transfer(data: bytes) -> RoomTransfer:
    """Raises: ValueError: not a room snapshot."""
    try:
        return _room_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a room snapshot: {exc}") from None


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
