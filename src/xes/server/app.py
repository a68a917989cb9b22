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
from collections.abc import Callable, Coroutine, Iterator
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
from ..core.saved import decode_saved, encode_saved
from ..core.signalling import ProvenIdentity, Signalling, StaleSession
from ..core.snapshot import decode_snapshot, encode_snapshot, export_snapshot, import_snapshot
from ..core.timing import Now
from ..errors import BadJson, SignallingError, TooBig
from ..protocol import messages as m
from ..protocol.codes import CloseCode
from .cluster import LocalCluster, RedisCluster, RemoteConnection, cluster_for
from .config import ServerSettings
from .identity import identity_hash, load_or_create_secret, network_hash, new_challenge, verify_identity
from .metrics import CONTENT_TYPE, Counters, RedisProbe, render
from .moderate import ModerationServer
from .outgoing import Outgoing
from .static import SECURITY_HEADERS, StaticFile, load_web_client
from .storage import Database, Storage, open_database
from .store import ROOMS_FILE, SNAPSHOT_FILE, DataDir

__all__ = ["XesServer", "new_id", "CLOSE_TOO_MANY_ERRORS", "CLOSE_FLOOD", "CLOSE_GOING_AWAY",
           "CLOSE_NOT_READING", "CLOSE_INTERNAL_ERROR", "CLOSE_REPLACED", "OUTGOING_LIMIT_BYTES"]

log = logging.getLogger("xes.server")

CLOSE_TOO_MANY_ERRORS: Final = CloseCode.TOO_MANY_ERRORS
CLOSE_FLOOD: Final = CloseCode.FLOOD
CLOSE_GOING_AWAY: Final = CloseCode.GOING_AWAY
# The client leaves more than OUTGOING_LIMIT_BYTES unread: it is dropped rather than buffered for.
CLOSE_NOT_READING: Final = CloseCode.NOT_READING
# An exception XES did not expect while handling one connection's event: that connection only.
CLOSE_INTERNAL_ERROR: Final = CloseCode.INTERNAL_ERROR
CLOSE_REPLACED: Final = CloseCode.REPLACED
# Closes after which the session detaches (docs/protocol.md, "Sessions"): nothing in them says
# the client wants to leave. The server's other closes (flood, error streak) end it at once.
_DETACHING_CLOSES: Final = frozenset({CloseCode.GOING_AWAY, CloseCode.NOT_READING,
                                      CloseCode.INTERNAL_ERROR})
