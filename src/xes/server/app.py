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
import sqlite3
import time
from collections import deque
from collections.abc import Coroutine, Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final, TypeGuard, cast
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

from ..core import safety
from ..core.access import SALT_BYTES, PasswordHash, hash_password
from ..core.actions import (
    Action,
    CreateIdentity,
    SaveBlock,
    SaveRating,
    SaveReport,
    SaveStanding,
    Send,
    StoreAction,
)
from ..core.signalling import ProvenIdentity, Signalling
from ..core.timing import Now
from ..errors import BadJson, SignallingError, TooBig
from ..protocol import messages as m
from ..protocol.codes import CloseCode
from .config import ServerSettings
from .identity import identity_hash, load_or_create_secret, network_hash, new_challenge, verify_identity
from .moderate import ModerationServer
from .static import SECURITY_HEADERS, StaticFile, load_web_client
from .storage import Database, Storage, open_database

__all__ = ["XesServer", "new_id", "CLOSE_TOO_MANY_ERRORS", "CLOSE_FLOOD", "CLOSE_GOING_AWAY",
           "CLOSE_NOT_READING", "CLOSE_INTERNAL_ERROR", "OUTGOING_LIMIT_BYTES"]

log = logging.getLogger("xes.server")

CLOSE_TOO_MANY_ERRORS: Final = CloseCode.TOO_MANY_ERRORS
CLOSE_FLOOD: Final = CloseCode.FLOOD
CLOSE_GOING_AWAY: Final = CloseCode.GOING_AWAY
# The client leaves more than OUTGOING_LIMIT_BYTES unread: it is dropped rather than buffered for.
CLOSE_NOT_READING: Final = CloseCode.NOT_READING
# An exception XES did not expect while handling one connection's event: that connection only.
CLOSE_INTERNAL_ERROR: Final = CloseCode.INTERNAL_ERROR
# Bytes the server holds for one connection that the socket would not take (docs/protocol.md,
# "Limits"). asyncio calls Connection.pause_writing once when a write goes past it.
OUTGOING_LIMIT_BYTES: Final = 1_048_576
_TEXT: Final = WSMsgType.TEXT
_ROOM_PATH_PREFIX: Final = b"/r/"
# Slow password hashes run in threads; two at a time keeps a guessing flood from eating the CPU.
_HASHING_SLOTS: Final = 2
_SWEEP_SECONDS: Final = 1.0
# How long a closed connection may take to answer our close frame before its TCP connection is
# aborted: a client that does not read would otherwise hold its socket (and buffer) for ever.
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
                 "backlog", "fragments", "transport", "challenge", "forwarded_for")  # no __dict__

    transport: WSTransport

    def __init__(self, server: XesServer, forwarded_for: str | None = None) -> None:
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
        # What `identify` must sign on this connection (sent in `hello`).
        self.challenge = new_challenge()
        # The client's address as the trusted proxy saw it (--trust-forwarded-for), else None.
        self.forwarded_for = forwarded_for

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        # Past this many unsent bytes asyncio calls pause_writing (once): see there.
        transport.underlying_transport.set_write_buffer_limits(high=OUTGOING_LIMIT_BYTES)
        try:
            self.server.opened(self)
        except Exception as exc:
            self.server.fail(self, exc)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        # A try block costs nothing in CPython 3.11 until something raises.
        try:
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
                # The client hangs up: its room hears now, not when (if ever) our reply drains.
                self.server.close(self, WSCloseCode.OK.value, "")
                transport.disconnect()
        except Exception as exc:
            self.server.fail(self, exc)

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

    def pause_writing(self) -> None:
        """More than OUTGOING_LIMIT_BYTES wait unsent: the client is not reading what we send.

        Buffering on would let one silent client grow the server without bound, so it is closed
        (4009) and its room told at once; see :meth:`XesServer.close`. Called from inside a
        ``transport.send``, so nothing more is written to it after this (picows ignores sends
        after a close frame).
        """
        try:
            self.server.close(self, CLOSE_NOT_READING, "not reading: outgoing buffer over 1 MiB")
        except Exception as exc:
            self.server.fail(self, exc)

    def resume_writing(self) -> None:
        """Never needed: a connection that paused is already closed."""

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        try:
            self.server.closed(self)
        except Exception as exc:
            self.server.fail(self, exc)


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
        # Actions produced while others are being carried out (a send that overflows a buffer
        # closes that connection, whose room must then be told): queued, so order is kept.
        self._executing = False
        self._pending: deque[Action] = deque()
        self.storage: Storage | None = None
        self._identity_secret = b""
        self._network_salt: tuple[int, bytes] | None = None
        self._retention_handle: asyncio.TimerHandle | None = None
        self.moderate_port: int | None = None
        self.moderation: ModerationServer | None = None

    # ------------------------------------------------------------------ lifecycle

    def _open_storage(self) -> tuple[Database, bytes]:
        s = self.settings
        if s.data_dir is None and s.database is None:
            db = Database(sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False),
                          "sqlite")
            db.migrate()
            return db, secrets.token_bytes(32)
        data_dir = s.data_dir if s.data_dir is not None else Path.cwd()
        secret_file = s.identity_secret_file or data_dir / "identity-secret"
        return open_database(s.database, data_dir), load_or_create_secret(secret_file)

    async def start(self) -> int:
        """Open the database (migrating it) and listen; returns the bound port (useful with port 0)."""
        s = self.settings
        database, self._identity_secret = await asyncio.to_thread(self._open_storage)
        self.storage = Storage(database)
        self._retain()
        if s.moderate_port is not None:
            self.moderation = ModerationServer(self.storage, self.core.standing_changed,
                                               secure=s.behind_tls)
            self.moderate_port = await self.moderation.start(s.moderate_host or s.host, s.moderate_port)
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
        """Close every connection (1001, going away) and stop listening.

        Clients get the close grace period to answer; whoever has not by then (one that does not
        read) is aborted, so stopping never waits on a client.
        """
        if self._server is not None:
            self._server.close()
        if self.moderation is not None:
            await self.moderation.stop()
        for handle in (self._tick_handle, self._sweep_handle, self._retention_handle):
            if handle is not None:
                handle.cancel()
        connections = list(self.connections.values())
        for connection in connections:
            connection.transport.send_close(WSCloseCode.GOING_AWAY, b"server shutting down")
            connection.transport.disconnect()
        for connection in connections:  # the core forgets them; nothing more is sent after a close
            self.closed(connection)
        if connections:
            gone = [asyncio.ensure_future(c.transport.wait_disconnected()) for c in connections]
            await asyncio.wait(gone, timeout=_CLOSE_GRACE_SECONDS)
            for connection in connections:
                _abort(connection.transport)
            _, stuck = await asyncio.wait(gone, timeout=_CLOSE_GRACE_SECONDS)  # aborts are prompt
            for waiter in stuck:
                waiter.cancel()
        if self._server is not None:
            await self._server.wait_closed()
        if self._tasks:  # writes already asked for are finished before the database closes
            await asyncio.wait(list(self._tasks), timeout=10)
        if self.storage is not None:
            await asyncio.to_thread(self.storage.close)
            self.storage = None

    # ------------------------------------------------------------------ HTTP and upgrades

    def _route(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        try:
            return self._route_request(request)
        except Exception as exc:
            # picows would answer with the exception's text: a bare 500 and a payload-free line.
            log.error("unexpected %s at %s while routing an HTTP request", type(exc).__name__,
                      _where(exc), exc_info=self.debug)
            return _http(HTTPStatus.INTERNAL_SERVER_ERROR, b"Internal error.\n")

    def _route_request(self, request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        path = request.path.split(b"?", 1)[0]
        headers = request.headers
        if request.method != b"GET":
            return _http(HTTPStatus.METHOD_NOT_ALLOWED, b"Only GET is served here.\n", {"Allow": "GET"})
        if path == b"/ws":
            if headers.get("Upgrade", "").lower() != "websocket":
                return _http(HTTPStatus.UPGRADE_REQUIRED, b"This is the XES WebSocket endpoint.\n")
            if not self._origin_allowed(headers.get("Origin"), headers.get("Host")):
                return _http(HTTPStatus.FORBIDDEN, b"Origin not allowed.\n")
            forwarded = headers.get("X-Forwarded-For") if self.settings.trust_forwarded_for else None
            # The proxy appends the address it saw: the last entry is the one it vouches for.
            return Connection(self, forwarded.rsplit(",", 1)[-1].strip() if forwarded else None)
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
        self.execute(self.core.connect(connection.peer, connection.challenge))

    def closed(self, connection: Connection) -> None:
        """The connection is gone, or is being closed: leave everything it was part of (once)."""
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
                relayed = b"".join((connection.signal_head, message.data, b"}"))
                # A text frame must be UTF-8 (a browser closes on anything else), and msgspec
                # skips `data` without checking. SDP is ASCII: one fast scan, rarely a decode.
                if not relayed.isascii():
                    m.check_utf8(relayed, "signal")
                self.connections[to].transport.send(_TEXT, relayed)
                if self.debug:
                    log.debug("< %s signal -> %s: %s", connection.peer, to, bytes(data))
            elif _needs_password_hash(message):
                self._off_loop(connection, self._with_password(connection, message))
                return
            elif type(message) is m.Identify:
                self._off_loop(connection, self._identify(connection, message))
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
        except Exception as exc:
            self.fail(connection, exc)
            return
        connection.error_streak = 0

    def _off_loop(self, connection: Connection, work: Coroutine[Any, Any, None]) -> None:
        """Run slow work for one message (a hash, the database); later messages wait, in order."""
        connection.backlog = deque()
        self._spawn(self._then_replay(connection, work))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _then_replay(self, connection: Connection, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
            connection.error_streak = 0
        except SignallingError as exc:
            if connection.peer in self.connections:
                self.refuse(connection, exc)
        except Exception as exc:
            self.fail(connection, exc)
        pending, connection.backlog = connection.backlog, None
        # Replay what arrived meanwhile, unless the connection went away meanwhile: the core has
        # forgotten its peer, and replaying for it would fail.
        while pending and connection.peer in self.connections:
            self.receive(connection, pending.popleft())
            if connection.backlog is not None:  # more slow work started: keep the order
                connection.backlog.extend(pending)
                break

    async def _with_password(self, connection: Connection, message: m.Join | m.SetRules) -> None:
        hashed: PasswordHash | None = None
        async with self._hashing:
            if isinstance(message, m.Join):
                salt = self.core.password_salt(message.room)
                if salt is not None and message.password is not None:
                    hashed = await asyncio.to_thread(hash_password, message.password, salt)
            elif isinstance(message.password, str):
                salt = secrets.token_bytes(SALT_BYTES)
                hashed = await asyncio.to_thread(hash_password, message.password, salt)
        if connection.peer in self.connections:  # it may have left while we hashed
            self.execute(self.core.handle(connection.peer, message, _now(), password=hashed))

    async def _identify(self, connection: Connection, message: m.Identify) -> None:
        """Check the signature, load what is stored about the identity, and let the core decide."""
        raw = verify_identity(message.public_key, message.signature, connection.challenge)
        proven: ProvenIdentity | None = None
        if raw is not None:
            assert self.storage is not None
            identity = identity_hash(self._identity_secret, raw)
            unix = time.time()
            day = safety.utc_day(unix)
            network = None
            address = connection.forwarded_for or _peer_address(connection.transport)
            if address is not None:
                if self._network_salt is None or self._network_salt[0] != day:
                    salt = await self.storage.run(self.storage.database.network_salt, day,
                                                  secrets.token_bytes(32))
                    self._network_salt = (day, salt)
                network = network_hash(self._network_salt[1], address)
            standing, blocks, created = await self.storage.run(
                self.storage.database.load_identity, identity, network, day, unix)
            proven = ProvenIdentity(identity, standing, blocks, network, created)
        if connection.peer in self.connections:
            self.execute(self.core.handle(connection.peer, message, _now(), proven=proven))

    def refuse(self, connection: Connection, exc: SignallingError) -> None:
        """Answer a refused message with a structured error; too many in a row close the socket."""
        error = m.Error(code=exc.code, message=exc.message, ref=exc.ref, retry_after=exc.retry_after)
        connection.transport.send(_TEXT, m.encode(error))
        connection.error_streak += 1
        if connection.error_streak >= self.settings.error_streak_limit:
            self.close(connection, CLOSE_TOO_MANY_ERRORS, "too many errors in a row")

    def close(self, connection: Connection, code: int, reason: str) -> None:
        """Close one connection, whatever the reason, and tell its room now.

        Sends a close frame and ignores whatever else the client sends. The TCP connection is
        dropped when the client answers (see Connection.on_ws_frame); if it has not within the
        grace period, it is aborted: a client that does not read never drains a graceful close.
        The disconnect handling does not wait for either, so room-mates get ``peer-left`` at once.
        """
        if self.connections.get(connection.peer) is not connection:
            return  # already closed: once is enough
        transport = connection.transport
        connection.tokens = -math.inf  # every later frame takes the flood branch: ignored
        if not transport.is_close_frame_sent and not transport.is_disconnected:
            # picows accepts any code on the wire; its enum names only the standard ones.
            transport.send_close(cast(WSCloseCode, code), reason.encode())
        if not transport.is_disconnected:
            asyncio.get_running_loop().call_later(_CLOSE_GRACE_SECONDS, _abort, transport)
        self.closed(connection)

    def fail(self, connection: Connection, exc: Exception) -> None:
        """An exception XES did not expect while handling one connection: close that one (1011).

        One log line with the exception's type and where it was raised, never its message nor a
        traceback: either may quote the client's message (SDP, addresses). ``--debug`` adds the
        traceback, as debug logging already shows contents.
        """
        log.error("unexpected %s at %s while handling peer %s; closing it (1011)",
                  type(exc).__name__, _where(exc), connection.peer, exc_info=self.debug)
        try:
            self.close(connection, CLOSE_INTERNAL_ERROR, "internal error")
        except Exception as again:  # the disconnect handling itself failed: drop the socket
            log.error("unexpected %s at %s while closing peer %s", type(again).__name__,
                      _where(again), connection.peer, exc_info=self.debug)
            self.connections.pop(connection.peer, None)
            _abort(connection.transport)

    def execute(self, actions: list[Action]) -> None:
        """Carry out the core's commands, in order.

        A send may close its connection (over the outgoing limit), which produces more actions
        (``peer-left`` to its room) while this loop runs: those wait in ``_pending`` until the
        earlier ones are out, so every client sees events in the core's order.
        """
        pending = self._pending
        pending.extend(actions)
        if self._executing:
            return
        self._executing = True
        connections = self.connections
        try:
            while pending:
                action = pending.popleft()
                if isinstance(action, Send):
                    connection = connections.get(action.to)
                    if connection is not None:
                        connection.transport.send(_TEXT, action.payload)
                        if self.debug:
                            log.debug("> %s %s", action.to, action.payload)
                else:
                    self._spawn(self._store(action))
        finally:
            self._executing = False

    async def _store(self, action: StoreAction) -> None:
        """Carry out one write the core asked for, in the database thread, in the core's order.

        A database failure loses that one fact (logged without contents) and harms no connection.
        """
        storage = self.storage
        if storage is None:
            return
        db = storage.database
        try:
            match action:
                case CreateIdentity():
                    await storage.run(db.create_identity, action.standing, action.network,
                                      safety.utc_day(action.standing.created_at),
                                      action.standing.created_at)
                case SaveStanding():
                    await storage.run(db.save_standing, action.standing)
                case SaveBlock():
                    await storage.run(db.save_block, action.blocker, action.blocked, action.at)
                case SaveRating():
                    after = await storage.run(db.save_rating, action.rating)
                    if after is not None:
                        self.core.standing_changed(after)
                case SaveReport():
                    await storage.run(db.save_report, action.reporter, action.target, action.reason,
                                      action.text, action.at, action.call_seconds)
        except Exception as exc:
            log.error("could not store %s: %s at %s", type(action).__name__, type(exc).__name__,
                      _where(exc), exc_info=self.debug)

    def _retain(self) -> None:
        """Delete what is kept no longer (docs/privacy.md, "Retention"), now and on a schedule."""
        self._retention_handle = asyncio.get_running_loop().call_later(
            self.settings.retention_seconds, self._retain)
        self._spawn(self._run_retention())

    async def _run_retention(self) -> None:
        if self.storage is None:
            return
        try:
            gone = await self.storage.run(self.storage.database.retention, time.time())
            if any(gone.values()):
                log.info("retention: deleted %s", ", ".join(f"{n} {t}" for t, n in gone.items() if n))
        except Exception as exc:
            log.error("retention failed: %s at %s", type(exc).__name__, _where(exc),
                      exc_info=self.debug)

    # ------------------------------------------------------------------ rate limit and heartbeat

    def _sweep(self) -> None:
        """Once a second: refill every connection's message allowance, and ping or drop the idle.

        A connection silent for ``heartbeat_seconds`` is pinged; silent (no pong, nothing) for
        twice that, it is closed with 1001 and its room told. So a lost network is noticed within
        2 × heartbeat + one sweep, and a busy connection is never pinged at all.
        """
        loop = asyncio.get_running_loop()
        self._sweep_handle = loop.call_later(self._sweep_seconds, self._sweep)
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
            try:
                if idle >= drop_after:
                    self.close(connection, CLOSE_GOING_AWAY, "heartbeat lost: no answer to ping")
                elif idle >= ping_after and not connection.pinged:
                    connection.pinged = True
                    connection.transport.send_ping()
            except Exception as exc:  # one connection's trouble must not stop the sweep
                self.fail(connection, exc)

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
        try:
            self.execute(self.core.tick(_now()))
        except Exception as exc:  # not one connection's fault: log it, keep the timer going
            log.error("unexpected %s at %s in the matchmaking timer", type(exc).__name__,
                      _where(exc), exc_info=self.debug)
        self._schedule_tick()


_MATCH_MESSAGES: Final = frozenset({m.MatchRequest, m.Next, m.Block, m.Stop, m.Leave})


def _abort(transport: WSTransport) -> None:
    """Drop a TCP connection now, unsent data and all (no-op if it is already gone)."""
    if not transport.is_disconnected:
        transport.disconnect(graceful=False)


def _where(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised: enough to find the bug, no payload in it."""
    tb = exc.__traceback__
    if tb is None:
        return "?"
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{tb.tb_lineno}"


def _peer_address(transport: WSTransport) -> str | None:
    """The client's IP address, read only to hash its network (never kept, never logged)."""
    try:
        peername = transport.underlying_transport.get_extra_info("peername")
    except Exception:
        return None
    return str(peername[0]) if isinstance(peername, tuple) and peername else None


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
