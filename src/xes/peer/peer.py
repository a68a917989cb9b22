"""The Python peer: one signalling connection, one room, a full mesh of aiortc links.

::

    async with Peer("http://127.0.0.1:8000", name="bot", audio=open_file_source("hi.wav")) as peer:
        room = await peer.join("Jf3kq8ZC0yB1o5uVhYx1Aw")
        async for event in peer.events():
            print(event)

It speaks docs/protocol.md exactly as the browser does, with one declared difference: it joins
with ``"rollback": false`` because aiortc cannot roll back an offer, and the server then makes
the other side polite toward it (see :mod:`xes.peer.connection`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Literal, assert_never

import ifaddr
import msgspec
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
)
from aiortc.contrib.media import MediaRelay
from aiortc.rtcconfiguration import RTCIceTransportPolicy
from aiortc.rtcicetransport import parse_stun_turn_uri

from xes.peer.audio import AudioTap, RemoteAudio
from xes.peer.connection import Link, LinkState, Route
from xes.peer.errors import (
    ConnectionLost,
    JoinRefused,
    PeerError,
    ServerProtocolError,
    ServerUnreachable,
)
from xes.peer.events import (
    AudioStarted,
    ChatReceived,
    Disconnected,
    Event,
    HostChanged,
    Joined,
    Knocked,
    LinkChanged,
    PeerJoined,
    PeerLeft,
    Queued,
    Reconnected,
    Reconnecting,
    Resumed,
    RoomLeft,
    RulesChanged,
    SafetyAlert,
    SafetyCodeChanged,
    ServerError,
    WaitingInLobby,
)
from xes.peer.identity import PeerIdentity
from xes.peer.links import ROOM_ID_PATTERN, is_loopback_url, resolve_room, websocket_url
from xes.peer.signalling import Incoming, SignallingClient
from xes.peer.verify import RoomVerifier
from xes.protocol import messages as m
from xes.protocol.codes import CloseCode, ErrorCode

__all__ = ["Peer", "RemotePeer", "Room", "ReportReason"]

# The reasons a stranger may be reported for (docs/protocol.md, `report`).
ReportReason = Literal["harassment", "hate", "sexual-content", "under-18", "other"]

logger = logging.getLogger(__name__)

# Codes that answer a join or match. Anything else the server refuses surfaces as ServerError.
_JOIN_REFUSALS = frozenset({
    ErrorCode.ROOM_FULL, ErrorCode.ROOM_LOCKED, ErrorCode.PASSWORD_REQUIRED,
    ErrorCode.WRONG_PASSWORD, ErrorCode.BANNED, ErrorCode.DECLINED, ErrorCode.ALREADY_JOINED,
    ErrorCode.BAD_FIELD, ErrorCode.NOT_JOINED,
    # A match without consent to a direct connection, on a server with no relay.
    ErrorCode.TURN_UNAVAILABLE,
    # Safety (docs/moderation.md): no identity yet, banned by a moderator, or cooling down.
    ErrorCode.IDENTITY_REQUIRED, ErrorCode.IDENTITY_BANNED, ErrorCode.COOLDOWN,
})

# Ask for fresh TURN credentials this long before they expire.
_ICE_REFRESH_MARGIN = 60.0
CHAT_MAX_CHARS = 4000
"""Longest chat message, in characters after trimming (docs/protocol.md, "Between peers")."""

# Reconnecting (docs/protocol.md, "Sessions"): the n-th attempt in a row waits
# _FIRST_RETRY·2ⁿ seconds, at most _MAX_RETRY, times a random factor in [0.5, 1] (so clients cut off
# together do not return in lockstep); each attempt may take _ATTEMPT_TIMEOUT to connect and answer.
_FIRST_RETRY = 0.5
_MAX_RETRY = 2.0
_ATTEMPT_TIMEOUT = 5.0
# Watching for a network change: how often the host's addresses are read, and a change counts
# once they have stayed the same for one more reading (moving uplinks takes several steps).
_NETWORK_POLL = 0.2
# How the server ended a connection it will not take back: it shut us out (start afresh would just
# repeat it), or another connection resumed our session.
_FINAL_CLOSES = frozenset({
    CloseCode.FLOOD, CloseCode.TOO_MANY_ERRORS, CloseCode.MESSAGE_TOO_BIG, CloseCode.REPLACED,
})


class RemotePeer:
    """Another member of the room, as seen from here. Its fields change as the call goes on."""

    def __init__(self, peer_id: str, name: str, polite: bool, text_only: bool = False) -> None:
        self.id = peer_id
        self.name = name
        self.polite = polite
        """Our role toward this member for renegotiation (we never renegotiate; informative)."""
        self.text_only = text_only
        """A stranger who asked for a text chat: our link to it carries no audio either way."""
        self.link: Link | None = None
        self.audio = RemoteAudio()
        self.joined_at = time.monotonic()
        self.connected_at: float | None = None
        """``time.monotonic()`` when the link reached ``connected``, or None."""

    @property
    def state(self) -> LinkState:
        """The link's state (NEW before it exists)."""
        return self.link.state if self.link is not None else LinkState.NEW

    @property
    def route(self) -> Route | None:
        """DIRECT or RELAYED once connected, else None."""
        return self.link.route if self.link is not None else None

    @property
    def candidate_types(self) -> tuple[str, str] | None:
        """(local, remote) ICE candidate types of the selected pair, e.g. ("host", "host")."""
        return self.link.candidate_types if self.link is not None else None

    def listen(self) -> AudioTap:
        """A new aiortc track with this member's audio from now on; ``stop()`` it when done."""
        return self.audio.tap()

    def __repr__(self) -> str:
        return f"RemotePeer({self.name!r}, {self.id}, {self.state.value})"