# A client's own close frame with one of these hangs up (a page closing sends 1001, `close()`
# without a code sends none: 0 here); with any other code (XES clients use 4000) it dropped a
# stale socket to resume on a new one.
_HANG_UP_CODES: Final = frozenset({0, CloseCode.NORMAL, CloseCode.GOING_AWAY})
# Bytes the server holds for one connection that the socket would not take (docs/protocol.md,
# "Limits"). asyncio calls Connection.pause_writing once when a write goes past it.
OUTGOING_LIMIT_BYTES: Final = 1_048_576
_TEXT: Final = WSMsgType.TEXT
# Never UTF-8, so never a message: what an edge forwards for a binary frame (see on_ws_frame).
_NOT_UTF8: Final = b"\xff"
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
                 "backlog", "fragments", "fresh", "transport", "challenge",
                 "forwarded_for", "deliver", "home", "forwarded",
                 "queued")  # no __dict__: tens of thousands

    transport: WSTransport

    def __init__(self, server: XesServer, forwarded_for: str | None = None) -> None:
        self.server = server
        self.peer = new_id()
        # The relayed `signal` frame's head, stamped with this sender on its first signal, then
        # kept (not per message; not for the connections that never signal).
        self.signal_head: bytes | None = None
        self.tokens = float(server.settings.rate_burst)
        self.idle = 0.0      # seconds since the last frame of any kind (pongs included)
        self.pinged = False
        self.error_streak = 0
        # While a password hashes off the loop, later frames wait here so order is kept.
        self.backlog: deque[bytes] | None = None
        self.fragments: bytearray | None = None
        self.fresh = True    # no message read yet: only now may it be a `resume`
        # What `identify` must sign on this connection (sent in `hello`).
        self.challenge = new_challenge()
        # The client's address as the trusted proxy saw it (--trust-forwarded-for), else None.
        self.forwarded_for = forwarded_for
        # Where this socket's messages go: the server, or (in a cluster, when its session is
        # homed at another node) the cluster's forwarder. Swapped, not tested per message.
        self.deliver: Callable[[Connection, bytes | memoryview], None] = server.deliver_here
        self.home: str | None = None  # the node holding its session, if not this one
        self.forwarded = 0            # frames sent on to that home (server.cluster numbers them)
        # Messages waiting for the end of this event-loop turn (server.outgoing), else None.
        self.queued: list[bytes] | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        # picows keeps the upgrade request and its 101 answer for the connection's life; what
        # they hold (~2 KiB with a bare client, more with a browser's) was read in _route.
        request = transport.request
        del request.headers, request.method, request.path, request.version
        del transport.response.headers
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
                    self.deliver(self, frame.get_payload_as_memoryview())
                else:
                    self.server.close(self, CLOSE_FLOOD, "message rate over the limit")
            elif kind is _TEXT or kind is WSMsgType.CONTINUATION:
                self._reassemble(frame)
            elif kind is WSMsgType.BINARY:
                self.tokens -= 1.0
                if self.tokens < 0.0:
                    self.server.close(self, CLOSE_FLOOD, "message rate over the limit")
                elif self.home is not None:
                    # The session is homed at another node: the error must come from there,
                    # numbered in order with the rest, and it answers this as bad-json too.
                    self.deliver(self, _NOT_UTF8)
                else:
                    self.server.refuse(self, BadJson("binary frames are not part of the protocol"))
            elif kind is WSMsgType.CLOSE:
                # The client closes: a hang-up ends its session now (its room hears at once, not
                # when, if ever, our reply drains); any other code detaches it, to resume. If
                # picows had closed first (a frame over the hard cap), this is the answer, and
                # the client was shut out: the session ends too.
                code = frame.get_close_code()
                self.server.close(self, WSCloseCode.OK.value, "",
                                  detach=code.value not in _HANG_UP_CODES
                                  and not transport.is_close_frame_sent)
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
            if self.home is not None:  # refused by its home, as for a binary frame
                self.deliver(self, bytes(self.fragments))
            else:
                self.server.refuse(self, TooBig(f"message over {m.MAX_MESSAGE_BYTES} bytes"))
            self.fragments = None
        elif frame.fin:
            data, self.fragments = bytes(self.fragments), None
            self.tokens -= 1.0
            if self.tokens >= 0.0:
                self.deliver(self, data)
            else:
                self.server.close(self, CLOSE_FLOOD, "message rate over the limit")

    def pause_writing(self) -> None:
        """More than OUTGOING_LIMIT_BYTES wait unsent: the client is not reading what we send.

        Buffering on would let one silent client grow the server without bound, so it is closed
        (4009) and its session detached, as for any lost socket; see :meth:`XesServer.close`.
        Called from inside a write (see server.outgoing), so nothing more is written to it
        after this (neither picows nor server.outgoing writes after a close frame).
        """
        try:
            self.server.close(self, CLOSE_NOT_READING, "not reading: outgoing buffer over 1 MiB")
        except Exception as exc:
            self.server.fail(self, exc)

    def resume_writing(self) -> None:
        """Never needed: a connection that paused is already closed."""

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        try:
            # Our own closes were handled when sent. A close frame picows sent by itself (a frame
            # over the hard cap, 1009, or a broken frame) shuts the client out: the session ends.
            # Otherwise the socket was lost, and the session detaches.
            handshake = transport.close_handshake
            self.server.closed(self, detach=handshake is None or handshake.sent is None)
        except Exception as exc:
            self.server.fail(self, exc)


