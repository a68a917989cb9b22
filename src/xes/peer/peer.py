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
import secrets
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
)
from aiortc.contrib.media import MediaRelay
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from xes.peer.audio import AudioTap, RemoteAudio
from xes.peer.connection import Link, LinkState, Route
from xes.peer.errors import (
    ConnectionLost,
    JoinRefused,
    PeerError,
    ServerProtocolError,
)
from xes.peer.events import (
    AudioStarted,
    Disconnected,
    Event,
    HostChanged,
    Joined,
    Knocked,
    LinkChanged,
    PeerJoined,
    PeerLeft,
    Queued,
    RoomLeft,
    RulesChanged,
    ServerError,
    WaitingInLobby,
)
from xes.peer.links import ROOM_ID_PATTERN, is_loopback_url, resolve_room, websocket_url
from xes.peer.signalling import Message, SignallingClient

__all__ = ["Peer", "RemotePeer", "Room"]

logger = logging.getLogger(__name__)

# Codes that answer a join or match. Anything else the server refuses surfaces as ServerError.
_JOIN_REFUSALS = frozenset({
    "room-full", "room-locked", "password-required", "wrong-password", "banned", "declined",
    "already-joined", "bad-field", "not-joined",
    # A match without consent to a direct connection, on a server with no relay.
    "turn-unavailable",
})

# Ask for fresh TURN credentials this long before they expire.
_ICE_REFRESH_MARGIN = 60.0


