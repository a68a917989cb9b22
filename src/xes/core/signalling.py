"""The XES signalling state machine: rooms, room rules, matchmaking and relay routing.

Theory of operation
-------------------
This module is sans-I/O, in the manner of h11 and websockets' ``protocol.py``. The shell tells it
facts — a peer connected (:meth:`Signalling.connect`), a peer's message was decoded
(:meth:`Signalling.handle`), a peer went away (:meth:`Signalling.disconnect`), time passed
(:meth:`Signalling.tick`) — and it answers with :class:`~xes.core.actions.Action` commands to
carry out. It never reads a clock, draws a random number or touches a socket: time comes in as
``now``, a :class:`~xes.core.timing.Now` (monotonic seconds for deadlines and the queue, wall-clock
Unix seconds only for TURN credential expiry; see :mod:`xes.core.timing`), room ids for matches
from the ``room_ids`` iterator the shell provides, and password hashes ready-made from the shell's
worker thread.

How this fits with the shell, the time contract and where each kind of change goes:
docs/architecture.md.

Rule 1: validate first, then mutate. Every handler checks everything that can refuse the message
before it changes any state, so a refused message (a :class:`~xes.errors.SignallingError`)
changes nothing for anyone.

Rule 2: the relay is hot. :meth:`Signalling.route_signal` is two dictionary lookups and returns the
recipient's id; the shell splices the frame itself. Nothing else is on that path.

Rule 4: sessions outlive sockets (docs/protocol.md, "Sessions"). A lost socket *detaches* its
session (:meth:`Signalling.detach`): it keeps its seat, host role, lobby place and queue ticket,
its room-mates get ``peer-away``, and it ends (:meth:`Signalling.disconnect`, ``peer-left``) when
its grace runs out in :meth:`Signalling.tick`, unless it resumes (:meth:`Signalling.resume`).
Every message for a session is numbered and kept in its :class:`~xes.core.outbox.Outbox` by the
shell as it sends it; the core reads the outbox back on resume.

Rule 3: the newcomer offers. A joiner receives the members already present and sends each an
offer; the members wait. ``polite`` (perfect negotiation) is given per pair: the member already
present is polite unless it cannot roll back an offer (aiortc), then the newcomer is.
"""

from __future__ import annotations

import dataclasses
import heapq
import hmac
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, assert_never

from ..errors import (
    AlreadyJoined,
    BadField,
    Banned,
    Cooldown,
    Declined,
    IdentityBanned,
    IdentityRefused,
    IdentityRequired,
    NotHost,
    NotJoined,
    NotQueued,
    PasswordRequired,
    PeerNotFound,
    Refused,
    RoomFull,
    RoomLocked,
    SessionGone,
    TooManyIdentities,
    TurnUnavailable,
    WrongPassword,
)
from ..protocol import messages as m
from . import safety
from .access import PasswordHash
from .actions import Action, CreateIdentity, SaveBlock, SaveRating, SaveReport, SaveStanding, Send
from .matchmaking import Match, MatchQueue, Ticket
from .outbox import Outbox
from .saved import SavedRoom, digest_secret
from .timing import Now
from .turn import IceSettings, ice_servers_for

__all__ = ["CoreSettings", "Signalling", "Client", "Room", "StaleSession", "Partner",
           "ProvenIdentity"]

LeaveReason = Literal["left", "disconnected", "removed", "banned"]
# One answer for every failed resume, so that a guess learns nothing (docs/protocol.md).
_SESSION_GONE = "this session cannot be resumed: join or match afresh"
MAX_AVOIDED = 256


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """Operator settings the core needs. Limits only echo into ``hello``; the shell enforces them."""

    max_peers: int = 8
    match_relax_seconds: float = 10.0
    # How long a room restored after a restart waits for its people (docs/protocol.md, "Restarts"):
    # its host's seat is kept that long, and a room nobody came back to is then forgotten.
    restore_seconds: float = 120.0
    # Sessions (docs/protocol.md, "Sessions"): how long a detached session is kept, the cap that
    # `hearing` reports cannot extend it past (both from the detach), and the replay bounds.
    resume_grace_seconds: float = 20.0
    resume_cap_seconds: float = 120.0
    replay_messages: int = 256
    replay_bytes: int = 262_144
    ice: IceSettings = field(default_factory=IceSettings)
    new_identities_per_network: int = safety.NEW_IDENTITIES_PER_NETWORK_PER_DAY
    limits: m.Limits = field(
        default_factory=lambda: m.Limits(
            max_message_bytes=m.MAX_MESSAGE_BYTES, max_peers=8, rate_burst=400, rate_per_second=100.0,
            heartbeat_seconds=10.0,
        )
    )

    def __post_init__(self) -> None:
        if not 0 < self.resume_grace_seconds <= self.resume_cap_seconds:
            raise ValueError("the resume grace must be positive and at most the resume cap")
        if self.replay_messages < 1 or self.replay_bytes < 2 * m.MAX_MESSAGE_BYTES:
            raise ValueError(f"the replay buffer must hold at least 1 message and "
                             f"{2 * m.MAX_MESSAGE_BYTES} bytes (two of the largest messages)")


class StaleSession(SessionGone):
    """``resume`` with the right token, but messages after ``last_seq`` were dropped: the session
    can never resume, so the shell ends it at once (if detached) after refusing."""


@dataclass(frozen=True, slots=True)
class ProvenIdentity:
    """What the shell found out about an ``identify``: signature checked, record loaded.

    Attributes:
        identity: The keyed hash of the public key (the only form XES keeps).
        standing: Its stored standing, or None if XES has never seen it.
        blocks: Identities it blocked or that blocked it (never to be matched with it).
        network: The daily salted hash of the connection's address, or None if unknown.
        created_today_on_network: New identities this network made today.
    """

    identity: str
    standing: safety.Standing | None
    blocks: frozenset[str]
    network: str | None
    created_today_on_network: int


@dataclass(slots=True, eq=False)
class Partner:
    """The stranger of one's current or last match: what `rate`, `report` and `block` refer to."""

    peer: str
    identity: str | None
    started_at: float            # unix seconds
    ended_at: float | None = None
    rated: bool = False
    reported: bool = False


