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

Rule 3: the newcomer offers. A joiner receives the members already present and sends each an
offer; the members wait. ``polite`` (perfect negotiation) is given per pair: the member already
present is polite unless it cannot roll back an offer (aiortc), then the newcomer is.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Iterator
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
    TooManyIdentities,
    TurnUnavailable,
    WrongPassword,
)
from ..protocol import messages as m
from . import safety
from .access import PasswordHash
from .actions import Action, CreateIdentity, SaveBlock, SaveRating, SaveReport, SaveStanding, Send
from .matchmaking import Match, MatchQueue, Ticket
from .timing import Now
from .turn import IceSettings, ice_servers_for

__all__ = ["CoreSettings", "Signalling", "Client", "Room", "Partner", "ProvenIdentity"]

LeaveReason = Literal["left", "disconnected", "removed", "banned"]
MAX_AVOIDED = 256


@dataclass(frozen=True, slots=True)
class CoreSettings:
    """Operator settings the core needs. Limits only echo into ``hello``; the shell enforces them."""

    max_peers: int = 8
    match_relax_seconds: float = 10.0
    ice: IceSettings = field(default_factory=IceSettings)
    new_identities_per_network: int = safety.NEW_IDENTITIES_PER_NETWORK_PER_DAY
    limits: m.Limits = field(
        default_factory=lambda: m.Limits(
            max_message_bytes=m.MAX_MESSAGE_BYTES, max_peers=8, rate_burst=400, rate_per_second=100.0,
            heartbeat_seconds=10.0,
        )
    )


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
    """One connection: a peer id, and where it stands (idle, knocking, in a room, or queued)."""

    id: str
    name: str = ""
    identity: str | None = None   # set by a proven `identify`; host bans and blocks use it
    rollback: bool = True
    partner: Partner | None = None
    room: Room | None = None
    knocking: Room | None = None
    queued: m.MatchRequest | None = None   # the request to re-use on `next`, while queued or matched
    # Peers this connection skipped or blocked: never matched again while it lives. Session-only,
    # oldest first, and capped so that a stream of `block`s cannot grow it without bound.
    avoid: tuple[str, ...] = ()

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
    # Empty and shared until someone is banned: most rooms never ban anyone.
    banned_identities: frozenset[str] = frozenset()
    banned_peers: frozenset[str] = frozenset()

    def rules(self) -> m.Rules:
        return m.Rules(locked=self.locked, lobby=self.lobby_on, password=self.password is not None,
                       max_peers=self.max_peers)