@dataclass
class Room:
    """The room we are in, as the server described it in ``joined`` and later updates."""

    id: str
    you: str
    host: str | None
    """None while a room restored after a server restart waits for its host to come back."""
    rules: m.Rules
    match: bool
    peers: list[RemotePeer] = field(default_factory=list)
    """The members that were present when we joined, oldest first."""


class Peer:
    """A member of XES rooms that sends and receives audio with aiortc.

    Args:
        server: The server, as a page URL (``http://host:port``) or the WebSocket URL
            (``ws://host:port/ws``).
        name: The name others see.
        audio: The track to send to every member (see :mod:`xes.peer.audio`), or None to only
            listen. The peer stops it on close.
        relay: True forces every link through TURN (no one learns our address); False uses
            every path; None (default) follows the server's recommendation
            (``ice_transport_policy``: relay for calls with strangers).
        allow_loopback: Also offer a 127.0.0.1 host candidate, which aiortc leaves out. None
            (default) turns it on when the server itself is on a loopback address, i.e. when
            everyone in the call is on this machine. Tests rely on it.
        connect_timeout: Seconds a link may take to connect before it is reported failed.
        reconnect_for: Seconds to keep trying to reconnect after the signalling connection is
            lost (``Reconnecting``) before giving up (``Disconnected``); 0 gives up at once, as
            a version 1 client did. Links and audio go on meanwhile.
        identity: The pseudonymous identity proven on connect (host bans, blocks, ratings and
            moderators' decisions follow it); a fresh one per Peer by default. Keep one across
            runs with ``PeerIdentity.from_file(path)``. A resumed session keeps it; a fresh
            session (the server lost ours) proves it again.
        watch_network: Watch this host's addresses and, when they change (Wi-Fi to mobile data),
            call :meth:`network_changed` by itself.
    """

    def __init__(
        self,
        server: str,
        *,
        name: str = "python",
        audio: MediaStreamTrack | None = None,
        relay: bool | None = None,
        allow_loopback: bool | None = None,
        connect_timeout: float = 15.0,
        reconnect_for: float = 120.0,
        identity: PeerIdentity | None = None,
        watch_network: bool = True,
    ) -> None:
        self.ws_url = websocket_url(server)
        self.name = name
        self.relay = relay
        self.allow_loopback = (
            is_loopback_url(self.ws_url) if allow_loopback is None else allow_loopback
        )
        self.connect_timeout = connect_timeout
        self.reconnect_for = reconnect_for
        self.identity = identity or PeerIdentity.generate()
        self.identified: m.Identified | None = None
        """The server's answer to our ``identify`` (cooldown, ban, a moderator's warning)."""
        self.watch_network = watch_network
        self.room: Room | None = None
        self.text_only = False
        """Whether our last ``match`` asked for text only: our links then carry no audio."""
        self.members: dict[str, RemotePeer] = {}
        # Room id -> the secret the server gave us as that room's host (never logged): sent in
        # `join` so that after a server restart we get the host role back (docs/protocol.md).
        self._host_keys: dict[str, str] = {}
        """The other members of the room, by peer id."""
        self.ice_servers: list[m.IceServer] = []
        """The ICE (STUN/TURN) servers the server gave us last, used for every new link."""
        self.ice_transport_policy: Literal["all", "relay"] = "all"
        self._audio = audio
        self._relay_hub = MediaRelay()
        self._client: SignallingClient | None = None
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._receiver: asyncio.Task[None] | None = None
        self._ice_refresher: asyncio.Task[None] | None = None
        self._waiting_room: asyncio.Future[Room] | None = None
        self._waiting_left: asyncio.Future[None] | None = None
        self._verifier: RoomVerifier | None = None
        self._closed = False
        # The session (docs/protocol.md, "Sessions"): our id, which a resume keeps; the resume
        # token, a secret kept only here and never logged; the last `seq` handled.
        self._peer_id: str | None = None
        self._token: str | None = None
        self._last_seq = 0
        # The last `join`, to enter the room again if the server lost our session.
        self._last_join: m.Join | None = None
        # Members announced away, with their audio frame count at the last check.
        self._away: dict[str, int] = {}
        self._hearing: asyncio.Task[None] | None = None
        self._hearing_interval = 5.0
        self._network_watcher: asyncio.Task[None] | None = None
        # Old links waiting for their replacement to settle before they close.
        self._closing: set[asyncio.Task[None]] = set()
        # Every link whose connection is not closed yet, even one no member holds any more, so
        # that close() returns only once all their sockets are.
        self._open_links: set[Link] = set()
        # A network change asked for a new signalling connection: make it without a backoff,
        # and tell network_changed whether the session was resumed on it.
        self._renewing: asyncio.Future[bool] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Peer:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def id(self) -> str:
        """Our peer id, assigned by the server on connect (kept when the session resumes)."""
        if self._peer_id is None:
            raise PeerError("not connected")
        return self._peer_id

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the signalling connection.

        Raises:
            ServerUnreachable: If the server cannot be reached or does not speak XES.
        """
        self._client = await SignallingClient.connect(self.ws_url, timeout=timeout)
        self._start_session(self._client.hello)
        self._client.send(self.identity.identify(self._client.hello.challenge))
        try:
            async with asyncio.timeout(timeout):
                answer = await self._client.receive()
        except TimeoutError:
            self._client.abort()
            raise ServerUnreachable(f"{self.ws_url} did not answer identify within {timeout:g} s") from None
        if isinstance(answer, m.Error):
            await self._client.close()
            raise JoinRefused(ErrorCode(answer.code), answer.message)
        if not isinstance(answer, m.Identified):
            self._client.abort()
            raise ServerProtocolError(f"expected identified, got {answer!r}")
        self.identified = answer
        if isinstance(answer.seq, int):
            self._last_seq = answer.seq  # numbered like every later message: a replay skips it
        self._receiver = asyncio.ensure_future(self._receive_loop())
        if self.watch_network:
            self._network_watcher = asyncio.ensure_future(self._watch_network())

    async def close(self) -> None:
        """Leave the room (if in one), close every link and the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._client is not None and self.room is not None:
            with contextlib.suppress(PeerError, TimeoutError):
                async with asyncio.timeout(2):
                    await self.leave()
        await self._close_links()
        for task in (self._network_watcher, self._ice_refresher, self._hearing, self._receiver):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # A link the receive loop was closing when it was cancelled, or one closed in the
        # background, finishes closing here.
        for link in list(self._open_links):
            await link.close()
        if self._client is not None:
            await self._client.close()
        if self._audio is not None:
            self._audio.stop()
        self._events.put_nowait(None)

    # -- network changes ------------------------------------------------------------------------

    async def network_changed(self) -> None:
        """Our network changed (a new address: Wi-Fi to mobile data). Called by itself when
        ``watch_network`` is on.

        The signalling socket belongs to the old address and is dead without knowing it: drop it
        and resume the session on a new one at once (same peer id; nobody sees us leave). aiortc
        cannot restart ICE, so each link is then made anew: a fresh RTCPeerConnection, gathering
        on the network we have now, offered to the member, who takes an offer with a new DTLS
        certificate as a new link (docs/protocol.md, "A new link from a peer already linked").
        """
        if self._closed or self._client is None or self.reconnect_for <= 0:
            return
        if self._renewing is None or self._renewing.done():
            self._renewing = asyncio.get_running_loop().create_future()
            self._client.abort()
        renewing = self._renewing
        try:
            async with asyncio.timeout(self.reconnect_for):
                resumed = await asyncio.shield(renewing)
        except TimeoutError:
            return
        if not resumed or self._closed:
            return  # a fresh session rejoins, which makes every link anew anyway
        logger.info("! network changed: making %d link(s) anew", len(self.members))
        for member in list(self.members.values()):
            await self._renew_link(member, offer=True)

    async def _renew_link(self, member: RemotePeer, *, offer: bool) -> None:
        """Replace `member`'s link by a fresh one: offering on it (our network changed), or
        waiting for the member's offer (its network changed)."""
        old = member.link
        if self._verifier is not None:
            self._verifier.removed(member.id)  # new certificates: the codes are computed anew
        member.audio.detach()
        member.connected_at = None
        member.link = self._new_link(member)
        if old is None:
            pass
        elif offer:
            # Keep the old link until the new one is settled: closing it at once would end the
            # member's received track there before our offer reaches them, and with it the
            # taps of anyone listening (their side detaches the track when the offer arrives).
            task = asyncio.ensure_future(self._close_when_settled(old, member.link))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        else:
            await old.close()
        if offer:
            member.link.offer()

    async def _close_when_settled(self, old: Link, new: Link) -> None:
        deadline = time.monotonic() + self.connect_timeout
        settled = (LinkState.CONNECTED, LinkState.FAILED, LinkState.CLOSED)
        try:
            while new.state not in settled and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:  # also when the peer closes meanwhile (_close_links cancels this)
            await old.close()

    async def _watch_network(self) -> None:
        seen = _addresses()
        while True:
            await asyncio.sleep(_NETWORK_POLL)
            now = _addresses()
            if now == seen:
                continue
            while True:  # until it settles
                await asyncio.sleep(_NETWORK_POLL)
                again = _addresses()
                if again == now:
                    break
                now = again
            lost = seen - now
            seen = now
            # Only a lost address breaks our paths (a new VPN or container bridge does not);
            # with no address at all there is nowhere to go yet.
            if lost and now:
                logger.info("! this host lost an address")
                asyncio.ensure_future(self.network_changed())

    # -- safety codes (docs/verification.md) ---------------------------------------------------

    @property
    def safety_code(self) -> tuple[str, ...] | None:
        """The room's safety code (words), the same on every member's screen when nobody is in
        the middle; None until every link of every member is checked and attested."""
        return self._verifier.room_code if self._verifier is not None else None

    def link_code(self, member: RemotePeer | str) -> tuple[str, ...] | None:
        """The safety code of our link to `member` (the same on its screen), or None yet."""
        peer_id = member if isinstance(member, str) else member.id
        return self._verifier.link_code(peer_id) if self._verifier is not None else None

    # -- requests ----------------------------------------------------------------------------

    async def join(self, room: str, *, password: str | None = None) -> Room:
        """Enter a room (created if empty) and start connecting to everyone in it.

        Args:
            room: A room id, or a room link (only its id is used; the server is the one
                this peer is connected to).
            password: The room's password, if it has one.

        Returns:
            The room, with the members already present (links to them are starting).

        Raises:
            RoomLinkError: If `room` is not a room id or link.
            JoinRefused: If the server refuses (``.code``: room-full, room-locked,
                password-required, wrong-password, banned, declined).
            ConnectionLost: If the connection drops meanwhile.
            PeerError: If relay was forced but the server offers no TURN server.
        """
        room_id = room if ROOM_ID_PATTERN.fullmatch(room) else resolve_room(room).room_id
        try:
            message = m.Join(
                room=room_id, name=self.name, password=password, rollback=False,
                host_key=self._host_keys.get(room_id),
            )
        except ValueError as blank:  # the server's own check, made before sending
            raise JoinRefused(ErrorCode.BAD_FIELD, str(blank)) from None
        self.text_only = False  # a room is a voice call
        room_joined = await self._request_room(message)
        self._last_join = message
        return room_joined

    async def match(self, *, tags: Iterable[str] = (), language: str | None = None,
                    direct: bool = False, text_only: bool = False,
                    accept_text: bool = False) -> Room:
        """Queue for a stranger and return once paired (a fresh private room of two).

        Args:
            tags: Interests; strangers sharing one are paired first.
            language: A language to prefer.
            direct: Consent to a direct connection, which shows the stranger our IP address.
                Without it the call goes through the relay, and a server with no relay refuses.
            text_only: Ask for a text chat: paired only with text-only strangers and voice
                users who accept text, and no audio goes either way (the ``audio`` track is
                not sent). Talk with :meth:`send_chat` and :class:`ChatReceived` events.
            accept_text: As a voice user, accept being paired with a text-only stranger; that
                call is then a text chat (docs/protocol.md, "Text only").

        Raises:
            JoinRefused: If the server refuses (e.g. ``bad-field`` for a tag too long, or
                ``turn-unavailable`` without `direct` on a server with no relay).
            ConnectionLost: If the connection drops meanwhile.
        """
        try:
            message = m.MatchRequest(
                name=self.name, tags=list(tags), language=language, rollback=False,
                direct=direct, text_only=text_only, accept_text=accept_text and not text_only,
            )
        except ValueError as blank:  # the server's own check, made before sending
            raise JoinRefused(ErrorCode.BAD_FIELD, str(blank)) from None
        self.text_only = text_only
        return await self._request_room(message)

    async def leave(self) -> None:
        """Leave the room and close every link (waits for the server's ``left``)."""
        if self.room is None:
            return
        loop = asyncio.get_running_loop()
        self._waiting_left = loop.create_future()
        self._send(m.Leave())
        try:
            await self._waiting_left
        finally:
            self._waiting_left = None

    async def next(self) -> None:
        """Leave the current match and queue again (protocol ``next``)."""
        self._send(m.Next())

    def rate(self, peer_id: str, good: bool) -> None:
        """"Good call" (True) or "Bad call" about the current or last stranger (docs/moderation.md)."""
        self._send(m.Rate(peer=peer_id, good=good))

    def report(self, peer_id: str, reason: ReportReason, text: str = "") -> None:
        """Report the current or last stranger to the moderators, with a reason and optional text."""
        self._send(m.Report(peer=peer_id, reason=reason, text=text))

    def block(self, peer_id: str) -> None:
        """Never be paired with that stranger's identity again (one-way, lasting)."""
        self._send(m.Block(peer=peer_id))

    def admit(self, peer_id: str) -> None:
        """As host: let `peer_id` in from the lobby."""
        self._send(m.Admit(peer=peer_id))

    def decline(self, peer_id: str) -> None:
        """As host: turn `peer_id` away from the lobby."""
        self._send(m.Decline(peer=peer_id))

    def set_rules(
        self,
        *,
        locked: bool | msgspec.UnsetType = m.UNSET,
        lobby: bool | msgspec.UnsetType = m.UNSET,
        password: str | None | msgspec.UnsetType = m.UNSET,
        max_peers: int | msgspec.UnsetType = m.UNSET,
    ) -> None:
        """As host: change the rules named (``password=None`` clears it); the others stay."""
        self._send(m.SetRules(locked=locked, lobby=lobby, password=password, max_peers=max_peers))

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in order, until the peer closes or the connection drops."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)
                return
            yield event

    # -- internals ---------------------------------------------------------------------------

    def _send(self, message: m.ClientMessage) -> None:
        if self._client is None:
            raise PeerError("not connected: call connect() or use `async with Peer(...)`")
        self._client.send(message)

    async def _request_room(self, message: m.Join | m.MatchRequest) -> Room:
        if self._waiting_room is not None:
            raise PeerError("a join or match is already in progress")
        loop = asyncio.get_running_loop()
        self._waiting_room = loop.create_future()
        try:
            self._send(message)
            room = await self._waiting_room
        finally:
            self._waiting_room = None
        if self._relay_forced() and not self._turn_urls():
            await self.leave()
            raise PeerError("relay mode needs a TURN server, and this server offers none")
        return room

    def _emit(self, event: Event) -> None:
        self._events.put_nowait(event)

    async def _receive_loop(self) -> None:
        error: ConnectionLost | None = None
        try:
            while True:
                try:
                    await self._pump()
                except ConnectionLost as lost:
                    if self._closed or not self._may_resume(lost):
                        raise
                    await self._reconnect(lost)
        except ConnectionLost as lost:
            error = lost
        finally:
            if error is not None or not self._closed:
                for future in (self._waiting_room, self._waiting_left):
                    if future is not None and not future.done():
                        future.set_exception(
                            error or ConnectionLost("the signalling connection closed")
                        )
                await self._close_links()
                self.room = None
                self._emit(Disconnected(error))
                self._events.put_nowait(None)

    async def _pump(self) -> None:
        """Handle the current connection's messages until it is lost (raises ConnectionLost)."""
        assert self._client is not None
        while True:
            try:
                message = await self._client.receive()
            except ServerProtocolError as problem:  # one bad frame; the connection goes on
                logger.warning("! ignoring a message: %s", problem)
                continue
            if not isinstance(message, m.UnknownMessage) and isinstance(message.seq, int):
                # A replay after a resume can repeat what we handled before the socket went.
                if message.seq <= self._last_seq:
                    continue
                self._last_seq = message.seq
            await self._dispatch(message)

    def _may_resume(self, lost: ConnectionLost) -> bool:
        return self.reconnect_for > 0 and lost.close_code not in _FINAL_CLOSES

    def _start_session(self, hello: m.Hello) -> None:
        self._peer_id = hello.peer
        self._token = hello.resume
        self._last_seq = 0
        self._hearing_interval = hello.limits.resume_grace_seconds / 4

    async def _reconnect(self, lost: ConnectionLost) -> None:
        """Open a new connection and resume the session on it, or start a fresh one if the
        server no longer has it. Links are left alone throughout.

        Raises:
            ConnectionLost: If no connection could be made within ``reconnect_for`` seconds.
        """
        logger.info("! lost the server (%s); reconnecting", lost)
        self._emit(Reconnecting(lost))
        give_up_at = time.monotonic() + self.reconnect_for
        attempt = 0
        # 1012: the server restarts on purpose and keeps our session for its successor.
        # A network change: the old network is gone, the new one is up now.
        immediately = lost.close_code == CloseCode.SERVICE_RESTART or self._renewing is not None
        while True:
            if not (immediately and attempt == 0):
                ceiling = min(_MAX_RETRY, _FIRST_RETRY * 2 ** min(attempt, 16))
                await asyncio.sleep(ceiling * (0.5 + 0.5 * random.random()))
            attempt += 1
            try:
                client = await SignallingClient.connect(self.ws_url, timeout=_ATTEMPT_TIMEOUT)
                self._client = client
                async with asyncio.timeout(_ATTEMPT_TIMEOUT):
                    await self._resume_on(client)
                return
            except (ServerUnreachable, ServerProtocolError, ConnectionLost, TimeoutError) as why:
                logger.debug("! reconnect attempt %d failed: %s", attempt, why)
                if time.monotonic() >= give_up_at:
                    raise ConnectionLost(
                        f"{lost}; no new connection within {self.reconnect_for:g} s",
                        lost.close_code,
                    ) from None

    async def _resume_on(self, client: SignallingClient) -> None:
        assert self._peer_id is not None and self._token is not None
        client.send(m.Resume(peer=self._peer_id, token=self._token, last_seq=self._last_seq))
        answer = await client.receive()
        if isinstance(answer, m.Resumed):
            self._token = answer.resume  # the old one stopped working
            self._set_ice(answer.ice_servers, answer.ice_expires_at)
            away = set(answer.room.away) if answer.room is not None else set()
            for peer_id in list(self._away):
                if peer_id not in away:
                    self._away.pop(peer_id)
            for peer_id in away:
                self._watch_away(peer_id)
            logger.info("! session resumed as %s", self._peer_id)
            self._emit(Resumed(self._peer_id))
            self._renewed(True)
            return  # the replay follows as ordinary messages
        if isinstance(answer, m.Error) and answer.ref in ("resume", None):
            await self._session_lost(client.hello)
            self._renewed(False)
            return
        raise ServerProtocolError(f"expected resumed or error, got {answer!r}")

    def _renewed(self, resumed: bool) -> None:
        if self._renewing is not None and not self._renewing.done():
            self._renewing.set_result(resumed)
        self._renewing = None

    async def _session_lost(self, hello: m.Hello) -> None:
        """The server no longer has our session: carry on as the fresh one of `hello`."""
        self._start_session(hello)
        room = self.room
        self._away.clear()
        for future in (self._waiting_room, self._waiting_left):
            if future is not None and not future.done():
                future.set_exception(ConnectionLost("the server lost this session"))
        await self._close_links()
        self.room = None
        if room is not None:
            self._emit(RoomLeft(room.id, "disconnected"))
        logger.info("! the session was gone; continuing as %s", hello.peer)
        # The fresh session has no identity: prove ours on its challenge before anything else, so
        # that a rejoin still meets the room's bans (its answer comes through _dispatch).
        self._send(self.identity.identify(hello.challenge))
        self._emit(Reconnected(hello.peer))
        if room is not None and not room.match and self._last_join is not None:
            # Enter the same room again, as a newcomer: the `joined` comes through _dispatch. With
            # the host key we hold now, so a host gets its role back after a crash.
            self._send(msgspec.structs.replace(self._last_join, host_key=self._host_keys.get(room.id)))

    async def _dispatch(self, message: Incoming) -> None:
        # One case per server message: a new one in the protocol fails the type check here.
        match message:
            case m.Joined():
                await self._on_joined(message)
            case m.PeerJoined(peer=info):
                known = self.members.get(info.id)
                if known is not None and known.state not in (LinkState.FAILED, LinkState.CLOSED):
                    return  # a replay after a resume repeated a join we handled: keep the link
                self._emit(PeerJoined(self._add_member(info)))
            case m.PeerLeft(peer=peer_id, reason=reason):
                await self._on_peer_left(peer_id, reason)
            case m.RelayedSignal(sender=sender, data=data):
                member = self.members.get(sender)
                if member is None or member.link is None:
                    logger.debug("< ignoring signal from %s: not a member", sender)
                    return
                if _starts_new_link(member.link, data):
                    # The member made its link anew (its network changed): answer on a new one.
                    await self._renew_link(member, offer=False)
                    assert member.link is not None
                member.link.handle_signal(data)
            case m.Left(room=room_id):
                await self._on_room_left(room_id, "left")
            case m.Removed(room=room_id, banned=banned):
                await self._on_room_left(room_id, "banned" if banned else "removed")
            case m.Host(peer=peer_id, host_key=host_key):
                if self.room is not None:
                    self.room.host = peer_id
                    if host_key is not None:
                        self._host_keys[self.room.id] = host_key
                self._emit(HostChanged(peer_id))
            case m.RulesChanged(rules=rules):
                if self.room is not None:
                    self.room.rules = rules
                self._emit(RulesChanged(rules))
            case m.Lobby(room=room_id):
                self._emit(WaitingInLobby(room_id))
            case m.Knock(peer=knocker):
                self._emit(Knocked(knocker.id, knocker.name))
            case m.Queued():
                self._emit(Queued())
            case m.IceServers(ice_servers=servers, ice_expires_at=expires_at):
                self._set_ice(servers, expires_at)
            case m.Error():
                self._on_error(message)
            case m.PeerAway(peer=peer_id):
                if peer_id in self.members:
                    self._watch_away(peer_id)
            case m.PeerBack(peer=peer_id):
                self._away.pop(peer_id, None)
            case m.Identified():
                self.identified = message  # a fresh session's identity, proven again
            case m.Hello() | m.Resumed() | m.Unqueued() | m.KnockWithdrawn() | m.Noted():
                pass  # hello and resumed are read on connect; the others change nothing here
            case m.UnknownMessage(type=kind):
                logger.debug("< ignoring unknown message type %r", kind)  # a later server's
            case _:
                assert_never(message)

    async def _on_joined(self, message: m.Joined) -> None:
        self._set_ice(message.ice_servers, message.ice_expires_at)
        self.ice_transport_policy = message.ice_transport_policy
        if message.host_key is not None:
            self._host_keys[message.room] = message.host_key
        room = Room(
            id=message.room, you=message.you, host=message.host, rules=message.rules,
            match=message.match,
        )
        self.room = room
        self._verifier = RoomVerifier(
            message.you,
            members=lambda: {
                peer_id: member.link for peer_id, member in self.members.items()
                if member.link is not None
            },
            on_change=lambda: self._emit(SafetyCodeChanged(self.safety_code)),
            on_alert=lambda _key, text: self._emit(SafetyAlert(text)),
            name_of=lambda peer_id: (
                self.members[peer_id].name if peer_id in self.members else peer_id),
        )
        for info in message.peers:
            member = self._add_member(info)
            room.peers.append(member)
            assert member.link is not None
            member.link.offer()  # the newcomer offers to everyone already present
        self._emit(Joined(room))
        if self._waiting_room is not None and not self._waiting_room.done():
            self._waiting_room.set_result(room)

    async def _on_room_left(
        self, room_id: str, reason: Literal["left", "removed", "banned"]
    ) -> None:
        await self._close_links()
        self.room = None
        self._emit(RoomLeft(room_id, reason))
        if self._waiting_left is not None and not self._waiting_left.done():
            self._waiting_left.set_result(None)

    async def _on_peer_left(self, peer_id: str, reason: str) -> None:
        self._away.pop(peer_id, None)
        member = self.members.pop(peer_id, None)
        if member is None:
            return
        if self._verifier is not None:
            self._verifier.removed(peer_id)
        if member.link is not None:
            await member.link.close()
        await member.audio.close()
        self._emit(PeerLeft(member, reason))

    def _on_error(self, message: m.Error) -> None:
        code, text, ref = message.code, message.message or message.code, message.ref
        waiting = self._waiting_room
        if (
            waiting is not None and not waiting.done()
            and ref in ("join", "match", None) and code in _JOIN_REFUSALS
        ):
            waiting.set_exception(JoinRefused(ErrorCode(code), text))
            return
        logger.info("! server refused %r: %s (%s)", ref, text, code)
        self._emit(ServerError(code, text, ref))

    def _watch_away(self, peer_id: str) -> None:
        """Vouch for an away member while its audio keeps arriving (docs/protocol.md,
        "Sessions": `hearing` every quarter of the grace)."""
        member = self.members.get(peer_id)
        if member is None or peer_id in self._away:
            return
        self._away[peer_id] = member.audio.frames_received
        if self._hearing is None or self._hearing.done():
            self._hearing = asyncio.ensure_future(self._report_hearing())

    async def _report_hearing(self) -> None:
        while self._away:
            await asyncio.sleep(self._hearing_interval)
            for peer_id, before in list(self._away.items()):
                member = self.members.get(peer_id)
                if member is None or peer_id not in self._away:
                    self._away.pop(peer_id, None)
                    continue
                frames = member.audio.frames_received
                self._away[peer_id] = frames
                if frames > before:
                    with contextlib.suppress(PeerError):
                        self._send(m.Hearing(peer=peer_id))

    def _add_member(self, info: m.PeerInfo) -> RemotePeer:
        peer_id = info.id  # a valid id: msgspec checked it against ID_PATTERN on decode
        old = self.members.pop(peer_id, None)
        if old is not None and old.link is not None:
            asyncio.ensure_future(old.link.close())
        member = RemotePeer(peer_id, info.name, info.polite, info.text_only)
        member.link = self._new_link(member)
        self.members[peer_id] = member
        return member

    def _new_link(self, member: RemotePeer) -> Link:
        peer_id = member.id
        # A text chat (we or the stranger asked for text only) carries no audio either way.
        audio = not (self.text_only or member.text_only)
        source = (self._relay_hub.subscribe(self._audio)
                  if self._audio is not None and audio else None)

        def on_change(link: Link) -> None:
            if member.link is not None and member.link is not link:
                return  # a link replaced by a new one (network_changed) closing
            if link.state is LinkState.CONNECTED and member.connected_at is None:
                member.connected_at = time.monotonic()
            self._emit(LinkChanged(member, link.state, link.route))

        def on_track(track: MediaStreamTrack) -> None:
            member.audio.attach(track, on_first_frame=lambda: self._emit(AudioStarted(member)))

        link = Link(
            peer_id,
            configuration=self._configuration(),
            send_signal=lambda data: self._send_signal(peer_id, data),
            on_change=on_change,
            on_track=on_track,
            source=source,
            allow_loopback=self.allow_loopback,
            connect_timeout=self.connect_timeout,
            on_channel_open=self._channel_opened,
            on_data=self._data_received,
            audio=audio,
            on_closed=self._open_links.discard,
        )
        self._open_links.add(link)
        return link

    def _channel_opened(self, link: Link) -> None:
        member = self.members.get(link.remote_id)
        if self._verifier is not None and member is not None and member.link is link:
            self._verifier.channel_opened(link)

    def _data_received(self, link: Link, message: dict[str, object]) -> None:
        member = self.members.get(link.remote_id)
        if member is None or member.link is not link:
            return
        if message.get("type") == "chat":
            text = message.get("text")
            if isinstance(text, str) and 0 < len(text.strip()) <= CHAT_MAX_CHARS:
                self._emit(ChatReceived(member, text.strip()))
        elif self._verifier is not None:
            self._verifier.received(link, message)

    def send_chat(self, text: str) -> int:
        """Send a chat message to every member, one copy over each link's data channel.

        The server never sees it; nothing keeps it. Members whose channel is not open yet miss it.

        Returns:
            How many members it was sent to.

        Raises:
            ValueError: If `text` is blank or longer than CHAT_MAX_CHARS once trimmed.
        """
        text = text.strip()
        if not 0 < len(text) <= CHAT_MAX_CHARS:
            raise ValueError(f"a chat message is 1 to {CHAT_MAX_CHARS} characters after trimming")
        return sum(member.link.send_data({"type": "chat", "text": text})
                   for member in self.members.values() if member.link is not None)

    def _send_signal(self, peer_id: str, data: m.SignalData) -> None:
        if peer_id not in self.members:
            return  # it left while we were gathering
        with contextlib.suppress(ConnectionLost):
            self._send(m.signal_to(peer_id, data))

    async def _close_links(self) -> None:
        self._verifier = None
        closing, self._closing = list(self._closing), set()
        for task in closing:
            task.cancel()
        await asyncio.gather(*closing, return_exceptions=True)
        members, self.members = list(self.members.values()), {}
        for member in members:
            if member.link is not None:
                await member.link.close()
            await member.audio.close()

    def _relay_forced(self) -> bool:
        if self.relay is not None:
            return self.relay
        return self.ice_transport_policy == "relay"

    def _turn_urls(self) -> list[str]:
        return [
            url for server in self.ice_servers for url in server.urls
            if url.startswith(("turn:", "turns:"))
        ]

    def _configuration(self) -> RTCConfiguration:
        # Always an explicit list: RTCConfiguration() alone means Google's public STUN server.
        servers = []
        for server in self.ice_servers:
            urls = [url for url in server.urls if _aiortc_can_use(url)]
            if urls:
                servers.append(RTCIceServer(
                    urls=urls, username=server.username, credential=server.credential
                ))
        policy = RTCIceTransportPolicy.RELAY if self._relay_forced() else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)

    def _set_ice(self, servers: list[m.IceServer], expires_at: int | None) -> None:
        self.ice_servers = servers
        if self._ice_refresher is not None:
            self._ice_refresher.cancel()
            self._ice_refresher = None
        if expires_at is not None and self._turn_urls():
            self._ice_refresher = asyncio.ensure_future(self._refresh_ice_at(float(expires_at)))

    async def _refresh_ice_at(self, expires_at: float) -> None:
        # New links use the fresh credentials; aiortc cannot swap them on an existing link.
        await asyncio.sleep(max(1.0, expires_at - time.time() - _ICE_REFRESH_MARGIN))
        with contextlib.suppress(PeerError):
            self._send(m.IceRefresh())