class RemotePeer:
    """Another member of the room, as seen from here. Its fields change as the call goes on."""

    def __init__(self, peer_id: str, name: str, polite: bool) -> None:
        self.id = peer_id
        self.name = name
        self.polite = polite
        """Our role toward this member for renegotiation (we never renegotiate; informative)."""
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
    host: str
    rules: dict[str, Any]
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
        key: The ban key sent with join/match (16-128 characters); random per Peer by default.
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
        key: str | None = None,
    ) -> None:
        self.ws_url = websocket_url(server)
        self.name = name
        self.relay = relay
        self.allow_loopback = (
            is_loopback_url(self.ws_url) if allow_loopback is None else allow_loopback
        )
        self.connect_timeout = connect_timeout
        self.key = key or secrets.token_urlsafe(24)
        self.room: Room | None = None
        self.members: dict[str, RemotePeer] = {}
        """The other members of the room, by peer id."""
        self.ice_servers: list[dict[str, Any]] = []
        self.ice_transport_policy = "all"
        self._audio = audio
        self._relay_hub = MediaRelay()
        self._client: SignallingClient | None = None
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._receiver: asyncio.Task[None] | None = None
        self._ice_refresher: asyncio.Task[None] | None = None
        self._waiting_room: asyncio.Future[Room] | None = None
        self._waiting_left: asyncio.Future[None] | None = None
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Peer:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def id(self) -> str:
        """Our peer id, assigned by the server on connect."""
        if self._client is None:
            raise PeerError("not connected")
        return self._client.peer_id

    async def connect(self, timeout: float = 10.0) -> None:
        """Open the signalling connection.

        Raises:
            ServerUnreachable: If the server cannot be reached or does not speak XES.
        """
        self._client = await SignallingClient.connect(self.ws_url, timeout=timeout)
        self._receiver = asyncio.ensure_future(self._receive_loop())

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
        for task in (self._ice_refresher, self._receiver):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._client is not None:
            await self._client.close()
        if self._audio is not None:
            self._audio.stop()
        self._events.put_nowait(None)

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
        message: Message = {
            "type": "join", "room": room_id, "name": self.name, "key": self.key, "rollback": False,
        }
        if password is not None:
            message["password"] = password
        return await self._request_room(message)

    async def match(self, *, tags: Iterable[str] = (), language: str | None = None,
                    direct: bool = False) -> Room:
        """Queue for a stranger and return once paired (a fresh private room of two).

        Args:
            tags: Interests; strangers sharing one are paired first.
            language: A language to prefer.
            direct: Consent to a direct connection, which shows the stranger our IP address.
                Without it the call goes through the relay, and a server with no relay refuses.

        Raises:
            JoinRefused: If the server refuses (e.g. ``bad-field`` for a tag too long, or
                ``turn-unavailable`` without `direct` on a server with no relay).
            ConnectionLost: If the connection drops meanwhile.
        """
        message: Message = {
            "type": "match", "name": self.name, "key": self.key, "rollback": False,
            "tags": list(tags), "direct": direct,
        }
        if language is not None:
            message["language"] = language
        return await self._request_room(message)

    async def leave(self) -> None:
        """Leave the room and close every link (waits for the server's ``left``)."""
        if self.room is None:
            return
        loop = asyncio.get_running_loop()
        self._waiting_left = loop.create_future()
        self._send({"type": "leave"})
        try:
            await self._waiting_left
        finally:
            self._waiting_left = None

    async def next(self) -> None:
        """Leave the current match and queue again (protocol ``next``)."""
        self._send({"type": "next"})

    def admit(self, peer_id: str) -> None:
        """As host: let `peer_id` in from the lobby."""
        self._send({"type": "admit", "peer": peer_id})

    def decline(self, peer_id: str) -> None:
        """As host: turn `peer_id` away from the lobby."""
        self._send({"type": "decline", "peer": peer_id})

    def set_rules(self, **rules: Any) -> None:
        """As host: change rules (``locked``, ``lobby``, ``password``, ``max_peers``)."""
        self._send({"type": "set-rules", **rules})

    async def events(self) -> AsyncIterator[Event]:
        """Every event, in order, until the peer closes or the connection drops."""
        while True:
            event = await self._events.get()
            if event is None:
                self._events.put_nowait(None)
                return
            yield event

    # -- internals ---------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        if self._client is None:
            raise PeerError("not connected: call connect() or use `async with Peer(...)`")
        self._client.send(message)

    async def _request_room(self, message: Message) -> Room:
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
        assert self._client is not None
        error: ConnectionLost | None = None
        try:
            while True:
                message = await self._client.receive()
                try:
                    await self._dispatch(message)
                except (KeyError, TypeError, ValueError, ServerProtocolError) as problem:
                    logger.warning("! malformed %r from server: %s", message.get("type"), problem)
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

    async def _dispatch(self, message: Message) -> None:
        kind = message["type"]
        if kind == "joined":
            await self._on_joined(message)
        elif kind == "peer-joined":
            self._on_peer_joined(message["peer"])
        elif kind == "peer-left":
            await self._on_peer_left(str(message["peer"]), str(message.get("reason", "left")))
        elif kind == "signal":
            member = self.members.get(str(message["from"]))
            data = message.get("data")
            if member is None or member.link is None or not isinstance(data, dict):
                logger.debug("< ignoring signal from %r", message.get("from"))
                return
            member.link.handle_signal(data)
        elif kind in ("left", "removed"):
            room_id = self.room.id if self.room is not None else str(message.get("room"))
            await self._close_links()
            self.room = None
            reason = "left" if kind == "left" else (
                "banned" if message.get("banned") else "removed"
            )
            self._emit(RoomLeft(room_id, reason))
            if self._waiting_left is not None and not self._waiting_left.done():
                self._waiting_left.set_result(None)
        elif kind == "host":
            if self.room is not None:
                self.room.host = str(message["peer"])
            self._emit(HostChanged(str(message["peer"])))
        elif kind == "rules":
            if self.room is not None:
                self.room.rules = dict(message["rules"])
            self._emit(RulesChanged(dict(message["rules"])))
        elif kind == "lobby":
            self._emit(WaitingInLobby(str(message["room"])))
        elif kind == "knock":
            self._emit(Knocked(str(message["peer"]["id"]), str(message["peer"]["name"])))
        elif kind == "queued":
            self._emit(Queued())
        elif kind == "ice-servers":
            self._set_ice(message)
        elif kind == "error":
            self._on_error(message)
        elif kind in ("hello", "unqueued", "knock-withdrawn"):
            pass
        else:
            logger.debug("< ignoring unknown message type %r", kind)

    async def _on_joined(self, message: Message) -> None:
        self._set_ice(message)
        policy = message.get("ice_transport_policy")
        self.ice_transport_policy = policy if policy in ("all", "relay") else "all"
        room = Room(
            id=str(message["room"]), you=str(message["you"]), host=str(message["host"]),
            rules=dict(message.get("rules") or {}), match=bool(message.get("match")),
        )
        self.room = room
        for entry in message["peers"]:
            member = self._add_member(entry)
            room.peers.append(member)
            assert member.link is not None
            member.link.offer()  # the newcomer offers to everyone already present
        self._emit(Joined(room))
        if self._waiting_room is not None and not self._waiting_room.done():
            self._waiting_room.set_result(room)

    def _on_peer_joined(self, entry: dict[str, Any]) -> None:
        member = self._add_member(entry)
        self._emit(PeerJoined(member))

    async def _on_peer_left(self, peer_id: str, reason: str) -> None:
        member = self.members.pop(peer_id, None)
        if member is None:
            return
        if member.link is not None:
            await member.link.close()
        await member.audio.close()
        self._emit(PeerLeft(member, reason))

    def _on_error(self, message: Message) -> None:
        code = str(message.get("code"))
        text = str(message.get("message") or code)
        ref = message.get("ref")
        waiting = self._waiting_room
        if (
            waiting is not None and not waiting.done()
            and ref in ("join", "match", None) and code in _JOIN_REFUSALS
        ):
            waiting.set_exception(JoinRefused(code, text))
            return
        logger.info("! server refused %r: %s (%s)", ref, text, code)
        self._emit(ServerError(code, text, ref if isinstance(ref, str) else None))

    def _add_member(self, entry: dict[str, Any]) -> RemotePeer:
        peer_id = str(entry["id"])
        if not ROOM_ID_PATTERN.fullmatch(peer_id):
            raise ServerProtocolError(f"bad peer id {peer_id!r}")
        old = self.members.pop(peer_id, None)
        if old is not None and old.link is not None:
            asyncio.ensure_future(old.link.close())
        member = RemotePeer(peer_id, str(entry.get("name", "")), bool(entry.get("polite")))
        source = self._relay_hub.subscribe(self._audio) if self._audio is not None else None

        def on_change(link: Link) -> None:
            if link.state is LinkState.CONNECTED and member.connected_at is None:
                member.connected_at = time.monotonic()
            self._emit(LinkChanged(member, link.state, link.route))

        def on_track(track: MediaStreamTrack) -> None:
            member.audio.attach(track, on_first_frame=lambda: self._emit(AudioStarted(member)))

        member.link = Link(
            peer_id,
            configuration=self._configuration(),
            send_signal=lambda data: self._send_signal(peer_id, data),
            on_change=on_change,
            on_track=on_track,
            source=source,
            allow_loopback=self.allow_loopback,
            connect_timeout=self.connect_timeout,
        )
        self.members[peer_id] = member
        return member

    def _send_signal(self, peer_id: str, data: dict[str, Any]) -> None:
        if peer_id not in self.members:
            return  # it left while we were gathering
        with contextlib.suppress(ConnectionLost):
            self._send({"type": "signal", "to": peer_id, "data": data})

    async def _close_links(self) -> None:
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
            url for server in self.ice_servers for url in _urls(server)
            if url.startswith(("turn:", "turns:"))
        ]

    def _configuration(self) -> RTCConfiguration:
        # Always an explicit list: RTCConfiguration() alone means Google's public STUN server.
        servers = [
            RTCIceServer(
                urls=_urls(server),
                username=server.get("username"),
                credential=server.get("credential"),
            )
            for server in self.ice_servers
        ]
        policy = RTCIceTransportPolicy.RELAY if self._relay_forced() else RTCIceTransportPolicy.ALL
        return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)

    def _set_ice(self, message: Message) -> None:
        servers = message.get("ice_servers")
        if isinstance(servers, list):
            self.ice_servers = [server for server in servers if isinstance(server, dict)]
        expires_at = message.get("ice_expires_at")
        if self._ice_refresher is not None:
            self._ice_refresher.cancel()
            self._ice_refresher = None
        if isinstance(expires_at, (int, float)) and self._turn_urls():
            self._ice_refresher = asyncio.ensure_future(self._refresh_ice_at(float(expires_at)))

    async def _refresh_ice_at(self, expires_at: float) -> None:
        # New links use the fresh credentials; aiortc cannot swap them on an existing link.
        await asyncio.sleep(max(1.0, expires_at - time.time() - _ICE_REFRESH_MARGIN))
        with contextlib.suppress(PeerError):
            self._send({"type": "ice-refresh"})


def _urls(server: dict[str, Any]) -> list[str]:
    urls = server.get("urls")
    if isinstance(urls, str):
        return [urls]
    if isinstance(urls, list):
        return [url for url in urls if isinstance(url, str)]
    return []