class Signalling:
    """All signalling state of one server process. See the module docstring."""

    def __init__(self, settings: CoreSettings, room_ids: Iterator[str]) -> None:
        self.settings = settings
        self.clients: dict[str, Client] = {}
        self.rooms: dict[str, Room] = {}
        self.queue = MatchQueue(relax_after=settings.match_relax_seconds)
        self._room_ids = room_ids
        self._hello_limits = settings.limits
        # Identities with at least one connection: their standing and lasting blocks (both
        # directions), loaded by the shell on `identify` and kept current by it.
        self.standings: dict[str, safety.Standing] = {}
        self.blocks: dict[str, set[str]] = {}
        self._identity_connections: dict[str, int] = {}
        # The latest wall-clock time the shell told us (any entry point with `now`): when a match
        # call ends through `disconnect`, which has no `now` of its own.
        self._last_unix = 0.0

    # ------------------------------------------------------------------ facts from the shell

    def connect(self, peer: str, challenge: str) -> list[Action]:
        """A connection opened; ``peer`` is its fresh random id, ``challenge`` its nonce to sign."""
        self.clients[peer] = Client(peer)
        hello = m.Hello(protocol=m.PROTOCOL_VERSION, peer=peer, limits=self._hello_limits,
                        relay=self.settings.ice.has_turn, challenge=challenge)
        return [Send(peer, m.encode(hello))]

    def standing_changed(self, standing: safety.Standing) -> None:
        """The stored standing of an identity changed (a rating, a moderator): keep ours current."""
        if standing.identity in self.standings:
            self.standings[standing.identity] = standing

    def disconnect(self, peer: str) -> list[Action]:
        """A connection closed or its heartbeat was lost: leave everything it was part of."""
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
        """Time passed: pair waiting users whose preferences relaxed."""
        self._last_unix = max(self._last_unix, now.unix)
        actions: list[Action] = []
        for match in self.queue.tick(now.monotonic):
            self._start_match(match, now, actions)
        return actions

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has work (monotonic seconds, as ``now.monotonic``), or None."""
        return self.queue.next_deadline()

    def route_signal(self, peer: str, to: str) -> str:
        """The relay's hot path: check that ``to`` shares ``peer``'s room, and return it.

        Raises:
            NotJoined: ``peer`` is in no room.
            PeerNotFound: ``to`` is not another member of that room (same answer whether or not it
                exists elsewhere, so a client cannot probe other rooms).
        """
        room = self.clients[peer].room
        if room is None:
            raise NotJoined("join a room before signalling", ref="signal")
        if to not in room.members or to == peer:
            raise PeerNotFound(f"no peer {to!r} in your room", ref="signal")
        return to

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
        if room is not None:
            refusal = self._admission(room, client, "join", join=msg, password=password)
            if refusal is not None:
                raise refusal
        client.name, client.rollback = msg.name, msg.rollback
        if room is None:
            room = self.rooms[msg.room] = Room(msg.room, self.settings.max_peers)
        elif room.lobby_on:
            room.lobby[client.id] = client
            client.knocking = room
            actions.append(Send(client.id, m.encode(m.Lobby(room=room.id))))
            assert room.host is not None
            actions.append(Send(room.host, self._knock(client)))
            return
        self._admit(room, client, now, actions)

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
        if len(room.members) >= room.max_peers:
            return RoomFull(f"this room is full ({room.max_peers} people)", ref=ref)
        return None

    def _let_in_from_lobby(self, room: Room, knocker: Client, now: Now, actions: list[Action]) -> None:
        del room.lobby[knocker.id]
        knocker.knocking = None
        self._admit(room, knocker, now, actions)

    def _admit(self, room: Room, client: Client, now: Now, actions: list[Action]) -> None:
        """Put ``client`` in ``room`` (admission decided: :meth:`_admission`) and tell everyone."""
        if room.host is None:
            room.host = client.id
        peers = [m.PeerInfo(id=o.id, name=o.name, polite=not o.rollback) for o in room.members.values()]
        servers, expires = ice_servers_for(self.settings.ice, client.id, now.unix)
        joined = m.Joined(room=room.id, you=client.id, host=room.host, peers=peers, rules=room.rules(),
                          ice_servers=servers, ice_expires_at=expires,
                          ice_transport_policy=room.ice_transport_policy, match=room.match)
        actions.append(Send(client.id, m.encode(joined)))
        # Each present member is polite toward the newcomer iff it can roll back: two payloads at most.
        notices = {
            polite: m.encode(m.PeerJoined(peer=m.PeerInfo(id=client.id, name=client.name, polite=polite)))
            for polite in (True, False)
        }
        for other in room.members.values():
            actions.append(Send(other.id, notices[other.rollback]))
        room.members[client.id] = client
        client.room = room

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
            self._forget(room, actions)
            return
        notice = m.encode(m.PeerLeft(peer=client.id, reason=reason))
        for other in room.members.values():
            actions.append(Send(other.id, notice))
        if room.host == client.id and not room.match:
            # The role passes to the longest-present member: the first in insertion order.
            room.host = next(iter(room.members))
            host_notice = m.encode(m.Host(peer=room.host))
            for other in room.members.values():
                actions.append(Send(other.id, host_notice))
            for knocker in room.lobby.values():
                actions.append(Send(room.host, self._knock(knocker)))

    def _forget(self, room: Room, actions: list[Action]) -> None:
        """The last member left: drop the room, its rules and bans; knockers are turned away."""
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
        if not room.members and not room.lobby:
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
        ticket = Ticket(
            peer=client.id,
            tags=frozenset(tag.strip().lower() for tag in request.tags if tag.strip()),
            language=request.language.lower() if request.language else None,
            # O(MAX_AVOIDED + blocks) at most, once per queueing.
            avoid=frozenset(client.avoid).union(self.blocks.get(client.identity or "", ())),
            enqueued_at=now.monotonic,
            identity=client.identity,
        )
        actions.append(Send(client.id, m.encode(m.Queued())))
        for match in self.queue.enqueue(ticket):
            self._start_match(match, now, actions)

    def _start_match(self, match: Match, now: Now, actions: list[Action]) -> None:
        """Two strangers meet in a fresh private room; the one who waited longer is in first."""
        room_id = next(self._room_ids)
        # Direct only if both consented; without a relay, `_match` let in only those who did.
        consented = all(self._consents_to_direct(peer) for peer in (match.first, match.second))
        room = self.rooms[room_id] = Room(room_id, 2, match=True,
                                          ice_transport_policy="all" if consented else "relay")
        first, second = self.clients[match.first], self.clients[match.second]
        first.partner = Partner(second.id, second.identity, now.unix)
        second.partner = Partner(first.id, first.identity, now.unix)
        for client in (first, second):
            self._admit(room, client, now, actions)

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


_NOTED_RATE = m.encode(m.Noted(ref="rate"))
_NOTED_REPORT = m.encode(m.Noted(ref="report"))
_NOTED_BLOCK = m.encode(m.Noted(ref="block"))


def _duration(seconds: int) -> str:
    """"59 min" or "23 h 59 min": the time left of a cooldown, in words."""
    minutes = max(1, math.ceil(seconds / 60))
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