def _starts_new_link(link: Link, data: m.SignalData) -> bool:
    """Whether `data` is an offer with another DTLS certificate than `link`'s remote end has:
    a new link from the member, not a renegotiation (docs/protocol.md, "A new link from a peer
    already linked")."""
    if data.description is None or data.description.type != "offer":
        return False
    current = link.peer_connection.remoteDescription
    if current is None:
        return False
    offered = _dtls_fingerprint(data.description.sdp)
    return offered is not None and offered != _dtls_fingerprint(current.sdp)


def _dtls_fingerprint(sdp: str) -> str | None:
    for line in sdp.splitlines():
        if line.lower().startswith("a=fingerprint:"):
            return line.split(":", 1)[1].strip().lower()
    return None


def _aiortc_can_use(url: str) -> bool:
    """Whether aiortc can parse an ICE server URL. It cannot read an IPv6 literal
    (``turn:[2001:db8::1]:3478``), which a dual-stack server hands out next to its IPv4 URLs;
    one such URL would fail every link, so it is left out (the others still work)."""
    try:
        parse_stun_turn_uri(url)
    except ValueError:
        logger.debug("! leaving out an ICE server URL aiortc cannot parse: %s", url)
        return False
    return True


def _addresses() -> frozenset[str]:
    """This host's addresses, loopback and link-local left out."""
    found: set[str] = set()
    for adapter in ifaddr.get_adapters():
        for address in adapter.ips:
            text = address.ip if isinstance(address.ip, str) else address.ip[0]
            if not (text.startswith("127.") or text == "::1" or text.lower().startswith("fe80")):
                found.add(text)
    return frozenset(found)