class XesServer:
    """The XES server: owns the core, the open connections and the listening socket."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        core = settings.core
        limits = m.Limits(max_message_bytes=m.MAX_MESSAGE_BYTES, max_peers=core.max_peers,
                          rate_burst=settings.rate_burst,
                          rate_per_second=settings.rate_per_second,
                          heartbeat_seconds=settings.heartbeat_seconds,
                          resume_grace_seconds=core.resume_grace_seconds,
                          resume_cap_seconds=core.resume_cap_seconds,
                          replay_messages=core.replay_messages, replay_bytes=core.replay_bytes)
        # `hello` echoes the limits this shell enforces, so clients never hard-code them.
        self.core = Signalling(dataclasses.replace(settings.core, limits=limits), _random_ids())
        self.connections: dict[str, Connection] = {}
        # One bound method shared by every connection (Connection.deliver), not one each.
        self.deliver_here = self.receive
        # One write per connection per event-loop turn, however many messages it is sent.
        self.outgoing: Outgoing[Connection] = Outgoing(self.fail)
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
        # Saving protected rooms (server.store): the core's saved_version last written or being
        # written, the newest encoding waiting for the writer, and the one writer at a time.
        self.data: DataDir | None = None
        self._saved_version = self.core.saved_version
        self._unsaved: bytes | None = None
        self._saving = asyncio.Lock()
        self._stopping = False
        self.storage: Storage | None = None
        self._identity_secret = b""
        self._network_salt: tuple[int, bytes] | None = None
        self._retention_handle: asyncio.TimerHandle | None = None
        self.moderate_port: int | None = None
        self.moderation: ModerationServer | None = None
        # What /metrics reports (server.metrics): counts kept here, gauges read when scraped.
        self.counts = Counters()
        self._started_at = time.time()
        self.metrics_port: int | None = None
        self._metrics_server: asyncio.AbstractServer | None = None
        # With --redis: whether Redis answers (/healthz, /metrics).
        self.redis_probe: RedisProbe | None = None
        # Alone (LocalCluster: nothing runs) or one node of several sharing Redis.
        self.cluster: LocalCluster | RedisCluster = cluster_for(settings.redis_url, settings.node_id)
        self._clustered = self.cluster.enabled

    @property
    def identity_secret(self) -> bytes:
        """The secret identities are hashed with (the nodes of a cluster must share it)."""
        return self._identity_secret

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
        """Open the data directory and restore its rooms, then listen; returns the bound port.

        Raises:
            DataDirBusy: Another server uses the data directory.
            ValueError: Its saved rooms cannot be read (nothing is guessed: the operator decides).
            OSError: The data directory cannot be opened, or the port cannot be bound.
        """
        s = self.settings
        if s.data_dir is not None and self.data is None:
            self.data = DataDir(s.data_dir)
            try:
                if self._clustered:
                    # A node's rooms live in Redis, owned by whichever node holds them now: what
                    # this directory kept from an earlier run may have been taken over meanwhile,
                    # and restoring it would make a second copy of the room.
                    log.info("cluster node: rooms come from Redis, not from %s", self.data.path)
                else:
                    self._restore(self.data)
            except BaseException:
                self.data.close()
                self.data = None
                raise
        database, self._identity_secret = await asyncio.to_thread(self._open_storage)
        self.storage = Storage(database)
        await self._load_restored_identities()
        await self.cluster.start(self)
        self._retain()
        if s.redis_url is not None:  # checked before the first client can ask /healthz
            self.redis_probe = RedisProbe(s.redis_url)
            await self.redis_probe.start()
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
            # Given a Logger, picows makes a child Logger per connection ("picows.server.<fd>",
            # ~0.5 KiB each, kept for the connection's life); an adapter is shared as it is.
            logger_name=logging.LoggerAdapter(logging.getLogger("picows.server")),
            # --reuse-port / --workers: several processes accept on one port (SO_REUSEPORT).
            reuse_port=s.reuse_port or None,
        )
        if s.metrics_port is not None:
            self._metrics_server = await ws_create_server(
                self._route_metrics, s.metrics_host, s.metrics_port,
                websocket_handshake_timeout=5, use_aiofastnet=False, logger_name="metrics")
            self.metrics_port = self._metrics_server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._last_sweep = loop.time()
        self._sweep_handle = loop.call_later(self._sweep_seconds, self._sweep)
        self._schedule_tick()  # restored rooms have a deadline
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _load_restored_identities(self) -> None:
        """Sessions from the snapshot keep their identity: load each one's standing and blocks
        before anyone is served, so a resume needs no new `identify`."""
        assert self.storage is not None
        db, unix = self.storage.database, time.time()
        for identity in sorted(self.core.identities_to_load()):
            standing, blocks, _ = await self.storage.run(
                db.load_identity, identity, None, safety.utc_day(unix), unix)
            self.execute(self.core.identity_loaded(identity, standing, blocks, _now()))

    def _restore(self, data: DataDir) -> None:
        """The state a stop left (the snapshot, read once and deleted), then the protected rooms
        it does not have (all of them after a crash)."""
        snapshot = data.read(SNAPSHOT_FILE)
        if snapshot is not None:
            started = time.perf_counter()
            try:
                import_snapshot(self.core, decode_snapshot(snapshot), _now())
            except ValueError as exc:
                # Sessions are a convenience: their clients join afresh. Rooms' protection does
                # not depend on it (rooms.json, below), so the server starts all the same.
                log.error("could not read the snapshot %s (%s); its sessions are lost",
                          data.path / SNAPSHOT_FILE, exc)
            else:
                log.info("resumed %d session(s) in %d room(s) from the snapshot (%d bytes, %.0f ms)",
                         len(self.core.clients), len(self.core.rooms), len(snapshot),
                         (time.perf_counter() - started) * 1000)
            data.remove(SNAPSHOT_FILE)
        saved = data.read(ROOMS_FILE)
        if saved is None:
            self._saved_version = self.core.saved_version
            return
        try:
            rooms = decode_saved(saved)
        except ValueError as exc:
            raise ValueError(f"{data.rooms_path}: {exc}; move it away to start without the "
                             "rooms saved in it") from None
        restored = self.core.restore(rooms, _now())
        self._saved_version = self.core.saved_version
        if restored:
            log.info("restored %d protected room(s) from %s", restored, data.rooms_path)

    async def stop(self) -> None:
        """Stop listening, save the sessions, tell every client to come back (1012), and close.

        docs/protocol.md, "Restarts": the state is taken in one go before any socket closes, so
        that nothing a client does meanwhile is half in it; clients then get the close grace to
        answer, and whoever has not by then (one that does not read) is aborted, so stopping
        never waits on a client. Bounded: the snapshot's write plus twice the close grace.
        """
        if self._server is not None:
            self._server.close()
        await self.cluster.stop()
        # From here on rooms empty because their connections close, not because people left:
        # the saved rooms must stay as they are, for the next start.
        self._stopping = True
        if self.moderation is not None:
            await self.moderation.stop()
        if self._metrics_server is not None:
            self._metrics_server.close()
        if self.redis_probe is not None:
            await self.redis_probe.stop()
        for handle in (self._tick_handle, self._sweep_handle, self._retention_handle):
            if handle is not None:
                handle.cancel()
        # A cluster node's rooms are taken over by the others from their snapshots in Redis: it
        # keeps nothing for its own next start, and tells nobody that anyone left.
        snapshot = self._snapshot() if not self._clustered else None
        connections = [c for c in self.connections.values() if type(c) is Connection]
        for connection in connections:
            connection.tokens = -math.inf  # anything still arriving is ignored: it is not saved
            Outgoing.flush(connection)
            connection.transport.send_close(cast(WSCloseCode, CloseCode.SERVICE_RESTART),
                                            b"server restarting: reconnect")
            connection.transport.disconnect()
        for connection in connections:  # the snapshot is taken: the core may forget them now
            if self._clustered:
                self.connections.pop(connection.peer, None)
            else:
                self.closed(connection, detach=False)
        writing = None
        if snapshot is not None and self.data is not None:
            writing = asyncio.ensure_future(asyncio.to_thread(self.data.write, SNAPSHOT_FILE, snapshot))
        if connections:
            gone = [asyncio.ensure_future(c.transport.wait_disconnected()) for c in connections]
            await asyncio.wait(gone, timeout=_CLOSE_GRACE_SECONDS)
            for connection in connections:
                _abort(connection.transport)
            _, stuck = await asyncio.wait(gone, timeout=_CLOSE_GRACE_SECONDS)  # aborts are prompt
            for waiter in stuck:
                waiter.cancel()
        if writing is not None:
            try:
                await writing
            except OSError as exc:
                log.error("could not write the snapshot: %s; clients will join afresh",
                          exc.strerror or type(exc).__name__)
        async with self._saving:  # a save under way finishes
            pass
        if self.data is not None:
            self.data.close()
        if self._server is not None:
            await self._server.wait_closed()
        if self._tasks:  # writes already asked for are finished before the database closes
            await asyncio.wait(list(self._tasks), timeout=10)
        if self.storage is not None:
            await asyncio.to_thread(self.storage.close)
            self.storage = None

    def _snapshot(self) -> bytes | None:
        """The whole signalling state, encoded, for the next start; None without a data dir or
        when there is nothing to carry over."""
        if self.data is None:
            return None
        started = time.perf_counter()
        state = export_snapshot(self.core, _now())
        if not (state.sessions or state.rooms):
            return None  # nothing to carry over: no file at all
        snapshot = encode_snapshot(state)
        log.info("snapshot of %d session(s) taken: %d bytes in %.0f ms", len(self.core.clients),
                 len(snapshot), (time.perf_counter() - started) * 1000)
        return snapshot

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
            return self._health()
        if path == b"/favicon.ico" and "favicon.ico" not in self.static:
            return _http(HTTPStatus.NOT_FOUND, b"")
        return _http(HTTPStatus.NOT_FOUND, b"Not found.\n")

    def _health(self) -> WSUpgradeResponseWithListener:
        """`/healthz`: 200 ok while this node can serve; 503 and why when it cannot (Redis)."""
        if self.redis_probe is not None:
            status = self.redis_probe.status()
            if not status.up:
                return _http(HTTPStatus.SERVICE_UNAVAILABLE, f"{status.reason}\n".encode(),
                             {"Cache-Control": "no-store"})
        return _http(HTTPStatus.OK, b"ok\n", {"Cache-Control": "no-store"})

    def _route_metrics(self, request: WSUpgradeRequest
                       ) -> WSListener | WSUpgradeResponseWithListener:
        """The operator's port: `/metrics` and `/healthz`, nothing else (no WebSocket)."""
        try:
            path = request.path.split(b"?", 1)[0]
            if request.method != b"GET":
                return _http(HTTPStatus.METHOD_NOT_ALLOWED, b"Only GET is served here.\n",
                             {"Allow": "GET"})
            if path == b"/metrics":
                return _http(HTTPStatus.OK, render(self, self._started_at),
                             {"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
            if path == b"/healthz":
                return self._health()
            return _http(HTTPStatus.NOT_FOUND, b"Not found.\n")
        except Exception as exc:
            log.error("unexpected %s at %s while serving metrics", type(exc).__name__,
                      _where(exc), exc_info=self.debug)
            return _http(HTTPStatus.INTERNAL_SERVER_ERROR, b"Internal error.\n")

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
        self.counts.connections_opened += 1
        self.execute(self.core.connect(connection.peer, new_id(), connection.challenge))

    def closed(self, connection: Connection, detach: bool) -> None:
        """The connection is gone, or is being closed (once): its session detaches, to be
        resumed within the grace, or ends now (docs/protocol.md, "Sessions")."""
        if self.connections.get(connection.peer) is not connection:
            return  # already closed, or replaced by a connection that resumed its session
        del self.connections[connection.peer]
        if detach:
            self.counts.detached += 1
        if connection.home is not None:  # its session lives at another node: tell it there
            cast(RedisCluster, self.cluster).socket_closed(connection, detach)
        elif detach:
            self.execute(self.core.detach(connection.peer, _now()))
            self._schedule_tick()
        else:
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
            fresh, connection.fresh = connection.fresh, False
            message = m.decode(data)
            if type(message) is m.Signal:
                target = self.core.route_signal(connection.peer, message.to)
                outbox = target.outbox or self.core.outbox(target)
                # docs/protocol.md `signal`: the sender stamped by us, `data` byte for byte, and
                # the recipient's next `seq` appended (see messages.with_seq).
                head = connection.signal_head
                if head is None:
                    head = connection.signal_head = m.signal_head(connection.peer)
                relayed = b"".join((head, message.data, b',"seq":',
                                    b"%d" % (outbox.seq + 1), b"}"))
                # A text frame must be UTF-8 (a browser closes on anything else), and msgspec
                # skips `data` without checking. SDP is ASCII: one fast scan, rarely a decode.
                if not relayed.isascii():
                    m.check_utf8(relayed, "signal")
                self.counts.relayed += 1
                if outbox.keep(relayed):
                    recipient = self.connections.get(target.id)
                    if recipient is not None:  # else detached: kept for its resume
                        self.outgoing.send(recipient, relayed)
                else:  # detached, and its replay buffer is full: it can no longer resume
                    self.execute(self.core.disconnect(target.id))
                if self.debug:
                    log.debug("< %s signal -> %s: %s", connection.peer, target.id, bytes(data))
            elif type(message) is m.Resume and fresh:
                if self.debug:
                    log.debug("< %s resume %s (token not logged)", connection.peer, message.peer)
                if (self._clustered and message.peer not in self.core.clients
                        and type(connection) is Connection):
                    self._off_loop(connection, cast(RedisCluster, self.cluster).resume_elsewhere(
                        connection, message, bytes(data)))
                    return
                self._resume(connection, message)
            elif type(message) is m.Join and self._clustered:
                # The room may be owned by another node: this session then moves there.
                self._off_loop(connection, cast(RedisCluster, self.cluster).join(
                    connection, message, bytes(data)))
                return
            elif type(message) is m.MatchRequest and self._clustered:
                # Strangers are matched by the queue's node: this session may move there.
                self._off_loop(connection, cast(RedisCluster, self.cluster).match(
                    connection, message, bytes(data)))
                return
            elif _needs_password_hash(message):
                self._off_loop(connection, self._with_password(connection, message))
                return
            elif type(message) is m.Identify:
                self._off_loop(connection, self._identify(connection, message))
                return
            else:
                if self.debug:
                    log.debug("< %s %s", connection.peer,
                              bytes(data) if type(message) is not m.Resume else b"resume")
                actions = self.core.handle(connection.peer, message, _now())
                saving, written = self._storing(connection, message)
                if saving is None:
                    self.execute(actions)
                else:
                    self._tell_when_saved(connection, saving, actions, written)
                if type(message) in _TIMED_MESSAGES:
                    self._schedule_tick()
        except SignallingError as exc:
            self.refuse(connection, exc)
            return
        except Exception as exc:
            self.fail(connection, exc)
            return
        connection.error_streak = 0

    def _resume(self, connection: Connection, request: m.Resume) -> None:
        """A fresh connection continues session ``request.peer`` (docs/protocol.md, "Sessions").

        Raises:
            SessionGone: Refused; nothing changed, except that a detached session whose replay
                is incomplete is ended at once (its owner just proved it cannot resume).
        """
        try:
            actions = self.core.resume(connection.peer, request, new_id(), _now())
        except StaleSession:
            session = self.core.clients.get(request.peer)
            if session is not None and session.detached_at is not None:
                self.execute(self.core.disconnect(request.peer))
            raise
        old = self.connections.get(request.peer)
        if old is not None:  # a silent cut not noticed yet: this connection takes over
            self._replace(old)
        provisional = connection.peer
        del self.connections[provisional]
        connection.peer = request.peer
        connection.signal_head = None  # the head names the session: made anew on first use
        self.connections[request.peer] = connection
        self.counts.resumes += 1
        if type(connection) is not Connection:  # a socket at another node
            cast(RedisCluster, self.cluster).renamed(cast(RemoteConnection, connection), provisional)
        self.execute(actions)
        self._schedule_tick()

    def _replace(self, connection: Connection) -> None:
        """Close a socket whose session another connection resumed (4010), leaving the session."""
        del self.connections[connection.peer]
        connection.tokens = -math.inf  # whatever it still sends is ignored
        transport = connection.transport
        Outgoing.flush(connection)
        if not transport.is_close_frame_sent and not transport.is_disconnected:
            transport.send_close(cast(WSCloseCode, CLOSE_REPLACED), b"replaced")
        if not transport.is_disconnected:
            asyncio.get_running_loop().call_later(_CLOSE_GRACE_SECONDS, _abort, transport)

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
            if self._live(connection):
                self.refuse(connection, exc)
        except Exception as exc:
            self.fail(connection, exc)
        self._replay_backlog(connection)

    def _storing(self, connection: Connection, message: m.ClientMessage
                 ) -> tuple[asyncio.Future[Any] | None, str | None]:
        """What must be stored before the replies to ``message`` go out, as one future (None:
        nothing): the protected rooms on disk; on a cluster, also a join, an admission or a
        host's rule change in its room's snapshot in Redis, or the owner's death right after
        someone saw it confirmed would undo it (a takeover starts from the last snapshot).
        With it, the id of the room whose snapshot that is (None: no snapshot written)."""
        on_disk = self._save_rooms()
        if not (self._clustered and type(message) in _CONFIRMED_ONCE_IN_REDIS):
            return on_disk, None
        session = self.core.clients.get(connection.peer)
        in_redis = cast(RedisCluster, self.cluster).write_room_now(connection.peer)
        return (in_redis if on_disk is None else asyncio.gather(on_disk, in_redis),
                session.room_id if session is not None else None)

    def _tell_when_saved(self, connection: Connection, saving: asyncio.Future[Any],
                         actions: list[Action], written: str | None) -> None:
        """Carry out ``actions`` once what they changed is stored (``_storing``); meanwhile this
        connection's next messages wait, in order (as while a password hashes)."""
        connection.backlog = deque()

        async def tell() -> None:
            try:
                await saving
                self.execute(actions, written)
            except Exception as exc:
                self.fail(connection, exc)
            self._replay_backlog(connection)

        task = asyncio.get_running_loop().create_task(tell())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _save_rooms(self) -> asyncio.Future[None] | None:
        """If the protected rooms changed, write them: a future done once they are on disk.

        Writes are one at a time, in a thread (two fsyncs); changes made while one is under way
        are written together by the next, so a flood of `set-rules` costs one write per fsync.
        """
        if self.data is None or self._stopping or self.core.saved_version == self._saved_version:
            return None
        self._saved_version = self.core.saved_version
        if self._clustered:
            # A node's rooms live in Redis (their owner's snapshot), and a node never reads this
            # file back (start()): a copy on its disk would keep password hashes and bans for
            # nothing, past the room's end.
            return None
        self._unsaved = encode_saved(self.core.saved_rooms())
        task = asyncio.get_running_loop().create_task(self._write_rooms(self.data))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _write_rooms(self, data: DataDir) -> None:
        async with self._saving:
            unsaved, self._unsaved = self._unsaved, None
            if unsaved is None:
                return  # a write that began after our change was queued took it along
            try:
                await asyncio.to_thread(data.write, ROOMS_FILE, unsaved)
            except OSError as exc:
                # The rules hold in memory; only a crash before the next successful write could
                # lose them. Say so loudly (no path contents, no secrets in the message).
                log.error("could not save the protected rooms to %s: %s", data.rooms_path,
                          exc.strerror or type(exc).__name__)

    def _replay_backlog(self, connection: Connection) -> None:
        pending, connection.backlog = connection.backlog, None
        # Replay what arrived meanwhile, unless the connection went away while we hashed: the
        # core has forgotten its peer, and replaying for it would fail.
        while pending and self._live(connection):
            self.receive(connection, pending.popleft())
            if connection.backlog is not None:  # more slow work started: keep the order
                connection.backlog.extend(pending)
                break

    def _live(self, connection: Connection) -> bool:
        """Whether ``connection`` is still the open socket of its session."""
        return self.connections.get(connection.peer) is connection

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
        await self.handle_now(connection, message, hashed)

    async def handle_now(self, connection: Connection, message: m.ClientMessage,
                         password: PasswordHash | None = None) -> None:
        """Let the core handle ``message`` (off the frame callback: a hash, or a cluster's
        question to Redis, came first); its replies go out once the rooms it changed are saved."""
        if self._live(connection):  # it may have left meanwhile
            actions = self.core.handle(connection.peer, message, _now(), password=password)
            saving, written = self._storing(connection, message)
            if saving is not None:
                await saving
            self.execute(actions, written)
            if type(message) in _TIMED_MESSAGES:
                self._schedule_tick()

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
        if self._live(connection):
            self.execute(self.core.handle(connection.peer, message, _now(), proven=proven))

    def refuse(self, connection: Connection, exc: SignallingError) -> None:
        """Answer a refused message with a structured error; too many in a row close the socket."""
        error = m.Error(code=exc.code, message=exc.message, ref=exc.ref, retry_after=exc.retry_after)
        errors = self.counts.errors
        errors[exc.code] = errors.get(exc.code, 0) + 1
        self.execute([Send(connection.peer, m.encode(error))])
        connection.error_streak += 1
        if connection.error_streak >= self.settings.error_streak_limit:
            self.close(connection, CLOSE_TOO_MANY_ERRORS, "too many errors in a row")

    def close(self, connection: Connection, code: int, reason: str,
              detach: bool | None = None) -> None:
        """Close one connection, whatever the reason, and detach or end its session now.

        Sends a close frame and ignores whatever else the client sends. The TCP connection is
        dropped when the client answers (see Connection.on_ws_frame); if it has not within the
        grace period, it is aborted: a client that does not read never drains a graceful close.
        The session handling does not wait for either. ``detach`` defaults to what ``code``
        means (docs/protocol.md, "Sessions"): 1001, 4009 and 1011 detach, the others end.
        """
        if self.connections.get(connection.peer) is not connection:
            return  # already closed: once is enough
        transport = connection.transport
        connection.tokens = -math.inf  # every later frame takes the flood branch: ignored
        closes = self.counts.closes
        closes[code] = closes.get(code, 0) + 1
        Outgoing.flush(connection)  # what it was sent before the close goes first
        if not transport.is_close_frame_sent and not transport.is_disconnected:
            # picows accepts any code on the wire; its enum names only the standard ones.
            transport.send_close(cast(WSCloseCode, code), reason.encode())
        if not transport.is_disconnected:
            asyncio.get_running_loop().call_later(_CLOSE_GRACE_SECONDS, _abort, transport)
        self.closed(connection, code in _DETACHING_CLOSES if detach is None else detach)

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
            if self._live(connection):
                del self.connections[connection.peer]
            _abort(connection.transport)

    def execute(self, actions: list[Action], written: str | None = None) -> None:
        """Carry out the core's commands, in order.

        A send may close its connection (over the outgoing limit), which produces more actions
        (``peer-left`` to its room) while this loop runs: those wait in ``_pending`` until the
        earlier ones are out, so every client sees events in the core's order.

        ``written``: on a cluster, a room whose snapshot is already in Redis with the change
        these actions announce (``_storing``): it is not written again for them.
        """
        pending = self._pending
        pending.extend(actions)
        if self._clustered:  # rooms that changed get a new snapshot in Redis
            cast(RedisCluster, self.cluster).touched(actions, written)
        if self._executing:
            return
        self._executing = True
        connections, sessions, core = self.connections, self.core.clients, self.core
        try:
            while pending:
                action = pending.popleft()
                if type(action) is Send:
                    session = sessions.get(action.to)
                    if session is None:
                        continue  # ended meanwhile
                    frame = action.payload
                    if action.numbered:
                        numbered = (session.outbox or core.outbox(session)).post(frame)
                        if numbered is None:  # detached and its replay buffer is full: it ends
                            pending.extend(core.disconnect(action.to))
                            continue
                        frame = numbered
                    connection = connections.get(action.to)
                    if connection is not None:
                        self.outgoing.send(connection, frame)
                        if self.debug:
                            # hello and resumed carry the resume token: never logged.
                            log.debug("> %s %s", action.to,
                                      frame if action.numbered else b"(not logged)")
                else:  # the type check above is the hot path's: it does not narrow
                    self._spawn(self._store(cast(StoreAction, action)))
        finally:
            self._executing = False
        # A room emptied or a restored room settled by a disconnect or the timer: nobody waits
        # on that save, so it just starts.
        self._save_rooms()

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
            if type(connection) is not Connection:
                continue  # a remote socket: its edge refills and pings it
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
            log.error("unexpected %s at %s in the core's timer", type(exc).__name__,
                      _where(exc), exc_info=self.debug)
        self._schedule_tick()


# Messages after which the core's next deadline may be earlier: queue relaxations, grace ends.
_TIMED_MESSAGES: Final = frozenset({m.MatchRequest, m.Next, m.Block, m.Stop, m.Leave, m.Hearing})
# Joins and a host's decisions about its room: on a cluster, answered only once the room's
# snapshot holding the change is in Redis (`_storing`).
_CONFIRMED_ONCE_IN_REDIS: Final = frozenset({m.Join, m.Admit, m.SetRules, m.Ban, m.Remove})


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