@dataclass(slots=True, eq=False)
class Client:
    """One session: a peer id, and where it stands (idle, knocking, in a room, or queued).

    It lives as long as its connection, or longer: detached (``detached_at`` set) until it
    resumes or ``expires_at`` passes (docs/protocol.md, "Sessions").
    """

    id: str
    # The resume token's SHA-256 (saved.digest_secret): the token itself, a secret, is never kept,
    # so neither a snapshot nor a memory dump holds one.
    token_digest: str = ""
    outbox: Outbox | None = None      # seq and replay buffer, from its first numbered message
    detached_at: float | None = None  # monotonic; None while a socket is attached
    expires_at: float = 0.0           # while detached: when the grace runs out (monotonic)
    name: str = ""
    # Set by a proven `identify`: the keyed hash of the public key, never the key itself. Host
    # bans and blocks use it, and a snapshot keeps it so a resumed session stays identified.
    identity: str | None = None
    rollback: bool = True
    partner: Partner | None = None
    room: Room | None = None
    knocking: Room | None = None
    queued: m.MatchRequest | None = None   # the request to re-use on `next`, while queued or matched
    # Peers this connection skipped or blocked: never matched again while it lives. Session-only,
    # oldest first, and capped so that a stream of `block`s cannot grow it without bound.
    avoid: tuple[str, ...] = ()

    @property
    def room_id(self) -> str | None:
        """The id of the room this session is in or knocking at (None: neither)."""
        room = self.room or self.knocking
        return room.id if room is not None else None

    def remember_to_avoid(self, peers: Iterable[str]) -> None:
        fresh = tuple(p for p in peers if p not in self.avoid and p != self.id)
        if fresh:
            self.avoid = (self.avoid + fresh)[-MAX_AVOIDED:]


@dataclass(slots=True, eq=False)
class Room:
    """A room exists while someone is in it or knocking at it. Members are kept oldest first."""

    id: str
    max_peers: int
    match: bool = False
    # "relay" keeps both members' addresses from each other (a match where either did not consent).
    ice_transport_policy: Literal["all", "relay"] = "all"
    host: str | None = None
    members: dict[str, Client] = field(default_factory=dict)
    lobby: dict[str, Client] = field(default_factory=dict)
    locked: bool = False
    lobby_on: bool = False
    password: PasswordHash | None = None
    # Empty and shared until someone is banned: most rooms never ban anyone. Identities are
    # keyed hashes already, so a saved room holds no public key, let alone a secret.
    banned_identities: frozenset[str] = frozenset()
    banned_peers: frozenset[str] = frozenset()
    # The digest of the secret the host was given (`host_key`), so that after a restart the
    # host's client, not whoever comes back first, gets the role back. None in match rooms.
    host_key_digest: str | None = None
    # Set while a room restored after a restart waits for its people (monotonic deadline): it is
    # kept even if empty, and while `host` is None its host's seat is reserved for the key.
    restored_until: float | None = None

    def rules(self) -> m.Rules:
        return m.Rules(locked=self.locked, lobby=self.lobby_on, password=self.password is not None,
                       max_peers=self.max_peers)

    def protected(self, server_max: int) -> bool:
        """Whether anything keeps someone out: such a room is saved, so a crash cannot open it."""
        return (self.locked or self.lobby_on or self.password is not None
                or bool(self.banned_identities) or self.max_peers < server_max)

    def host_reserved(self) -> bool:
        """Restored, and its host has not proved itself yet: nobody else may take the role."""
        return self.host is None and self.restored_until is not None and not self.match


def _text_only(client: Client, room: Room) -> bool:
    """Whether ``client`` is in ``room`` as a text-only stranger (its `match` asked for a text
    chat): its partner learns it from `joined`/`peer-joined`, so its page sends no audio either."""
    return room.match and client.queued is not None and client.queued.text_only


