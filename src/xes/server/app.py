"""The network shell around the signalling core: HTTP for the page, WebSocket for signalling.

One picows server answers both on one port: plain GETs (the page, its ES modules, ``/new``) straight
from the upgrade handler, and WebSocket upgrades at ``/ws``. picows was chosen by measurement (see
README, "Why picows"): its per-frame callbacks let the relay path stay a few dictionary lookups and
one write. Everything that decides anything lives in :mod:`xes.core`; this module only moves bytes,
reads clocks and draws random ids.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Iterator
from http import HTTPStatus
from typing import Final, TypeGuard, cast
from urllib.parse import urlsplit

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from ..core.access import SALT_BYTES, PasswordHash, hash_password
from ..core.actions import Action, Send
from ..core.signalling import Signalling
from ..core.timing import Now
from ..errors import BadJson, SignallingError, TooBig
from ..protocol import messages as m
from ..protocol.codes import CloseCode
from .config import ServerSettings
from .static import SECURITY_HEADERS, StaticFile, load_web_client

__all__ = ["XesServer", "new_id", "CLOSE_TOO_MANY_ERRORS", "CLOSE_FLOOD", "CLOSE_GOING_AWAY"]

log = logging.getLogger("xes.server")

CLOSE_TOO_MANY_ERRORS: Final = CloseCode.TOO_MANY_ERRORS
CLOSE_FLOOD: Final = CloseCode.FLOOD
CLOSE_GOING_AWAY: Final = CloseCode.GOING_AWAY
_TEXT: Final = WSMsgType.TEXT
_ROOM_PATH_PREFIX: Final = b"/r/"
# Slow password hashes run in threads; two at a time keeps a guessing flood from eating the CPU.
_HASHING_SLOTS: Final = 2
_SWEEP_SECONDS: Final = 1.0
_CLOSE_GRACE_SECONDS: Final = 2.0


def new_id() -> str:
    """128 random bits as 22 base64url characters: peer and room ids (docs/protocol.md)."""
    return secrets.token_urlsafe(16)


def _now() -> Now:
    """The core's time (xes.core.timing): monotonic for its deadlines and queue, wall-clock
    only for TURN credential expiry, so a wall-clock step cannot reorder or break the queue."""
    return Now(monotonic=time.monotonic(), unix=time.time())


def _random_ids() -> Iterator[str]:
    while True:
        yield new_id()


class Connection(WSListener):
    """One signalling WebSocket. Holds only transport-level state; the rest is in the core.

    Rate limit and heartbeat cost the hot path two attribute writes: the server's once-a-second
    sweep (:meth:`XesServer._sweep`) refills ``tokens`` and ages ``idle``, instead of a clock read
    per frame and a ping task per connection.
    """

    __slots__ = ("server", "peer", "signal_head", "tokens", "idle", "pinged", "error_streak",
                 "backlog", "fragments", "transport")  # no __dict__: tens of thousands of these

    transport: WSTransport

    def __init__(self, server: XesServer) -> None:
        self.server = server
        self.peer = new_id()
        # The relayed `signal` frame's head, stamped with this sender once, not per message.
        self.signal_head = m.signal_head(self.peer)
        self.tokens = float(server.settings.rate_burst)
        self.idle = 0.0      # seconds since the last frame of any kind (pongs included)
        self.pinged = False
        self.error_streak = 0
        # While a password hashes off the loop, later frames wait here so order is kept.
        self.backlog: deque[bytes] | None = None
        self.fragments: bytearray | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.server.opened(self)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        self.idle = 0.0
        kind = frame.msg_type
        if kind is _TEXT and frame.fin:
            self.tokens -= 1.0
            if self.tokens >= 0.0:
                self.server.receive(self, frame.get_payload_as_memoryview())
            else:
                self.server.close(self, CLOSE_FLOOD, "message rate over the limit")
        elif kind is _TEXT or kind is WSMsgType.CONTINUATION:
            self._reassemble(frame)
        elif kind is WSMsgType.BINARY:
            self.tokens -= 1.0
            if self.tokens >= 0.0:
                self.server.refuse(self, BadJson("binary frames are not part of the protocol"))
            else:
                self.server.close(self, CLOSE_FLOOD, "message rate over the limit")
        elif kind is WSMsgType.CLOSE:
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def _reassemble(self, frame: WSFrame) -> None:
        """Fragmented text messages are legal WebSocket; rare in practice, so kept off the fast path."""
        if frame.msg_type is _TEXT:
            self.fragments = bytearray()
        if self.fragments is None:
            return
        self.fragments += frame.get_payload_as_memoryview()
        if len(self.fragments) > m.MAX_MESSAGE_BYTES:
            self.fragments = None
            self.server.refuse(self, TooBig(f"message over {m.MAX_MESSAGE_BYTES} bytes"))
        elif frame.fin:
            data, self.fragments = bytes(self.fragments), None
            self.tokens -= 1.0
            if self.tokens >= 0.0:
                self.server.receive(self, data)
            else:
                self.server.close(self, CLOSE_FLOOD, "message rate over the limit")

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server.closed(self)


class XesServer:
    """The XES server: owns the core, the open connections and the listening socket."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        limits = m.Limits(max_message_bytes=m.MAX_MESSAGE_BYTES, max_peers=settings.core.max_peers,
                          rate_burst=settings.rate_burst,
                          rate_per_second=settings.rate_per_second,
                          heartbeat_seconds=settings.heartbeat_seconds)
        # `hello` echoes the limits this shell enforces, so clients never hard-code them.
        self.core = Signalling(dataclasses.replace(settings.core, limits=limits), _random_ids())
        self.connections: dict[str, Connection] = {}
        self.static: dict[str, StaticFile] = load_web_client()
        self.debug = settings.debug
        self._server: asyncio.AbstractServer | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._last_sweep = 0.0
        # At least two sweeps per heartbeat, so detection stays within 2 × heartbeat + a sweep.
        self._sweep_seconds = min(_SWEEP_SECONDS, settings.heartbeat_seconds / 2)
        self._tick_at: float | None = None
        self._hashing = asyncio.Semaphore(_HASHING_SLOTS)
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        s = self.settings
        self._server = await ws_create_server(
            self._route, s.host, s.port,
            # Heartbeats come from one sweep for all connections, not a task per connection.
            enable_auto_ping=False,
            max_frame_size=s.hard_frame_limit,
            # picows's default 16 KiB read buffer per socket would dominate idle memory; it grows.
            read_buffer_init_size=2048,
            # aiofastnet (picows's default when installed) measured ~5 KB more per idle
            # connection here (15.5 vs 10.6 kB at 4,000) and no CPU gain within noise on the relay.
            use_aiofastnet=False,
            logger_name="server",
        )
        loop = asyncio.get_running_loop()
        self._last_sweep = loop.time()
        self._sweep_handle = loop.call_later(self._sweep_seconds, self._sweep)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def stop(self) -> None:
        """Close every connection (1001, going away) and stop listening."""
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections.values()):
            connection.transport.send_close(WSCloseCode.GOING_AWAY, b"server shutting down")
            connection.transport.disconnect()
        for handle in (self._tick_handle, self._sweep_handle):
            if handle is not None:
                handle.cancel()
        if self._server is not None:
            await self._server.wait_closed()

    # ------------------------------------------------------------------ HTTP and upgrades

    def _route(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        path = request.path.split(b"?", 1)[0]
        headers = request.headers
        if request.method != b"GET":
            return _http(HTTPStatus.METHOD_NOT_ALLOWED, b"Only GET is served here.\n", {"Allow": "GET"})
        if path == b"/ws":
            if headers.get("Upgrade", "").lower() != "websocket":
                return _http(HTTPStatus.UPGRADE_REQUIRED, b"This is the XES WebSocket endpoint.\n")
            if not self._origin_allowed(headers.get("Origin"), headers.get("Host")):
                return _http(HTTPStatus.FORBIDDEN, b"Origin not allowed.\n")
            return Connection(self)
        if path == b"/" or path.startswith(_ROOM_PATH_PREFIX):
            return self._file("index.html")
        if path.startswith(b"/static/"):
            return self._file(path[len(b"/static/"):].decode("ascii", "replace"))
        if path == b"/new":
            response = WSUpgradeResponse.create_redirect_response(
                HTTPStatus.SEE_OTHER, f"/r/{new_id()}", {"Cache-Control": "no-store"})
            return WSUpgradeResponseWithListener(response, None)
        if path == b"/healthz":
            return _http(HTTPStatus.OK, b"ok\n")
        if path == b"/favicon.ico" and "favicon.ico" not in self.static:
            return _http(HTTPStatus.NOT_FOUND, b"")
        return _http(HTTPStatus.NOT_FOUND, b"Not found.\n")

    def _file(self, name: str) -> WSUpgradeResponseWithListener:
        static = self.static.get(name)
        if static is None:
            return _http(HTTPStatus.NOT_FOUND, b"Not found.\n")
        headers = {"Content-Type": static.content_type, "Cache-Control": "no-cache",
                   "ETag": static.etag, **SECURITY_HEADERS}
        return WSUpgradeResponseWithListener(WSUpgradeResponse.create_ok_response(static.body, headers),
                                             None)

    def _origin_allowed(self, origin: str | None, host: str | None) -> bool:
        """Browsers always send Origin on a WebSocket; a page of another site must not get in.

        No Origin at all means a program, not a browser (the Python peer): cross-site WebSocket
        hijacking needs a victim's browser, so such clients pass.
        """
        if origin is None:
            return True
        if origin in self.settings.allowed_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and host is not None and parts.netloc == host

    # ------------------------------------------------------------------ WebSocket events

    def opened(self, connection: Connection) -> None:
        self.connections[connection.peer] = connection
        self.execute(self.core.connect(connection.peer))

    def closed(self, connection: Connection) -> None:
        if self.connections.pop(connection.peer, None) is not None:
            self.execute(self.core.disconnect(connection.peer))

    def receive(self, connection: Connection, data: bytes | memoryview) -> None:
        """One text message from a client. The ``signal`` branch is the hot path.

        ``data`` may be a view into picows's read buffer, valid only during this call: anything
        kept for later is copied.
        """
        if connection.backlog is not None:
            connection.backlog.append(bytes(data))
            return
        try:
            message = m.decode(data)
            if type(message) is m.Signal:
                to = self.core.route_signal(connection.peer, message.to)
                # docs/protocol.md `signal`: the sender stamped by us, `data` byte for byte.
                self.connections[to].transport.send(
                    _TEXT, b"".join((connection.signal_head, message.data, b"}")))
                if self.debug:
                    log.debug("< %s signal -> %s: %s", connection.peer, to, bytes(data))
            elif _needs_password_hash(message):
                connection.backlog = deque()
                task = asyncio.get_running_loop().create_task(self._with_password(connection, message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return
            else:
                if self.debug:
                    log.debug("< %s %s", connection.peer, bytes(data))
                self.execute(self.core.handle(connection.peer, message, _now()))
                if type(message) in _MATCH_MESSAGES:
                    self._schedule_tick()
        except SignallingError as exc:
            self.refuse(connection, exc)
            return
        connection.error_streak = 0

    async def _with_password(self, connection: Connection, message: m.Join | m.SetRules) -> None:
        try:
            hashed: PasswordHash | None = None
            async with self._hashing:
                if isinstance(message, m.Join):
                    salt = self.core.password_salt(message.room)
                    if salt is not None and message.password is not None:
                        hashed = await asyncio.to_thread(hash_password, message.password, salt)
                elif isinstance(message.password, str):
                    salt = secrets.token_bytes(SALT_BYTES)
                    hashed = await asyncio.to_thread(hash_password, message.password, salt)
            if connection.peer not in self.connections:
                return  # it left while we hashed
            self.execute(self.core.handle(connection.peer, message, _now(), password=hashed))
            connection.error_streak = 0
        except SignallingError as exc:
            self.refuse(connection, exc)
        finally:
            pending, connection.backlog = connection.backlog, None
            while pending:
                self.receive(connection, pending.popleft())
                if connection.backlog is not None:  # another hash started: keep the order
                    connection.backlog.extend(pending)
                    break

    def refuse(self, connection: Connection, exc: SignallingError) -> None:
        """Answer a refused message with a structured error; too many in a row close the socket."""
        error = m.Error(code=exc.code, message=exc.message, ref=exc.ref)
        connection.transport.send(_TEXT, m.encode(error))
        connection.error_streak += 1
        if connection.error_streak >= self.settings.error_streak_limit:
            self.close(connection, CLOSE_TOO_MANY_ERRORS, "too many errors in a row")

    def close(self, connection: Connection, code: int, reason: str) -> None:
        """Send a close frame and ignore whatever else the client sends; drop the TCP connection
        when it answers (see Connection.on_ws_frame) or after a grace period if it does not."""
        transport = connection.transport
        if transport.is_disconnected or transport.is_close_frame_sent:
            return
        connection.tokens = -math.inf  # every later frame takes the flood branch: ignored
        # picows accepts any code on the wire; its enum names only the standard ones.
        transport.send_close(cast(WSCloseCode, code), reason.encode())
        asyncio.get_running_loop().call_later(_CLOSE_GRACE_SECONDS, transport.disconnect)

    def execute(self, actions: list[Action]) -> None:
        """Carry out the core's commands, in order."""
        connections = self.connections
        for action in actions:
            if type(action) is Send:
                connection = connections.get(action.to)
                if connection is not None:
                    connection.transport.send(_TEXT, action.payload)
                    if self.debug:
                        log.debug("> %s %s", action.to, action.payload)

    # ------------------------------------------------------------------ rate limit and heartbeat

    def _sweep(self) -> None:
        """Once a second: refill every connection's message allowance, and ping or drop the idle.

        A connection silent for ``heartbeat_seconds`` is pinged; silent (no pong, nothing) for
        twice that, it is closed with 1001 and its room told. So a lost network is noticed within
        2 × heartbeat + one sweep, and a busy connection is never pinged at all.
        """
        loop = asyncio.get_running_loop()
        now = loop.time()
        elapsed, self._last_sweep = now - self._last_sweep, now
        settings = self.settings
        refill, burst = settings.rate_per_second * elapsed, float(settings.rate_burst)
        ping_after, drop_after = settings.heartbeat_seconds, 2 * settings.heartbeat_seconds
        for connection in list(self.connections.values()):
            tokens = connection.tokens + refill
            connection.tokens = burst if tokens > burst else tokens
            if connection.idle == 0.0:  # a frame (perhaps our ping's pong) since the last sweep
                connection.pinged = False
            idle = connection.idle = connection.idle + elapsed
            if idle >= drop_after:
                self.close(connection, CLOSE_GOING_AWAY, "heartbeat lost: no answer to ping")
            elif idle >= ping_after and not connection.pinged:
                connection.pinged = True
                connection.transport.send_ping()
        self._sweep_handle = loop.call_later(self._sweep_seconds, self._sweep)

    # ------------------------------------------------------------------ matchmaking timer

    def _schedule_tick(self) -> None:
        """Wake up when the earliest waiting user's preferences relax (one timer, not one each)."""
        deadline = self.core.next_deadline()
        if deadline is None or (self._tick_at is not None and self._tick_at <= deadline):
            return
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._tick_at = deadline
        delay = max(0.0, deadline - time.monotonic())  # deadlines are monotonic
        self._tick_handle = asyncio.get_running_loop().call_later(delay, self._tick)

    def _tick(self) -> None:
        self._tick_handle = self._tick_at = None
        self.execute(self.core.tick(_now()))
        self._schedule_tick()


_MATCH_MESSAGES: Final = frozenset({m.MatchRequest, m.Next, m.Block, m.Stop, m.Leave})


def _needs_password_hash(message: m.ClientMessage) -> TypeGuard[m.Join | m.SetRules]:
    """Messages carrying a password are hashed off the event loop first (see core.access)."""
    if type(message) is m.Join:
        return message.password is not None
    return type(message) is m.SetRules and isinstance(message.password, str)


def _http(status: HTTPStatus, body: bytes, extra: dict[str, str] | None = None
          ) -> WSUpgradeResponseWithListener:
    headers = {"Content-Type": "text/plain; charset=utf-8", **SECURITY_HEADERS, **(extra or {})}
    if status < 400:
        response = WSUpgradeResponse.create_ok_response(body, headers)
        response.status = status
    else:
        response = WSUpgradeResponse.create_error_response(status, body, headers)
    return WSUpgradeResponseWithListener(response, None)