class Signalling:
    """All signalling state of one server process. See the module docstring."""

    def __init__(self, settings: CoreSettings, room_ids: Iterator[str],
                 host_keys: Iterator[str] | None = None) -> None:
        """``room_ids`` and ``host_keys`` are the shell's randomness: fresh 128-bit secrets for
        match rooms and for host keys (``room_ids`` serves both when ``host_keys`` is None)."""
        self.settings = settings
        self.clients: dict[str, Client] = {}
        self.rooms: dict[str, Room] = {}
        self.queue = MatchQueue(relax_after=settings.match_relax_seconds)
        self._room_ids = room_ids
        self._host_keys = host_keys if host_keys is not None else room_ids
        self._hello_limits = settings.limits
        # Rooms restored by `restore` still waiting for their people, by deadline order of entry.
        self._restored: dict[str, Room] = {}
        # Goes up whenever what `saved_rooms` returns may have changed: the shell saves then.
        self.saved_version = 0
        # Grace deadlines of detached sessions, earliest first: (expires_at, peer). An entry made
        # stale by a `hearing` (the session's expires_at moved on) or a resume is skipped.
        self._expiries: list[tuple[float, str]] = []
        # Identities with at least one connection: their standing and lasting blocks (both
        # directions), loaded by the shell on `identify` and kept current by it.
        self.standings: dict[str, safety.Standing] = {}
        self.blocks: dict[str, set[str]] = {}
        self._identity_connections: dict[str, int] = {}
        # The latest wall-clock time the shell told us (any entry point with `now`): when a match
        # call ends through `disconnect`, which has no `now` of its own.
        self._last_unix = 0.0
        # Cluster mode (set by the shell): a match the queue decides is not started at once but
        # kept in `decided`, for the shell to commit in Redis (server/cluster_queue.py) and then
        # hand back to `start_decided`; so a leader that was replaced meanwhile starts nothing.
        self.defer_matches = False
        self.decided: list[Match] = []
        # Strangers paired since start (one per pair): a count the shell's /metrics reads.
        self.matches_made = 0


    # ------------------------------------------------------------------ facts from the shell

    def connect(self, peer: str, token: str, challenge: str) -> list[Action]:
        """A connection opened; ``peer`` is its fresh random id, ``token`` its resume secret,
        ``challenge`` its nonce to sign in ``identify``."""
        self.clients[peer] = Client(peer, token_digest=digest_secret(token))
        hello = m.Hello(protocol=m.PROTOCOL_VERSION, peer=peer, resume=token,
                        limits=self._hello_limits, relay=self.settings.ice.has_turn,
                        challenge=challenge)
        return [Send(peer, m.encode(hello), numbered=False)]

    def outbox(self, client: Client) -> Outbox:
        """``client``'s outbox, made on its first numbered message (idle sessions have none)."""
        outbox = client.outbox
        if outbox is None:
            s = self.settings
            outbox = client.outbox = Outbox(s.replay_messages, s.replay_bytes)
            if client.detached_at is not None:
                outbox.hold()
        return outbox

    def detach(self, peer: str, now: Now) -> list[Action]:
        """A socket was lost without the client hanging up: keep its session for the grace.

        A session that stands nowhere (no room, lobby or queue) has nothing to keep and ends.
        """
        client = self.clients.get(peer)
        if client is None or client.detached_at is not None:
            return []
        if client.room is None and client.knocking is None and client.queued is None:
            return self.disconnect(peer)
        client.detached_at = now.monotonic
        client.expires_at = now.monotonic + self.settings.resume_grace_seconds
        heapq.heappush(self._expiries, (client.expires_at, peer))
        if client.outbox is not None:
            client.outbox.hold()
        if client.queued is not None and client.room is None:
            self.queue.suspend(peer)
        actions: list[Action] = []
        if client.room is not None:
            notice = m.encode(m.PeerAway(peer=peer))
            for other in client.room.members.values():
                if other is not client:
                    actions.append(Send(other.id, notice))
        return actions

    def resume(self, peer: str, request: m.Resume, token: str, now: Now) -> list[Action]:
        """``peer``, a fresh connection's provisional session, asks to continue ``request.peer``.

        On success the provisional session is forgotten, the old one is attached again under the
        new ``token``, and the actions are ``resumed``, the replay, ``peer-back`` to its
        room-mates and any match its queue ticket now makes. If the old session was still
        attached, the shell closes that socket (4010) itself.

        Raises:
            SessionGone: Unknown, wrong token, ended: nothing changed.
            StaleSession: The right token, but the replay is no longer complete: nothing changed
                (the shell ends the session if it is detached).
        """
        session = self.clients.get(request.peer)
        if (session is None or session.id == peer
                or not hmac.compare_digest(session.token_digest, digest_secret(request.token))):
            raise SessionGone(_SESSION_GONE, ref="resume")
        outbox = session.outbox
        if outbox is None:
            replay: list[bytes] | None = [] if request.last_seq == 0 else None
        else:
            replay = outbox.since(request.last_seq)
        if replay is None:
            raise StaleSession(_SESSION_GONE, ref="resume")
        del self.clients[peer]
        session.token_digest = digest_secret(token)
        was_away = session.detached_at is not None
        session.detached_at = None
        if outbox is not None:
            outbox.release()
        servers, expires = ice_servers_for(self.settings.ice, session.id, now.unix)
        resumed = m.Resumed(
            peer=session.id, resume=token, last_seq=outbox.seq if outbox is not None else 0,
            room=self._room_state(session), lobby=session.knocking.id if session.knocking else None,
            queued=session.queued is not None and session.room is None,
            ice_servers=servers, ice_expires_at=expires)
        actions: list[Action] = [Send(session.id, m.encode(resumed), numbered=False)]
        actions.extend(Send(session.id, frame, numbered=False) for frame in replay)
        if was_away and session.room is not None:
            notice = m.encode(m.PeerBack(peer=session.id))
            for other in session.room.members.values():
                if other is not session:
                    actions.append(Send(other.id, notice))
        if was_away and session.queued is not None and session.room is None:
            for match in self.queue.reinstate(session.id, now.monotonic):
                self._start_match(match, now, actions)
        return actions

    def _room_state(self, client: Client) -> m.RoomState | None:
        """Where ``client`` stands in its room, for ``resumed``: ``joined``'s shape."""
        room = client.room
        if room is None:
            return None
        peers: list[m.PeerInfo] = []
        before = True  # members are kept in arrival order
        for other in room.members.values():
            if other is client:
                before = False
                continue
            # Rule 3 per pair: the one present first is polite unless it cannot roll back.
            polite = (not other.rollback) if before else client.rollback
            peers.append(m.PeerInfo(id=other.id, name=other.name, polite=polite,
                                    text_only=_text_only(other, room)))
        assert room.host is not None
        return m.RoomState(
            room=room.id, you=client.id, host=room.host, peers=peers, rules=room.rules(),
            ice_transport_policy=room.ice_transport_policy, match=room.match,
            away=[o.id for o in room.members.values() if o.detached_at is not None and o is not client],
            knocks=[m.KnockPeer(id=k.id, name=k.name) for k in room.lobby.values()]
            if room.host == client.id else [])

    def _hear(self, client: Client, target_id: str, now: Now) -> None:
        """``client`` still receives ``target_id``'s audio: push its grace, up to the cap."""
        target = self.clients.get(target_id)
        if (target is None or target.detached_at is None or client.room is None
                or target.room is not client.room):
            return  # races (it came back, or is gone) and strangers to the room: ignored
        settings = self.settings
        until = min(now.monotonic + settings.resume_grace_seconds,
                    target.detached_at + settings.resume_cap_seconds)
        if until > target.expires_at:
            target.expires_at = until
            heapq.heappush(self._expiries, (until, target_id))

    def standing_changed(self, standing: safety.Standing) -> None:
        """The stored standing of an identity changed (a rating, a moderator): keep ours current."""
        if standing.identity in self.standings:
            self.standings[standing.identity] = standing

    def disconnect(self, peer: str) -> list[Action]:
        """The session ends now (a hang-up, a punitive close, or its grace ran out): leave
        everything it was part of."""
        client = self.clients.pop(peer, None)
        if client is None:
            return []
        if client.identity is not None:
            self._forget_identity_connection(client.identity)
        actions: list[Action] = []
        if client.room is not None:
            self._leave(client, "disconnected", actions)
        elif client.knocking is not None:
            self._withdraw_knock(client, actions)
        if client.queued is not None:
            self.queue.cancel(peer)
        return actions

    def tick(self, now: Now) -> list[Action]:
        """Time passed: pair waiting users whose preferences relaxed, end expired sessions,
        settle restored rooms whose wait is over."""
        self._last_unix = max(self._last_unix, now.unix)
        actions: list[Action] = []
        for match in self.queue.tick(now.monotonic):
            self._start_match(match, now, actions)
        expiries = self._expiries
        while expiries and expiries[0][0] <= now.monotonic:
            _, peer = heapq.heappop(expiries)
            client = self.clients.get(peer)
            if client is not None and client.detached_at is not None \
                    and client.expires_at <= now.monotonic:
                actions.extend(self.disconnect(peer))
        for room in [r for r in self._restored.values()
                     if r.restored_until is not None and r.restored_until <= now.monotonic]:
            self._end_restore(room, actions)
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has work (monotonic seconds, as ``now.monotonic``), or None."""
        expiries = self._expiries
        while expiries:  # drop stale entries: resumed, ended, or moved on by `hearing`
            at, peer = expiries[0]
            client = self.clients.get(peer)
            if client is not None and client.detached_at is not None and client.expires_at == at:
                break
            heapq.heappop(expiries)
        deadlines = [r.restored_until for r in self._restored.values() if r.restored_until is not None]
        queue = self.queue.next_deadline()
        if queue is not None:
            deadlines.append(queue)
        if expiries:
            deadlines.append(expiries[0][0])
        return min(deadlines) if deadlines else None

    # ------------------------------------------------------------------ snapshots (core.snapshot)

    def adopt_detached(self, client: Client) -> None:
        """A session from a snapshot, detached (``detached_at`` and ``expires_at`` set by the
        caller) and wired to its room or lobby: it ends at ``expires_at`` unless it resumes."""
        self.clients[client.id] = client
        heapq.heappush(self._expiries, (client.expires_at, client.id))
        if client.outbox is not None:
            client.outbox.hold()
        if client.identity is not None:
            self._identity_connections[client.identity] = (
                self._identity_connections.get(client.identity, 0) + 1)

    def adopt_attached(self, client: Client) -> None:
        """A session moved here from another cluster node (core.snapshot.import_session), with a
        socket still open at its edge: it carries on as if it had always been here."""
        self.clients[client.id] = client
        if client.identity is not None:
            self._identity_connections[client.identity] = (
                self._identity_connections.get(client.identity, 0) + 1)

    def adopt_identity(self, identity: str, standing: safety.Standing | None,
                       blocks: Iterable[str]) -> None:
        """The standing and lasting blocks a moved session brought along (already stored)."""
        if standing is not None:
            self.standings[identity] = standing
        self.blocks.setdefault(identity, set()).update(blocks)

    def release(self, peer: str) -> Client | None:
        """Forget a session that moves to another cluster node, telling nobody: it lives on there.

        Only a session standing nowhere (idle, or about to join) moves alone; a room moves with
        its sessions (:meth:`release_room`). Its queue ticket, if any, is the caller's to move.
        """
        client = self.clients.pop(peer, None)
        if client is None:
            return None
        if client.identity is not None:
            self._forget_identity_connection(client.identity)
        if client.queued is not None and client.room is None:
            self.queue.cancel(peer)
        return client

    def release_room(self, room_id: str) -> list[Client]:
        """Forget a room and every session in it or its lobby, telling nobody: another cluster
        node holds them now (it took the room over). Returns the sessions forgotten."""
        room = self.rooms.pop(room_id, None)
        if room is None:
            return []
        self._restored.pop(room_id, None)
        self.saved_version += 1
        gone = [c for c in (*room.members.values(), *room.lobby.values())]
        for client in gone:
            self.release(client.id)
        return gone

    def identities_to_load(self) -> set[str]:
        """Identities of sessions whose standing is not loaded: those adopted from a snapshot.
        The shell loads each (:meth:`identity_loaded`) before it serves anyone, so that a resumed
        session stays identified without a new ``identify`` (its key never left the client, and
        the new connection's challenge proves nothing more than the resume token already does)."""
        return {client.identity for client in self.clients.values()
                if client.identity is not None and client.identity not in self.standings}

    def identity_loaded(self, identity: str, standing: safety.Standing | None,
                        blocks: Iterable[str], now: Now) -> list[Action]:
        """The stored standing and lasting blocks of an identity from :meth:`identities_to_load`.

        No standing: it was proven before the restart but its record is not there (its write was
        lost): it is made again, as on a first ``identify``, since the proof already happened.
        """
        actions: list[Action] = []
        if standing is None:
            standing = safety.Standing(identity, created_at=now.unix)
            actions.append(CreateIdentity(standing, None))
        self.standings[identity] = standing
        self.blocks.setdefault(identity, set()).update(blocks)
        return actions

    def adopt_room(self, room: Room) -> None:
        """A room from a snapshot, its members and lobby already adopted."""
        self.rooms[room.id] = room
        if room.restored_until is not None:
            self._restored[room.id] = room

    def requeue_suspended(self, client: Client, enqueued_at: float) -> None:
        """Put an adopted (detached) session's ticket back in the queue, suspended, keeping its
        arrival time; called in arrival order. Pairs nobody: every ticket there is away.

        Raises:
            ValueError: The session has no request, or it was paired (a snapshot that does not
                hold together).
        """
        if client.queued is None:
            raise ValueError(f"session {client.id} is queued without a request")
        if self.queue.enqueue(self._ticket(client, client.queued, enqueued_at)):
            raise ValueError("a restored ticket was paired: every ticket should be away")
        self.queue.suspend(client.id)

    # ------------------------------------------------------------------ saving and restoring

    def saved_rooms(self) -> list[SavedRoom]:
        """Every protected room as plain values (:mod:`xes.core.saved`), for the shell to write."""
        server_max = self.settings.max_peers
        return [self._save(room) for room in self.rooms.values()
                if not room.match and (room.protected(server_max) or room.restored_until is not None)]

    @staticmethod
    def _save(room: Room) -> SavedRoom:
        password = room.password
        return SavedRoom(
            id=room.id, max_peers=room.max_peers, locked=room.locked, lobby=room.lobby_on,
            password_salt=password.salt if password is not None else None,
            password_digest=password.digest if password is not None else None,
            banned_identities=sorted(room.banned_identities), host_key_digest=room.host_key_digest)

    def restore(self, saved: Sequence[SavedRoom], now: Now) -> int:
        """Re-create saved rooms, empty, with their rules and bans, after a restart.

        Each waits ``restore_seconds`` for its people: its host gets the role back by presenting
        its ``host_key`` in ``join`` (before anyone else can take it), and a room nobody came back
        to is then forgotten. Records for rooms that already exist (from a snapshot) are ignored.
        Returns how many rooms were re-created.
        """
        restored = 0
        for record in saved:
            if record.id in self.rooms:
                continue
            restored += 1
            password = (PasswordHash(record.password_salt, record.password_digest)
                        if record.password_salt is not None and record.password_digest is not None
                        else None)
            room = Room(record.id, min(record.max_peers, self.settings.max_peers), locked=record.locked,
                        lobby_on=record.lobby, password=password,
                        banned_identities=frozenset(record.banned_identities),
                        host_key_digest=record.host_key_digest,
                        restored_until=now.monotonic + self.settings.restore_seconds)
            self.rooms[room.id] = self._restored[room.id] = room
        self.saved_version += 1
        return restored

    def _end_restore(self, room: Room, actions: list[Action]) -> None:
        """A restored room's wait is over: forget it if nobody came back; if its host did not,
        the role passes on as when a host leaves."""
        del self._restored[room.id]
        room.restored_until = None
        self.saved_version += 1
        if not room.members:
            del self.rooms[room.id]
            for knocker in list(room.lobby.values()):
                self._decline(room, knocker, "the host did not come back", actions)
        elif room.host is None:
            self._promote(room, next(iter(room.members.values())), actions)

    def route_signal(self, peer: str, to: str) -> Client:
        """The relay's hot path: check that ``to`` shares ``peer``'s room, and return its session
        (attached or not: a detached one keeps what it is sent for its resume).

        Raises:
            NotJoined: ``peer`` is in no room.
            PeerNotFound: ``to`` is not another member of that room (same answer whether or not it
                exists elsewhere, so a client cannot probe other rooms).
        """
        room = self.clients[peer].room
        if room is None:
            raise NotJoined("join a room before signalling", ref="signal")
        target = room.members.get(to)
        if target is None or to == peer:
            raise PeerNotFound(f"no peer {to!r} in your room", ref="signal")
        return target

    def password_salt(self, room_id: str) -> bytes | None:
        """The salt of a room's password, so the shell can hash a joiner's guess off the loop."""
        room = self.rooms.get(room_id)
        return room.password.salt if room is not None and room.password is not None else None

    def handle(self, peer: str, message: m.ClientMessage, now: Now,
               password: PasswordHash | None = None,
               proven: ProvenIdentity | None = None) -> list[Action]:
        """A decoded message from ``peer``, other than ``signal`` (see :meth:`route_signal`).

        ``now`` is the shell's reading of both clocks (:mod:`xes.core.timing`): the queue runs on
        ``now.monotonic``, TURN credentials expire by ``now.unix``.
        ``password`` is the shell's hash of the message's password: for ``join``, hashed with the
        room's salt (:meth:`password_salt`); for ``set-rules``, a new hash with a fresh salt.
        ``proven`` is, for ``identify``, what the shell verified and loaded; None if the
        signature did not verify.

        Raises:
            SignallingError: The message is refused; nothing changed.
        """
        client = self.clients[peer]
        self._last_unix = max(self._last_unix, now.unix)
        actions: list[Action] = []
        match message:
            case m.Join():
                self._join(client, message, password, now, actions)
            case m.Leave():
                self._leave_anything(client, actions)
            case m.IceRefresh():
                if not self.settings.ice.stun_urls and not self.settings.ice.has_turn:
                    raise TurnUnavailable("this server has no STUN or TURN servers", ref="ice-refresh")
                servers, expires = ice_servers_for(self.settings.ice, peer, now.unix)
                actions.append(Send(peer, m.encode(m.IceServers(ice_servers=servers,
                                                               ice_expires_at=expires))))
            case m.SetRules():
                self._set_rules(client, message, password, now, actions)
            case m.Admit():
                room = self._hosted_room(client, "admit")
                knocker = room.lobby.get(message.peer)
                if knocker is None:
                    raise PeerNotFound(f"no peer {message.peer!r} in your lobby", ref="admit")
                refusal = self._admission(room, knocker, "admit")
                if refusal is not None:
                    raise refusal
                self._let_in_from_lobby(room, knocker, now, actions)
            case m.Decline():
                room = self._hosted_room(client, "decline")
                knocker = room.lobby.get(message.peer)
                if knocker is None:
                    raise PeerNotFound(f"no peer {message.peer!r} in your lobby", ref="decline")
                self._decline(room, knocker, "the host declined your request to join", actions)
            case m.Remove() | m.Ban():
                self._remove(client, message, actions)
            case m.MatchRequest():
                self._match(client, message, now, actions)
            case m.Next():
                self._next(client, None, now, actions)
            case m.Block():
                self._block(client, message.peer, now, actions)
                self._next(client, message.peer, now, actions)
                actions.append(Send(peer, _NOTED_BLOCK))
            case m.Stop():
                if client.queued is None:
                    raise NotQueued("you are not waiting for a match", ref="stop")
                self._leave_anything(client, actions)
            case m.Resume():
                # The shell hands a connection's first message to `resume`; any later one is this.
                raise AlreadyJoined("resume only as the first message on a new connection",
                                    ref="resume")
            case m.Hearing():
                self._hear(client, message.peer, now)
            case m.Identify():
                self._identify(client, proven, now, actions)
            case m.Rate():
                self._rate(client, message, now, actions)
            case m.Report():
                self._report(client, message, now, actions)
            case m.Signal():  # pragma: no cover - the shell routes signals via route_signal
                self.route_signal(peer, message.to)
            case _:
                # Exhaustive: a message type added to m.ClientMessage but not handled above
                # fails mypy here, instead of being silently ignored at run time.
                assert_never(message)
        return actions

    # ------------------------------------------------------------------ rooms

    def _join(self, client: Client, msg: m.Join, password: PasswordHash | None, now: Now,
              actions: list[Action]) -> None:
        if client.room is not None or client.knocking is not None or client.queued is not None:
            raise AlreadyJoined("you are already in a room, a lobby or the match queue", ref="join")
        room = self.rooms.get(msg.room)
        # The host of a room restored after a restart, proving itself with its key: it set the
        # rules, so they do not keep it out, and its seat was kept (see `_admission`).
        reclaims = room is not None and _proves_host(room, msg.host_key)
        if room is not None and not reclaims:
            refusal = self._admission(room, client, "join", join=msg, password=password)
            if refusal is not None:
                raise refusal
        client.name, client.rollback = msg.name, msg.rollback
        if room is None:
            room = self.rooms[msg.room] = Room(msg.room, self.settings.max_peers)
        elif room.lobby_on and not reclaims:
            room.lobby[client.id] = client
            client.knocking = room
            actions.append(Send(client.id, m.encode(m.Lobby(room=room.id))))
            if room.host is not None:  # else the knock waits for the host (see `_admit`)
                actions.append(Send(room.host, self._knock(client)))
            return
        self._admit(room, client, now, actions, reclaims=reclaims)

    def _admission(self, room: Room, client: Client, ref: str, join: m.Join | None = None,
                   password: PasswordHash | None = None) -> Refused | None:
        """The one rule for entering an existing room: None to let ``client`` in, or the refusal.

        Used by all three ways in: ``join`` (``join`` is the message, ``password`` its hash with
        the room's salt), the host's ``admit``, and the host turning the lobby off (``join`` is
        None for both: the host lets a knocker in). A joiner must pass the lock and the password;
        for a knocker the host's decision stands in for the lock, and the password was checked
        when it knocked. Bans and the size limit hold whoever lets someone in. Reads only.
        """
        if join is not None and (room.match or room.locked):
            return RoomLocked("this room is locked", ref=ref)
        identity = client.identity
        if client.id in room.banned_peers or (identity is not None and identity in room.banned_identities):
            return Banned("you were banned from this room", ref=ref)
        if join is not None and room.password is not None:
            if join.password is None:
                return PasswordRequired("this room needs a password", ref=ref)
            if password is None or not room.password.matches(password):
                return WrongPassword("wrong password", ref=ref)
        # A restored room keeps its absent host's seat, so its host is never the one left out.
        if len(room.members) + room.host_reserved() >= room.max_peers:
            return RoomFull(f"this room is full ({room.max_peers} people)", ref=ref)
        return None

    def _let_in_from_lobby(self, room: Room, knocker: Client, now: Now, actions: list[Action]) -> None:
        del room.lobby[knocker.id]
        knocker.knocking = None
        self._admit(room, knocker, now, actions)

    def _admit(self, room: Room, client: Client, now: Now, actions: list[Action],
               reclaims: bool = False) -> None:
        """Put ``client`` in ``room`` (admission decided: :meth:`_admission`) and tell everyone.

        ``reclaims``: the client proved it is the host of this restored room (:meth:`_join`).
        """
        host_key = None
        if reclaims or (room.host is None and not room.host_reserved()):
            room.host = client.id
            if not room.match:
                host_key = self._new_host_key(room)
        if reclaims:
            del self._restored[room.id]  # its host is back: from now on an ordinary room
            room.restored_until = None
        peers = [m.PeerInfo(id=o.id, name=o.name, polite=not o.rollback, text_only=_text_only(o, room))
                 for o in room.members.values()]
        servers, expires = ice_servers_for(self.settings.ice, client.id, now.unix)
        joined = m.Joined(room=room.id, you=client.id, host=room.host, peers=peers, rules=room.rules(),
                          ice_servers=servers, ice_expires_at=expires,
                          ice_transport_policy=room.ice_transport_policy, match=room.match,
                          host_key=host_key)
        actions.append(Send(client.id, m.encode(joined)))
        # Each present member is polite toward the newcomer iff it can roll back: two payloads at
        # most, each encoded only if someone gets it (usually one; none for the first member).
        notices: dict[bool, bytes] = {}
        text_only = _text_only(client, room)
        for other in room.members.values():
            polite = other.rollback
            notice = notices.get(polite)
            if notice is None:
                notice = notices[polite] = m.encode(m.PeerJoined(
                    peer=m.PeerInfo(id=client.id, name=client.name, polite=polite,
                                    text_only=text_only)))
            actions.append(Send(other.id, notice))
        room.members[client.id] = client
        client.room = room
        if reclaims:
            host_notice = m.encode(m.Host(peer=client.id))
            for other in room.members.values():
                if other is not client:
                    actions.append(Send(other.id, host_notice))
            for knocker in room.lobby.values():
                actions.append(Send(client.id, self._knock(knocker)))

    def _new_host_key(self, room: Room) -> str:
        """A fresh secret for the room's (new) host; the room keeps only its digest."""
        key = next(self._host_keys)
        room.host_key_digest = digest_secret(key)
        self._saved_changed(room)
        return key

    def _saved_changed(self, room: Room) -> None:
        """``room``'s saved record (if it has one) changed: the shell should save again."""
        if room.restored_until is not None or room.protected(self.settings.max_peers):
            self.saved_version += 1

    def _leave_anything(self, client: Client, actions: list[Action]) -> None:
        """`leave`: out of the room or lobby, answered with `left`; leaving a match room or the
        queue also ends matchmaking for this connection (answered with `unqueued`)."""
        room = client.room or client.knocking
        if client.room is not None:
            self._leave(client, "left", actions)
        elif client.knocking is not None:
            self._withdraw_knock(client, actions)
        if room is not None:
            actions.append(Send(client.id, m.encode(m.Left(room=room.id))))
        if client.queued is not None and (room is None or room.match):
            self.queue.cancel(client.id)
            client.queued = None
            actions.append(Send(client.id, m.encode(m.Unqueued())))

    def _leave(self, client: Client, reason: LeaveReason, actions: list[Action]) -> None:
        room = client.room
        assert room is not None
        del room.members[client.id]
        client.room = None
        if room.match:  # the call is over: its length goes into a report made afterwards
            for member in (client, *room.members.values()):
                if member.partner is not None and member.partner.ended_at is None:
                    member.partner.ended_at = self._last_unix
        if not room.members:
            if room.restored_until is None:  # a restored room waits for its people until then
                self._forget(room, actions)
            return
        notice = m.encode(m.PeerLeft(peer=client.id, reason=reason))
        for other in room.members.values():
            actions.append(Send(other.id, notice))
        if room.host == client.id and not room.match:
            # The role passes to the longest-present member: the first in insertion order.
            self._promote(room, next(iter(room.members.values())), actions)

    def _promote(self, room: Room, member: Client, actions: list[Action]) -> None:
        """``member`` becomes host: everyone is told, only it gets the key, and the knocks."""
        room.host = member.id
        host_key = self._new_host_key(room)
        host_notice = m.encode(m.Host(peer=member.id))
        for other in room.members.values():
            actions.append(Send(other.id, host_notice if other is not member
                                else m.encode(m.Host(peer=member.id, host_key=host_key))))
        for knocker in room.lobby.values():
            actions.append(Send(member.id, self._knock(knocker)))

    def _forget(self, room: Room, actions: list[Action]) -> None:
        """The last member left: drop the room, its rules and bans; knockers are turned away."""
        self._saved_changed(room)
        del self.rooms[room.id]
        for knocker in list(room.lobby.values()):
            self._decline(room, knocker, "everyone left the room", actions)

    def _knock(self, knocker: Client) -> bytes:
        return m.encode(m.Knock(peer=m.KnockPeer(id=knocker.id, name=knocker.name)))

    def _withdraw_knock(self, client: Client, actions: list[Action]) -> None:
        room = client.knocking
        assert room is not None
        del room.lobby[client.id]
        client.knocking = None
        if room.host is not None:
            actions.append(Send(room.host, m.encode(m.KnockWithdrawn(peer=client.id))))
        if not room.members and not room.lobby and room.restored_until is None:
            self.rooms.pop(room.id, None)

    def _decline(self, room: Room, knocker: Client, why: str, actions: list[Action]) -> None:
        room.lobby.pop(knocker.id, None)
        knocker.knocking = None
        error = m.Error(code=Declined.code, message=why, ref="join")
        actions.append(Send(knocker.id, m.encode(error)))

    # ------------------------------------------------------------------ host commands

    def _hosted_room(self, client: Client, ref: str) -> Room:
        room = client.room
        if room is None:
            raise NotJoined("join a room first", ref=ref)
        if room.host != client.id:
            raise NotHost("only the host can do that", ref=ref)
        return room

    def _set_rules(self, client: Client, msg: m.SetRules, password: PasswordHash | None, now: Now,
                   actions: list[Action]) -> None:
        room = self._hosted_room(client, "set-rules")
        if isinstance(msg.max_peers, int) and msg.max_peers > self.settings.max_peers:
            raise BadField(f"max_peers may not exceed this server's maximum of "
                           f"{self.settings.max_peers} (field `max_peers`)", ref="set-rules")
        if isinstance(msg.password, str) and password is None:  # pragma: no cover - shell bug
            raise ValueError("the shell must hash a new password before set-rules")
        if isinstance(msg.locked, bool):
            room.locked = msg.locked
        if isinstance(msg.max_peers, int):
            room.max_peers = msg.max_peers
        if msg.password is None:
            room.password = None
        elif isinstance(msg.password, str):
            room.password = password
        if isinstance(msg.lobby, bool):
            room.lobby_on = msg.lobby
        self.saved_version += 1  # protected now, or no longer: either way the saved set changed
        notice = m.encode(m.RulesChanged(rules=room.rules()))
        for member in room.members.values():
            actions.append(Send(member.id, notice))
        if not room.lobby_on and room.lobby:
            # The lobby was turned off: the host lets the waiting in, oldest first, by the same
            # rule as `admit`; whoever it refuses (the room filled up) is turned away.
            for knocker in list(room.lobby.values()):
                refusal = self._admission(room, knocker, "join")
                if refusal is None:
                    self._let_in_from_lobby(room, knocker, now, actions)
                else:
                    self._decline(room, knocker, refusal.message, actions)

    def _remove(self, client: Client, msg: m.Remove | m.Ban, actions: list[Action]) -> None:
        ref = "ban" if isinstance(msg, m.Ban) else "remove"
        room = self._hosted_room(client, ref)
        banned = isinstance(msg, m.Ban)
        if msg.peer == client.id:
            raise BadField("the host cannot remove itself; send `leave` (field `peer`)", ref=ref)
        target = room.members.get(msg.peer) or room.lobby.get(msg.peer)
        if target is None:
            raise PeerNotFound(f"no peer {msg.peer!r} in your room", ref=ref)
        if banned:
            room.banned_peers = room.banned_peers | {target.id}
            if target.identity is not None:
                room.banned_identities = room.banned_identities | {target.identity}
        if target.knocking is room:
            self._decline(room, target, "the host declined your request to join", actions)
            return
        self._leave(target, "banned" if banned else "removed", actions)
        actions.append(Send(target.id, m.encode(m.Removed(room=room.id, banned=banned))))

    # ------------------------------------------------------------------ matchmaking

    def _match(self, client: Client, msg: m.MatchRequest, now: Now, actions: list[Action]) -> None:
        in_match_room = client.room is not None and client.room.match
        if client.queued is not None and not in_match_room and client.room is None:
            raise AlreadyJoined("you are already waiting for a match", ref="match")
        if (client.room is not None and not in_match_room) or client.knocking is not None:
            raise AlreadyJoined("leave your room before looking for a match", ref="match")
        self._check_may_match(client, now)
        if not msg.direct and not self.settings.ice.has_turn:
            # Without a relay the only path between strangers is direct, which shows each the
            # other's IP address: only those who consented (`direct: true`) may be paired.
            raise TurnUnavailable("this server has no relay, so strangers see each other's IP "
                                  "address: send `direct: true` to consent, or talk to no stranger here",
                                  ref="match")
        if in_match_room:
            self._leave_match_room(client, actions)
        client.name, client.rollback = msg.name, msg.rollback
        client.queued = msg
        self._enqueue(client, now, actions)

    def _next(self, client: Client, blocked: str | None, now: Now, actions: list[Action]) -> None:
        ref = "block" if blocked is not None else "next"
        if client.queued is None:
            if blocked is not None:
                return  # remembered in client.avoid; nothing else to do outside matchmaking
            raise NotQueued("you are not in a match nor waiting for one", ref=ref)
        if client.room is None:
            # Still waiting: nobody to skip. A new block must reach the waiting ticket, so re-queue.
            if blocked is not None and self.queue.cancel(client.id):
                self._enqueue(client, now, actions)
            else:
                actions.append(Send(client.id, m.encode(m.Queued())))
            return
        if blocked is None:  # a block always goes through; queueing again may not
            self._check_may_match(client, now, ref)
        self._leave_match_room(client, actions)
        self._enqueue(client, now, actions)

    def _leave_match_room(self, client: Client, actions: list[Action]) -> None:
        room = client.room
        assert room is not None
        client.remember_to_avoid(room.members)
        self._leave(client, "left", actions)
        actions.append(Send(client.id, m.encode(m.Left(room=room.id))))

    def _enqueue(self, client: Client, now: Now, actions: list[Action]) -> None:
        request = client.queued
        assert request is not None
        for match in self.queue.tick(now.monotonic):
            self._start_match(match, now, actions)
        actions.append(Send(client.id, m.encode(m.Queued())))
        for match in self.queue.enqueue(self._ticket(client, request, now.monotonic)):
            self._start_match(match, now, actions)

    def start_decided(self, match: Match, now: Now) -> list[Action]:
        """Cluster mode: a match from ``decided``, committed: the two meet now. If one of them
        left meanwhile (hung up, or stopped), the other waits again, as a new arrival."""
        actions: list[Action] = []
        if len(self._awaiting(match)) == 2:
            self._meet(match, now, actions)
            return actions
        return self.requeue_decided(match, now)

    def requeue_decided(self, match: Match, now: Now) -> list[Action]:
        """Cluster mode: a match from ``decided`` that could not be committed (its tickets were
        lost with Redis's data): whoever of the two still waits is queued again, as a new arrival."""
        actions: list[Action] = []
        for client in self._awaiting(match):
            assert client.queued is not None
            for again in self.queue.enqueue(self._ticket(client, client.queued, now.monotonic)):
                self._start_match(again, now, actions)
        return actions

    def _awaiting(self, match: Match) -> list[Client]:
        """The sides of a decided match still waiting for it (not gone, stopped or elsewhere)."""
        pair = [self.clients.get(peer) for peer in (match.first, match.second)]
        return [c for c in pair if c is not None and c.queued is not None and c.room is None
                and c.knocking is None and c.id not in self.queue]

    def _start_match(self, match: Match, now: Now, actions: list[Action]) -> None:
        """The queue paired two strangers: they meet, or in cluster mode the match waits in
        ``decided`` for its commit."""
        if self.defer_matches:
            self.decided.append(match)
        else:
            self._meet(match, now, actions)

    def _meet(self, match: Match, now: Now, actions: list[Action]) -> None:
        """Two strangers meet in a fresh private room; the one who waited longer is in first."""
        room_id = next(self._room_ids)
        self.matches_made += 1
        # Direct only if both consented; without a relay, `_match` let in only those who did.
        consented = all(self._consents_to_direct(peer) for peer in (match.first, match.second))
        room = self.rooms[room_id] = Room(room_id, 2, match=True,
                                          ice_transport_policy="all" if consented else "relay")
        first, second = self.clients[match.first], self.clients[match.second]
        first.partner = Partner(second.id, second.identity, now.unix)
        second.partner = Partner(first.id, first.identity, now.unix)
        for client in (first, second):
            self._admit(room, client, now, actions)

    def _ticket(self, client: Client, request: m.MatchRequest, enqueued_at: float) -> Ticket:
        return Ticket(
            peer=client.id,
            tags=frozenset(tag.strip().lower() for tag in request.tags if tag.strip()),
            language=request.language.lower() if request.language else None,
            # O(MAX_AVOIDED + blocks) at most, once per queueing.
            avoid=frozenset(client.avoid).union(self.blocks.get(client.identity or "", ())),
            enqueued_at=enqueued_at,
            identity=client.identity,
            text_only=request.text_only,
            accepts_text=request.accept_text,
        )

    def _consents_to_direct(self, peer: str) -> bool:
        request = self.clients[peer].queued
        return request is not None and request.direct


    # ------------------------------------------------------------------ identity and safety

    def _identify(self, client: Client, proven: ProvenIdentity | None, now: Now,
                  actions: list[Action]) -> None:
        if client.identity is not None:
            raise IdentityRefused("this connection already has an identity", ref="identify")
        if proven is None:
            raise IdentityRefused("the signature does not prove this key for this connection's "
                                  "challenge", ref="identify")
        standing = proven.standing
        if standing is None:
            if not safety.may_create_identity(proven.created_today_on_network,
                                              self.settings.new_identities_per_network):
                raise TooManyIdentities("too many new identities from your network today; "
                                        "try again tomorrow", ref="identify")
            standing = safety.Standing(proven.identity, created_at=now.unix)
            actions.append(CreateIdentity(standing, proven.network))
        warning = standing.warning
        if warning is not None:  # shown once, on this connect
            standing = dataclasses.replace(standing, warning=None)
            actions.append(SaveStanding(standing))
        client.identity = proven.identity
        self._identity_connections[proven.identity] = self._identity_connections.get(proven.identity, 0) + 1
        self.standings[proven.identity] = standing
        self.blocks.setdefault(proven.identity, set()).update(proven.blocks)
        left = safety.cooldown_left(standing, now.unix)
        actions.append(Send(client.id, m.encode(m.Identified(
            cooldown_until=standing.cooldown_until if left is not None else None,
            banned=standing.banned, warning=warning))))

    def _forget_identity_connection(self, identity: str) -> None:
        count = self._identity_connections.get(identity, 0) - 1
        if count > 0:
            self._identity_connections[identity] = count
            return
        self._identity_connections.pop(identity, None)
        self.standings.pop(identity, None)
        self.blocks.pop(identity, None)

    def _check_may_match(self, client: Client, now: Now, ref: str = "match") -> None:
        if client.identity is None:
            raise IdentityRequired("send `identify` before looking for a stranger", ref=ref)
        standing = self.standings[client.identity]
        if standing.banned:
            raise IdentityBanned("a moderator banned this identity from talking to strangers",
                                 ref=ref)
        left = safety.cooldown_left(standing, now.unix)
        if left is not None:
            seconds = math.ceil(left)
            raise Cooldown(f"you can look for a stranger again in {_duration(seconds)}",
                           ref=ref, retry_after=seconds)

    def _partner(self, client: Client, peer: str, ref: str) -> Partner:
        """The current or last stranger of ``client`` if it is ``peer``; else peer-not-found."""
        partner = client.partner
        if partner is None or partner.peer != peer:
            raise PeerNotFound(f"{peer!r} is not your current or last stranger", ref=ref)
        if client.identity is None:
            raise IdentityRequired("send `identify` first", ref=ref)
        return partner

    def _block(self, client: Client, peer: str, now: Now, actions: list[Action]) -> None:
        """One-way and lasting when the blocked one is a stranger with an identity."""
        client.remember_to_avoid((peer,))
        partner = client.partner
        if partner is None or partner.peer != peer or partner.identity is None or client.identity is None:
            return
        blocker, blocked = client.identity, partner.identity
        if blocked in self.blocks.get(blocker, ()):
            return
        self.blocks.setdefault(blocker, set()).add(blocked)
        if blocked in self.blocks:  # loaded: its connections must avoid the blocker too
            self.blocks[blocked].add(blocker)
        actions.append(SaveBlock(blocker, blocked, now.unix))

    def _rate(self, client: Client, msg: m.Rate, now: Now, actions: list[Action]) -> None:
        partner = self._partner(client, msg.peer, "rate")
        if partner.rated:
            raise BadField("you already rated this call (field `peer`)", ref="rate")
        if partner.identity is None or client.identity is None:
            raise PeerNotFound("that stranger has no identity to rate", ref="rate")
        weight, fresh = safety.rating_weight(self.standings[client.identity], now.unix)
        partner.rated = True
        rating = safety.Rating(client.identity, partner.identity, msg.good, weight, fresh, now.unix)
        target = self.standings.get(partner.identity)
        if target is not None:  # connected here: the rule holds from the next message on
            self.standings[partner.identity] = safety.apply_rating(target, rating)
        actions.append(SaveRating(rating))
        actions.append(Send(client.id, _NOTED_RATE))

    def _report(self, client: Client, msg: m.Report, now: Now, actions: list[Action]) -> None:
        partner = self._partner(client, msg.peer, "report")
        if partner.reported:
            raise BadField("you already reported this call (field `peer`)", ref="report")
        if partner.identity is None or client.identity is None:
            raise PeerNotFound("that stranger has no identity to report", ref="report")
        partner.reported = True
        ended = partner.ended_at if partner.ended_at is not None else now.unix
        actions.append(SaveReport(client.identity, partner.identity, safety.ReportReason(msg.reason),
                                  msg.text.strip(), now.unix, max(0.0, ended - partner.started_at)))
        actions.append(Send(client.id, _NOTED_REPORT))

def _proves_host(room: Room, host_key: str | None) -> bool:
    """``host_key`` is the key of this restored room's absent host (compared in constant time)."""
    return (host_key is not None and room.host_reserved() and room.host_key_digest is not None
            and hmac.compare_digest(digest_secret(host_key), room.host_key_digest))


_NOTED_RATE = m.encode(m.Noted(ref="rate"))
_NOTED_REPORT = m.encode(m.Noted(ref="report"))
_NOTED_BLOCK = m.encode(m.Noted(ref="block"))


def _duration(seconds: int) -> str:
    """"59 min" or "23 h 59 min": the time left of a cooldown, in words."""
    minutes = max(1, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
