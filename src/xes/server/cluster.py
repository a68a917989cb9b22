"""Several `xes serve` processes as one service, sharing state through Redis.

docs/architecture.md, "Cluster", has the decision, the alternatives rejected and what each failure
costs; this is how it works.

Every node runs the same core as a single process. A session lives in exactly one node's core, its
*home*; the socket of its client is held by its *edge* (the node the load balancer picked). A room
lives at its *owner*, recorded in Redis (``xes:room:{id}``, with an epoch that fences a stale
owner's writes), and every member's session is homed there: the core's object graph stays in one
process, and all the room logic runs unchanged on the owner, one writer per room.

- A session starts at its edge. When its home handles a ``join`` of a room another live node owns,
  it *migrates* the session there (:func:`xes.core.snapshot.export_session`), forgets it without
  telling anyone, and tells the edge its new home. The edge forwards every frame of a session
  homed elsewhere, raw and numbered, to the home's inbox; the home writes back already
  ``seq``-numbered frames for the edge to put on the socket. A session homed elsewhere is, to the
  home, a :class:`RemoteConnection` with the same interface as a local one, so the relay's hot
  path has no cluster branch.
- Inboxes are Redis Streams (``xes:inbox:{node}``), read by one task per node with ``XREAD
  BLOCK``; a node's writes are batched per event-loop turn into one write, one entry per target
  (both on connections of their own: :mod:`.redis_direct`).
- Liveness: ``xes:node:{node}`` with a short expiry, renewed every second. A dead edge's sessions
  detach (they resume elsewhere within the grace); sockets whose home died are closed with 1012
  so that their clients resume; a dead owner's rooms are taken over from the snapshot it kept in
  Redis. ``resume`` at any node goes to the session's home through ``xes:session:{peer}``.
- Redis restarted empty: every node notices (``xes:boot`` gone) and writes again what it holds.

:class:`LocalCluster` is the single-process default: "everything is here", and nothing runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, cast

import msgspec
from picows import WSMsgType

from ..core.actions import Action, Send
from ..core.matchmaking import Match, MatchQueue
from ..core.snapshot import (
    decode_room_transfer,
    decode_session_transfer,
    encode_transfer,
    export_room,
    export_session,
    import_room,
    import_session,
)
from ..core.timing import Now
from ..errors import SessionGone
from ..protocol import messages as m
from ..protocol.codes import CloseCode
from .cluster_queue import JournaledQueue, NotLeader, QueueLeader, TicketGone

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.typing import EncodableT

    from .app import Connection, XesServer
    from .redis_direct import DirectRedis

__all__ = ["LocalCluster", "RedisCluster", "RemoteConnection", "new_node_id"]

log = logging.getLogger("xes.cluster")

# A node whose key is older than this is dead; it renews it every _BEAT_SECONDS.
NODE_TTL_MS: Final = 5000
_BEAT_SECONDS: Final = 1.0
# Inbox entries are read within milliseconds; older ones are trimmed on every write, so that the
# signals they carry (SDP, candidates: addresses) are not kept (docs/privacy.md).
_INBOX_KEEP_MS: Final = 30_000
# After Redis was away or lost its data: long enough for every live node to renew its key.
_SETTLE_SECONDS: Final = NODE_TTL_MS / 1000 + 2 * _BEAT_SECONDS
# How long a resume at a node waits for a dead home's rooms to be taken over.
_TAKEOVER_WAIT_SECONDS: Final = 12.0
# Frames that reach a session's old home after it moved are passed on for this long.
_MOVED_SECONDS: Final = 30.0
# An empty room's ownership is given up only after this long, so a join that claimed it is in.
_RELEASE_AFTER_SECONDS: Final = 5.0
_TEXT: Final = WSMsgType.TEXT
_SESSION_GONE: Final = "this session cannot be resumed: join or match afresh"

# Envelope kinds, the first item of each message between nodes (msgpack arrays).
FRAME: Final = "f"      # edge -> home: (peer, n, data) a client's frame, n-th forwarded
CLOSED: Final = "x"     # edge -> home: (peer, n, detach) the client's socket closed
SEND: Final = "s"       # home -> edge: (peer, data) write this frame to the socket
CLOSE: Final = "c"      # home -> edge: (peer, code, reason) close the socket
HOME: Final = "h"       # home -> edge: (peer, node) this session's home is now node
RENAME: Final = "r"     # home -> edge: (old, new, node) the socket now carries session `new`
ADOPT: Final = "a"      # home -> owner: (peer, edge, n, challenge, transfer, [frames]) take it
OPEN: Final = "o"       # edge -> home: (peer, challenge, frame) a fresh socket's `resume`

_CLAIM: Final = """
-- KEYS[1] xes:room:{id}; ARGV: me, node key prefix, owned-set prefix, room id
local owner = redis.call('HGET', KEYS[1], 'owner')
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if owner == ARGV[1] then return {owner, epoch, false} end
if owner and redis.call('EXISTS', ARGV[2] .. owner) == 1 then return {owner, epoch, false} end
local snapshot = redis.call('HGET', KEYS[1], 'snapshot')
epoch = epoch + 1
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'epoch', epoch)
if owner then redis.call('SREM', ARGV[3] .. owner, ARGV[4]) end
redis.call('SADD', ARGV[3] .. ARGV[1], ARGV[4])
return {ARGV[1], epoch, snapshot or false}
"""
_WRITE: Final = """
-- KEYS[1] xes:room:{id}; ARGV: me, epoch, version, snapshot. Refused (0) unless still the owner.
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1]
   or tonumber(redis.call('HGET', KEYS[1], 'epoch')) ~= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'version', ARGV[3], 'snapshot', ARGV[4])
return 1
"""
_RELEASE: Final = """
-- KEYS[1] xes:room:{id}, KEYS[2] my owned set; ARGV: me, epoch, room id
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1]
   and tonumber(redis.call('HGET', KEYS[1], 'epoch')) == tonumber(ARGV[2]) then
  redis.call('DEL', KEYS[1])
end
redis.call('SREM', KEYS[2], ARGV[3])
return 1
"""
_REPUBLISH: Final = """
-- After Redis lost everything: KEYS[1] xes:room:{id}; ARGV: me, epoch, snapshot, owned set, id.
-- Only if nobody wrote the room meanwhile: the epoch continues from ours.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'epoch', ARGV[2], 'version', 0, 'snapshot', ARGV[3])
redis.call('SADD', ARGV[4], ARGV[5])
return 1
"""


def new_node_id() -> str:
    """A random node id: nodes of one cluster must differ, and a restarted node is a new one."""
    return secrets.token_urlsafe(9)


def _now() -> Now:
    return Now(monotonic=time.monotonic(), unix=time.time())


class LocalCluster:
    """One process, no Redis: every session and room is here. Nothing runs, nothing is asked."""

    enabled: Final = False
    node: str = "local"

    async def start(self, server: XesServer) -> None:
        return None

    async def stop(self) -> None:
        return None


class RemoteTransport:
    """What the home writes to for a session whose socket is at another node: its edge's inbox.

    Has the part of picows's WSTransport the server uses, so that a remote recipient is written
    to exactly like a local one.
    """

    __slots__ = ("cluster", "connection", "is_close_frame_sent")

    is_disconnected: Final = False

    def __init__(self, cluster: RedisCluster, connection: RemoteConnection) -> None:
        self.cluster = cluster
        self.connection = connection
        self.is_close_frame_sent = False

    def send(self, kind: object, data: bytes) -> None:
        connection = self.connection
        self.cluster.post(connection.edge, (SEND, connection.peer, data))

    def send_close(self, code: int, reason: bytes = b"") -> None:
        self.is_close_frame_sent = True
        connection = self.connection
        self.cluster.post(connection.edge, (CLOSE, connection.peer, int(code), bytes(reason)))

    def send_ping(self) -> None:  # pragma: no cover - the sweep pings local sockets only
        return None

    def disconnect(self, graceful: bool = True) -> None:
        return None


class RemoteConnection:
    """A session homed here whose socket is at another node (its ``edge``).

    The server treats it as a :class:`~xes.server.app.Connection`: the same attributes, and a
    ``transport`` that writes to the edge. Frames from the edge are numbered (``n``) so that they
    are handled once and in order even while the session moves between nodes.
    """

    __slots__ = ("peer", "signal_head", "tokens", "idle", "pinged", "error_streak", "backlog",
                 "fragments", "fresh", "transport", "challenge", "forwarded_for", "home", "edge",
                 "received", "early", "queued")

    def __init__(self, cluster: RedisCluster, peer: str, edge: str, challenge: str,
                 received: int = 0) -> None:
        self.peer = peer
        self.signal_head = m.signal_head(peer)
        self.tokens = 0.0            # the edge rate-limits and pings its socket
        self.idle = 0.0
        self.pinged = False
        self.error_streak = 0
        self.backlog: Any = None
        self.fragments = None
        self.fresh = True
        self.challenge = challenge
        self.forwarded_for: str | None = None  # the address stays at the edge
        self.home: str | None = None            # it is homed here
        self.edge = edge
        self.received = received                # the last frame number handled
        self.early: dict[int, tuple[Any, ...]] = {}
        self.transport = RemoteTransport(cluster, self)
        self.queued: list[bytes] | None = None  # server.outgoing's queue, as for a local socket


class RedisCluster:
    """This node's part in a cluster on Redis. See the module docstring."""

    enabled: Final = True

    def __init__(self, url: str, node: str | None = None) -> None:
        self.url = url
        self.node = node or new_node_id()
        self.server: XesServer | None = None
        self.redis: aioredis.Redis | None = None
        # The inbox path's own connections: one writes every batch, one reads this node's inbox.
        self._inbox_writer: DirectRedis | None = None
        self._inbox_reader: DirectRedis | None = None
        # The room snapshots' own: written on every join and leave, one writer at a time.
        self._snapshot_writer: DirectRedis | None = None
        # Outgoing envelopes: segments in order, each one entry per target node (see `barrier`).
        self._segments: list[dict[str, list[tuple[Any, ...]]]] = [{}]
        self._directory: dict[str, str] = {}       # peer -> home, to write with the next batch
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._last_id = b"0-0"
        self.alive: set[str] = set()                # other live nodes, as of the last beat
        # Rooms this node owns: id -> (epoch, claimed at, monotonic).
        self.owned: dict[str, tuple[int, float]] = {}
        self._ownership = asyncio.Lock()
        self._snapshot_versions: dict[str, int] = {}
        self._dirty_peers: list[str] = []
        self._listed_now: list[str] = []   # peers whose directory entry goes with the snapshots
        self._dirty_scheduled = False
        self.moved_to: dict[str, tuple[str, float]] = {}   # peer -> (new home, when)
        # Local sockets whose sessions came back here while frames were still on their way:
        # peer -> (first, last frame number awaited, frames to handle first, arrived so far).
        self._late: dict[str, tuple[int, int, list[bytes], dict[int, bytes]]] = {}
        self._late_since: dict[str, float] = {}
        # Frames for sessions not here yet (their move is on its way): peer -> (since, frames).
        self._strays: dict[str, tuple[float, list[tuple[Any, ...]]]] = {}
        self._dirty_rooms: set[str] = set()
        self._snapshots = asyncio.Lock()
        self._stopping = False
        self._directory_written = time.monotonic()
        self._boot: bytes | None = None
        self._judge_after = 0.0  # after Redis was away, judge no node dead before this
        # Counters for /metrics (helper `ops` reads them; nothing here depends on them).
        self.redis_round_trip_seconds = 0.0
        self.inbox_lag_seconds = 0.0
        self.envelopes_sent = 0
        self.envelopes_received = 0
        self.migrations = 0
        self.takeovers = 0
        self.redis_errors = 0
        self.redis_connected = False
        # The stranger queue: this node's side of its leadership (server/cluster_queue.py).
        self.queue_leader: QueueLeader | None = None
        self._queue_lock = asyncio.Lock()
        self._queue_settling = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self, server: XesServer) -> None:
        """Connect, check the cluster agrees on the identity secret, and start reading.

        Raises:
            ValueError: This node's identity secret differs from the cluster's.
            redis.RedisError: Redis cannot be reached.
        """
        import redis.asyncio as aioredis

        from .redis_direct import DirectRedis

        self.server = server
        self.redis = aioredis.Redis.from_url(self.url, protocol=2)
        self._inbox_writer = DirectRedis(self.url)
        self._inbox_reader = DirectRedis(self.url)
        self._snapshot_writer = DirectRedis(self.url)
        r = self.redis
        self._claim = r.register_script(_CLAIM)
        self._release = r.register_script(_RELEASE)
        self._republish = r.register_script(_REPUBLISH)
        self.queue_leader = QueueLeader(r, self.node, server.core.settings.match_relax_seconds,
                                        lease_ms=NODE_TTL_MS, journaled=True)
        fingerprint = hmac.new(server.identity_secret, b"xes cluster check", hashlib.sha256).hexdigest()
        await r.set("xes:identity-check", fingerprint, nx=True)
        agreed = await r.get("xes:identity-check")
        if agreed is not None and _text(agreed) != fingerprint:
            raise ValueError("this node's identity secret differs from the cluster's: give every "
                             "node the same --identity-secret-file (and the same --database)")
        await self._ensure_boot()
        newest = await r.xrevrange(self._inbox(self.node), count=1)
        self._last_id = _text(newest[0][0] or "0-0").encode() if newest else b"0-0"
        await self._beat_once()
        self.redis_connected = True
        loop = asyncio.get_running_loop()
        for work in (self._read_inbox(), self._write_batches(), self._beat()):
            self._tasks.append(loop.create_task(work))
        log.info("cluster node %s on Redis", self.node)

    async def stop(self) -> None:
        """Leave the cluster at once: the node's key goes, so the others take over its rooms now
        rather than after its expiry. The snapshots they use are written on every change."""
        self._stopping = True
        await self._flush_dirty()
        self._wake.set()
        for _ in range(50):  # the last batch out (bounded: Redis may be gone)
            if not any(self._segments[0]) and len(self._segments) == 1 and not self._directory:
                break
            await asyncio.sleep(0.02)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self.redis is not None:
            with contextlib.suppress(Exception):  # still in xes:nodes: the others find it dead
                await self.redis.delete(self._node_key(self.node))
            await self.redis.aclose()
        for direct in (self._inbox_writer, self._inbox_reader, self._snapshot_writer):
            if direct is not None:
                await direct.aclose()

    @staticmethod
    def _inbox(node: str) -> str:
        return f"xes:inbox:{node}"

    @staticmethod
    def _node_key(node: str) -> str:
        return f"xes:node:{node}"

    def _server(self) -> XesServer:
        assert self.server is not None
        return self.server

    # ------------------------------------------------------------------ sending between nodes

    def post(self, target: str, envelope: tuple[Any, ...]) -> None:
        """Queue one envelope for ``target``'s inbox; it leaves with this event-loop turn's batch."""
        segment = self._segments[-1]
        queue = segment.get(target)
        if queue is None:
            queue = segment[target] = []
        queue.append(envelope)
        if not self._wake.is_set():
            self._wake.set()

    def barrier(self) -> None:
        """What is posted from here on is written after what was posted before, whatever the
        target: a session's move must reach its new home before its edge learns of it."""
        if any(self._segments[-1].values()):
            self._segments.append({})

    async def _write_batches(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            segments, self._segments = self._segments, [{}]
            directory, self._directory = self._directory, {}
            ttl = self._directory_ttl()
            writer = self._inbox_writer
            assert writer is not None
            commands: list[tuple[EncodableT, ...]] = []
            count = 0
            oldest_kept = _oldest_kept()
            for segment in segments:
                for target, envelopes in segment.items():
                    if envelopes:
                        commands.append(("XADD", self._inbox(target), "MINID", "~", oldest_kept,
                                         "*", "d", _encode(envelopes), "n", self.node))
                        count += len(envelopes)
            for peer, home in directory.items():
                commands.append(("SET", f"xes:session:{peer}", home, "EX", ttl))
            while commands:
                try:
                    await writer.execute(commands)
                    self.envelopes_sent += count
                    break
                except Exception as exc:
                    # Redis is away: keep the batch, in order, and try again (a restart without
                    # persistence loses what was in the inboxes, not what is still here).
                    self._redis_failed(exc)
                    if self._stopping:
                        return
                    await asyncio.sleep(0.2)

    def _redis(self) -> aioredis.Redis:
        assert self.redis is not None
        return self.redis

    def _redis_failed(self, exc: Exception) -> None:
        self.redis_errors += 1
        if self.redis_connected:
            log.warning("lost Redis (%s); retrying", type(exc).__name__)
        self.redis_connected = False

    def _directory_ttl(self) -> int:
        core = self._server().settings.core
        return int(max(60.0, 2 * core.resume_cap_seconds))

    # ------------------------------------------------------------------ receiving

    async def _read_inbox(self) -> None:
        key = self._inbox(self.node)
        reader = self._inbox_reader
        assert reader is not None
        while True:
            try:
                [answer] = await reader.execute(
                    [("XREAD", "COUNT", 500, "BLOCK", 2000, "STREAMS", key, self._last_id)])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._redis_failed(exc)
                await asyncio.sleep(0.2)
                continue
            for entry_id, fields in _entries(answer):
                self._last_id = entry_id
                self.inbox_lag_seconds = max(0.0, time.time() - int(entry_id.split(b"-")[0]) / 1000)
                try:
                    envelopes = msgspec.msgpack.decode(fields[b"d"])
                    sender = _text(fields[b"n"])
                except Exception:
                    log.error("unreadable inbox entry skipped")
                    continue
                for envelope in envelopes:
                    self.envelopes_received += 1
                    try:
                        self._dispatch(envelope, sender)
                    except Exception as exc:
                        log.error("unexpected %s while handling a %r from another node",
                                  type(exc).__name__, envelope[0] if envelope else "?",
                                  exc_info=self._server().debug)

    def _dispatch(self, envelope: list[Any], sender: str) -> None:
        """One envelope from node ``sender``. What a home says about a socket counts only if
        the socket's session is homed there: a stale home (one presumed dead, which woke up)
        cannot write to, close or move a socket another node serves now."""
        kind = envelope[0]
        if kind == SEND:
            self._to_socket(envelope[1], envelope[2], sender)
        elif kind == FRAME or kind == CLOSED:
            self._from_edge(envelope, sender)
        elif kind == CLOSE:
            self._close_socket(envelope[1], envelope[2], envelope[3], sender)
        elif kind == HOME:
            self._rehome(envelope[1], envelope[2], sender)
        elif kind == RENAME:
            self._renamed_at_edge(envelope[1], envelope[2], envelope[3], sender)
        elif kind == ADOPT:
            self._adopt(*envelope[1:])
        elif kind == OPEN:
            self._open(envelope[1], envelope[2], envelope[3], envelope[4])

    # ------------------------------------------------------------------ the edge's part

    def forward(self, connection: Connection, data: bytes | memoryview) -> None:
        """A frame from a local socket whose session is homed elsewhere: on to its home."""
        connection.forwarded += 1
        home = connection.home
        assert home is not None
        self.post(home, (FRAME, connection.peer, connection.forwarded, bytes(data)))

    def socket_closed(self, connection: Connection, detach: bool) -> None:
        """A local socket whose session is homed elsewhere closed: its home detaches or ends it."""
        home = connection.home
        assert home is not None
        connection.forwarded += 1
        self.post(home, (CLOSED, connection.peer, connection.forwarded, detach))

    def _local(self, peer: str) -> Connection | None:
        connection = self._server().connections.get(peer)
        return connection if type(connection) is _local_type() else None

    def _to_socket(self, peer: str, data: bytes, sender: str) -> None:
        connection = self._local(peer)
        if connection is not None and connection.home == sender:
            self._server().outgoing.send(connection, data)  # after what the server queued

    def _close_socket(self, peer: str, code: int, reason: bytes, sender: str) -> None:
        connection = self._local(peer)
        if connection is None or connection.home != sender:
            return
        connection.home = None  # the home already let the session go, or detached it
        connection.deliver = self._server().deliver_here
        self._server().close(connection, code, reason.decode(errors="replace"))

    def _rehome(self, peer: str, node: str, sender: str) -> None:
        connection = self._local(peer)
        if connection is not None and connection.home == sender:
            connection.home = node

    def _renamed_at_edge(self, old: str, new: str, node: str, sender: str) -> None:
        server = self._server()
        connection = self._local(old)
        if connection is None or connection.home != sender:
            return
        del server.connections[old]
        connection.peer = new
        connection.home = node
        server.connections[new] = connection

    def _drop_dead_homes(self, dead: set[str]) -> None:
        """Sockets whose sessions were homed at a dead node: closed with 1012, so that their
        clients resume; the node that takes the rooms over has their sessions, detached."""
        server = self._server()
        for connection in list(server.connections.values()):
            if type(connection) is _local_type() and connection.home in dead:
                connection.home = None
                connection.deliver = server.deliver_here
                server.close(connection, CloseCode.SERVICE_RESTART, "node lost: resume", detach=False)

    # ------------------------------------------------------------------ the home's part

    def _from_edge(self, envelope: list[Any], sender: str) -> None:
        peer, n = envelope[1], envelope[2]
        # A frame passed on by a session's old home names the edge it came from.
        edge = envelope[4] if len(envelope) > 4 else sender
        server = self._server()
        found = server.connections.get(peer)
        connection = cast(object, found)
        if type(connection) is not RemoteConnection:
            if peer in self._late and found is not None:
                self._late_frame(found, envelope)
                return
            moved = self.moved_to.get(peer)
            if moved is not None:  # it moved on: pass the frame after it, in order
                self.post(moved[0], (*envelope[:4], edge))
            elif peer not in server.core.clients:  # it is moving here: kept for its arrival
                self._strays.setdefault(peer, (time.monotonic(), []))[1].append(
                    (*envelope[:4], edge))
            elif envelope[0] == FRAME:
                # The session is here, detached or on another socket: this edge was presumed
                # dead. Its socket is closed so that the client resumes.
                self.post(edge, (CLOSE, peer, int(CloseCode.SERVICE_RESTART), b"resume"))
            return
        if connection.edge != edge:
            if envelope[0] == FRAME:  # an old socket's, replaced by a resume: it is closed
                self.post(edge, (CLOSE, peer, int(CloseCode.REPLACED), b"replaced"))
            return
        if n <= connection.received:
            return  # handled already
        if n > connection.received + 1:
            connection.early[n] = (*envelope[:4], edge)  # one still on its way via the old home
            return
        self._handle_from_edge(connection, envelope)
        while connection.early and cast(object, server.connections.get(peer)) is connection:
            following = connection.early.pop(connection.received + 1, None)
            if following is None:
                break
            self._handle_from_edge(connection, list(following))

    def _handle_from_edge(self, connection: RemoteConnection, envelope: list[Any]) -> None:
        server = self._server()
        connection.received = envelope[2]
        if envelope[0] == FRAME:
            server.receive(cast("Connection", connection), envelope[3])
        else:
            server.closed(cast("Connection", connection), detach=bool(envelope[3]))

    def renamed(self, connection: RemoteConnection, old: str) -> None:
        """A remote socket's provisional session resumed session ``connection.peer``."""
        connection.signal_head = m.signal_head(connection.peer)
        self.post(connection.edge, (RENAME, old, connection.peer, self.node))
        self._directory[connection.peer] = self.node

    def _open(self, peer: str, edge: str, challenge: str, data: bytes) -> None:
        """A fresh socket at ``edge`` sends ``resume`` for a session homed here: it gets a
        provisional session here, as a local socket would, and the resume runs as usual."""
        server = self._server()
        server.core.connect(peer, secrets.token_urlsafe(16), challenge)  # its hello was sent
        connection = RemoteConnection(self, peer, edge, challenge)
        server.connections[peer] = cast("Connection", connection)
        server.receive(cast("Connection", connection), data)

    def _adopt(self, peer: str, edge: str, received: int, challenge: str, transfer: bytes,
               frames: list[bytes]) -> None:
        """A session moved here, with the frames its old home had not handled yet."""
        server = self._server()
        self.moved_to.pop(peer, None)
        import_session(server.core, decode_session_transfer(transfer))
        if edge == self.node:
            self._came_back(peer, received, frames)
            return
        remote = RemoteConnection(self, peer, edge, challenge, received)
        remote.fresh = False
        server.connections[peer] = cast("Connection", remote)
        self._directory[peer] = self.node
        self.migrations += 1
        for frame in frames:
            server.receive(cast("Connection", remote), frame)
        _, strays = self._strays.pop(peer, (0.0, []))
        for stray in strays:
            self._from_edge(list(stray), edge)

    def _came_back(self, peer: str, received: int, frames: list[bytes]) -> None:
        """The session moved to the node holding its socket: homed here again, like any local
        session. Frames it forwarded that its old home had not handled yet are on their way
        back (through ``moved_to``): until they are in, new frames wait, so order holds."""
        server = self._server()
        connection = self._local(peer)
        if connection is None:  # its socket closed meanwhile
            server.execute(server.core.detach(peer, _now()))
            return
        connection.home = None
        connection.deliver = server.deliver_here
        connection.fresh = False
        late = connection.forwarded - received
        if late > 0:
            connection.backlog = deque()
            self._late[peer] = (received + 1, connection.forwarded, frames, {})
            self._late_since[peer] = time.monotonic()
            return
        self._replay(connection, frames)

    def _late_frame(self, connection: Connection, envelope: list[Any]) -> None:
        first, last, frames, arrived = self._late[connection.peer]
        if envelope[0] == FRAME and first <= envelope[2] <= last:
            arrived[envelope[2]] = envelope[3]
        if len(arrived) == last - first + 1:
            del self._late[connection.peer]
            self._late_since.pop(connection.peer, None)
            self._replay(connection, frames + [arrived[n] for n in range(first, last + 1)])

    def _replay(self, connection: Connection, frames: list[bytes]) -> None:
        """Handle ``frames`` for a local socket, then whatever waited in its backlog."""
        server = self._server()
        waiting, connection.backlog = connection.backlog, None
        pending = deque(frames)
        if waiting:
            pending.extend(waiting)
        while pending and server._live(connection):
            server.receive(connection, pending.popleft())

    def _migrate(self, connection: Connection, owner: str,
                 frames: list[bytes]) -> None:
        """Move ``connection``'s session to ``owner`` with ``frames`` (not yet handled) for it
        to handle first; the edge sends the next ones there."""
        server = self._server()
        peer = connection.peer
        transfer = encode_transfer(export_session(server.core, peer, _now()))
        server.core.release(peer)
        if connection.backlog:
            frames.extend(bytes(f) for f in connection.backlog)
        connection.backlog = None
        self.barrier()
        if type(connection) is _local_type():
            connection.home = owner
            connection.deliver = self.forward
            self.post(owner, (ADOPT, peer, self.node, connection.forwarded, connection.challenge,
                              transfer, frames))
            return
        remote = cast(RemoteConnection, cast(object, connection))
        del server.connections[peer]
        self.moved_to[peer] = (owner, time.monotonic())
        # The edge learns first, so that it takes the owner's frames (the owner writes only
        # after it read the move, which is after this); frames the edge then sends the owner
        # may reach it before the move: it keeps them until then (`_strays`).
        self.post(remote.edge, (HOME, peer, owner))
        self.barrier()
        self.post(owner, (ADOPT, peer, remote.edge, remote.received, remote.challenge, transfer,
                          frames))
        for n in sorted(remote.early):
            self.post(owner, remote.early[n])

    async def join(self, connection: Connection, message: m.Join,
                   data: bytes) -> None:
        """A ``join`` at this session's home: here if this node owns the room (or now claims
        it), else the session moves to the room's owner with this frame."""
        server = self._server()
        owner = await self._owner(message.room)
        if not server._live(connection):
            return
        if owner == self.node:
            self._directory[connection.peer] = self.node
            await server._with_password(connection, message)
        else:
            self._migrate(connection, owner, [data])

    async def match(self, connection: Connection, message: m.MatchRequest, data: bytes) -> None:
        """``match`` at this session's home: strangers are paired by one queue, whose node
        (:meth:`queue_home`) holds every queued session; one standing nowhere moves there with
        this frame (one in a match room is handled where it is: it leaves that room first)."""
        server = self._server()
        home = await self.queue_home()
        if not server._live(connection):
            return
        client = server.core.clients.get(connection.peer)
        if home == self.node or client is None or client.room is not None or client.knocking:
            # Listed at once (not at the next refresh): a queued session may resume anywhere.
            self._directory[connection.peer] = self.node
            self._wake.set()
            await server.handle_now(connection, message)
        else:
            self._migrate(connection, home, [data])

    async def queue_home(self) -> str:
        """The node whose queue pairs strangers: the queue's leader (server/cluster_queue.py).
        Nobody leads, or the leader's lease lapsed: this node takes the lead. A leader whose
        node is dead is waited out (its lease lapses with its node key)."""
        leader = self._queue()
        deadline = time.monotonic() + 2 * NODE_TTL_MS / 1000
        while leader.epoch is None:
            holder = await self._redis().get(leader.keys.leader)
            if holder is None:
                decided = await leader.acquire(_now())
                if decided is not None:
                    self._lead_queue(decided)
                    break
                continue
            node = _text(holder)
            if node != self.node and await self._redis().exists(self._node_key(node)):
                return node
            if time.monotonic() > deadline:
                return self.node  # Redis says a dead node leads still: match here meanwhile
            await asyncio.sleep(0.25)
        return self.node

    def _queue(self) -> QueueLeader:
        assert self.queue_leader is not None
        return self.queue_leader

    def _lead_queue(self, decided: list[Match]) -> None:
        """This node now leads: its core's queue is the one rebuilt from Redis, and its core's
        matches wait for their commit (``Signalling.defer_matches``)."""
        core = self._server().core
        queue = self._queue().queue
        assert isinstance(queue, JournaledQueue)
        before, core.queue = core.queue, queue
        core.defer_matches = True
        core.decided.extend(decided)
        for ticket in queue.waiting():
            # Its session was homed at the previous leader, which died: gone with it (as every
            # session homed at a dead node and standing in no room; docs/architecture.md).
            if ticket.peer not in core.clients:
                queue.cancel(ticket.peer)
        for ticket in before.waiting():  # strangers that waited here before: in the queue now
            if ticket.peer not in queue:
                core.decided.extend(queue.enqueue(ticket))
        log.info("node %s leads the stranger queue (epoch %s)", self.node, self._queue().epoch)
        self._queue_touched()

    def _queue_touched(self) -> None:
        """The core may have changed its queue or decided matches: mirror and commit them, from
        one task, in order; a committed match starts its room then."""
        leader = self.queue_leader
        if leader is None or leader.epoch is None or self._queue_settling:
            return
        core = self._server().core
        queue = core.queue
        if not core.decided and not (isinstance(queue, JournaledQueue) and queue.journal):
            return
        self._queue_settling = True
        task = asyncio.get_running_loop().create_task(self._settle_queue())
        self._server()._tasks.add(task)
        task.add_done_callback(self._server()._tasks.discard)

    async def _settle_queue(self) -> None:
        server = self._server()
        leader = self._queue()
        try:
            async with self._queue_lock:
                while leader.epoch is not None:
                    core = server.core
                    queue = core.queue
                    if not core.decided and not (isinstance(queue, JournaledQueue) and queue.journal):
                        break
                    decided, core.decided = core.decided, []
                    gone: list[Match] = []
                    try:
                        await leader.flush(_now())
                        committed = await leader.commit(decided)
                    except NotLeader as refused:
                        committed = refused.committed
                        self._queue_lost()
                    except TicketGone as lost:  # Redis lost its data: these two queue again
                        committed = lost.committed
                        gone = decided[len(committed):]
                    for match in committed:
                        server.execute(core.start_decided(match, _now()))
                    for match in gone:
                        server.execute(core.requeue_decided(match, _now()))
                    server._schedule_tick()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._redis_failed(exc)
        finally:
            self._queue_settling = False

    async def _republish_queue(self) -> None:
        """Redis came back empty while this node led the queue: lead again under a newer epoch
        and write the waiting tickets back in order (a suspended one: its session is detached)."""
        core = self._server().core
        leader = self._queue()
        async with self._queue_lock:
            tickets = [(t, core.clients[t.peer].detached_at is not None, None)
                       for t in core.queue.waiting() if t.peer in core.clients]
            if await leader.republish(tickets, _now()):
                assert leader.queue is not None
                core.queue = leader.queue
            else:
                self._queue_lost()

    def _queue_lost(self) -> None:
        """Another node leads the queue now (this one was paused or cut off past its lease):
        what this node decided is void, and its waiting strangers' tickets are the new leader's
        to drop. Their sessions end (1012): their clients find them gone and queue afresh there."""
        server = self._server()
        core = server.core
        log.warning("node %s no longer leads the stranger queue", self.node)
        waiting = [peer for peer, client in core.clients.items()
                   if client.queued is not None and client.room is None]
        core.queue = MatchQueue(core.settings.match_relax_seconds)  # no journal: nobody reads it
        core.decided.clear()
        core.defer_matches = False
        for peer in waiting:
            connection = server.connections.get(peer)
            if connection is not None:
                server.close(connection, CloseCode.SERVICE_RESTART, "the queue moved: match again",
                             detach=False)
            else:
                server.execute(core.disconnect(peer))

    async def _owner(self, room: str) -> str:
        """The room's live owner; this node if nobody (alive) owned it."""
        async with self._ownership:
            if room in self.owned:
                return self.node
            answer = await self._claim(keys=[f"xes:room:{room}"],
                                       args=[self.node, "xes:node:", "xes:owned:", room])
            owner, epoch, snapshot = _text(answer[0]), int(answer[1]), answer[2]
            if owner == self.node:
                self.owned[room] = (epoch, time.monotonic())
                if snapshot:
                    self._import(room, snapshot)
            return owner

    async def resume_elsewhere(self, connection: Connection, message: m.Resume,
                               data: bytes) -> None:
        """``resume`` of a session not homed here: ask the directory, and hand the socket to
        the session's home (waiting for a dead home's rooms to be taken over).

        Raises:
            SessionGone: Nobody has it.
        """
        server = self._server()
        deadline = time.monotonic() + _TAKEOVER_WAIT_SECONDS
        node: str | None = None
        while True:
            if message.peer in server.core.clients:
                # This node took the session's room over while the resume waited (its home
                # died): the session is here now, and the resume is an ordinary local one.
                node = self.node
                break
            home = await self._redis().get(f"xes:session:{message.peer}")
            node = _text(home) if home is not None else None
            settling = time.monotonic() < self._judge_after  # Redis is being filled again
            if node is None and not settling or node == self.node \
                    or node is not None and await self._redis().exists(self._node_key(node)):
                break
            if time.monotonic() > deadline or not server._live(connection):
                node = None
                break
            await asyncio.sleep(0.25)
        if not server._live(connection):
            return
        if node == self.node and message.peer in server.core.clients:
            server._resume(connection, message)
            return
        if node is None or node == self.node:  # nobody has it, or it was here and ended
            raise SessionGone(_SESSION_GONE, ref="resume")
        server.core.disconnect(connection.peer)  # its provisional session lives at the home now
        connection.home = node
        connection.deliver = self.forward
        self.barrier()
        self.post(node, (OPEN, connection.peer, self.node, connection.challenge, data))
        waiting, connection.backlog = connection.backlog, None
        for frame in waiting or ():
            self.forward(connection, frame)

    # ------------------------------------------------------------------ room snapshots

    def touched(self, actions: list[Action], written: str | None = None) -> None:
        """The core produced ``actions``: the rooms their recipients are in may have changed
        (every change of a room is announced to someone in it). Written once per loop turn.

        Except room ``written``, whose snapshot already holds the change (``write_room_now``):
        sending the announcement only numbers it in its recipients' outboxes, which a takeover
        does not need (a session taken over continues above the client's ``seq``). Written
        again, the snapshot could even name a ``seq`` its client never received (the owner may
        die before the frame leaves), and that resume would be refused."""
        self._queue_touched()
        recipients = [action.to for action in actions if type(action) is Send]
        if written is not None:
            clients = self._server().core.clients
            recipients = [peer for peer in recipients
                          if (client := clients.get(peer)) is None or client.room_id != written]
        self._dirty_peers.extend(recipients)
        if not self._dirty_scheduled:
            self._dirty_scheduled = True
            asyncio.get_running_loop().call_soon(self._schedule_flush_dirty)

    def write_room_now(self, peer: str) -> asyncio.Task[None]:
        """Write the snapshot of the room ``peer`` is in, and ``peer``'s directory entry, now: a
        task done once both are in Redis (or Redis failed). A join, or a host's rule change, is
        told to anyone only then, so that what they saw confirmed survives this node's death (a
        takeover starts from the last snapshot; a resume elsewhere finds the session's home in
        the directory)."""
        self._dirty_peers.append(peer)
        self._listed_now.append(peer)
        return self._schedule_flush_dirty()

    def _schedule_flush_dirty(self) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._flush_dirty())
        self._server()._tasks.add(task)
        task.add_done_callback(self._server()._tasks.discard)
        return task

    async def _flush_dirty(self) -> None:
        """Write the snapshot of every owned room that changed, one writer at a time, in order."""
        self._dirty_scheduled = False
        async with self._snapshots:
            peers, self._dirty_peers = self._dirty_peers, []
            listed, self._listed_now = self._listed_now, []
            rooms, self._dirty_rooms = self._dirty_rooms, set()
            server = self._server()
            clients = server.core.clients
            rooms.update(room for peer in peers
                         if (client := clients.get(peer)) is not None and (room := client.room_id))
            now = _now()
            # Every changed room in one round trip: a busy node changes thousands a second. On
            # the snapshots' own connection, with the script's text (EVAL): through redis-py's
            # pipeline each flush also asked Redis whether the script was loaded (a round trip
            # more) and paid the pipeline's machinery, and a flush is made for every join.
            commands: list[list[EncodableT]] = []
            written: list[str] = []
            for room_id in sorted(rooms):
                if room_id not in server.core.rooms:
                    continue
                if room_id not in self.owned:
                    # Made here without a join (a match's room, a room restored from disk):
                    # claimed now, so that a node can take it over. Ids are 128 random bits,
                    # so only a restored room can find another owner; that one wins.
                    try:
                        if await self._owner(room_id) != self.node:
                            continue
                    except Exception as exc:
                        self._redis_failed(exc)
                        continue
                owned = self.owned.get(room_id)
                if owned is None or room_id not in server.core.rooms:
                    continue
                version = self._snapshot_versions.get(room_id, 0) + 1
                self._snapshot_versions[room_id] = version
                data = encode_transfer(export_room(server.core, room_id, now))
                commands.append(["EVAL", _WRITE, 1, f"xes:room:{room_id}",
                                 self.node, owned[0], version, data])
                written.append(room_id)
            if not written:
                return
            ttl = self._directory_ttl()
            for peer in listed:
                if peer in server.core.clients:
                    commands.append(["SET", f"xes:session:{peer}", self.node, "EX", ttl])
            writer = self._snapshot_writer
            assert writer is not None  # made in start()
            try:
                results = await writer.execute(commands)
            except Exception as exc:
                self._redis_failed(exc)
                return  # the republish after Redis is back writes every room again
            for room_id, ok in zip(written, results[:len(written)], strict=True):
                if not ok:
                    self._fenced(room_id)

    def _fenced(self, room_id: str) -> None:
        """Another node owns this room now (we were thought dead): let go of it; its clients
        resume at the new owner, which took the sessions over from the last snapshot."""
        server = self._server()
        self.owned.pop(room_id, None)
        log.warning("room ownership lost to another node; handing its sessions over")
        for client in server.core.release_room(room_id):
            connection = server.connections.get(client.id)
            if connection is None:
                continue
            del server.connections[client.id]
            server.outgoing.flush(connection)
            connection.transport.send_close(cast(Any, CloseCode.SERVICE_RESTART), b"room moved: resume")

    def _import(self, room_id: str, snapshot: bytes) -> None:
        """Take over a dead owner's room from its snapshot: every session detached, to resume."""
        server = self._server()
        try:
            room = import_room(server.core, decode_room_transfer(snapshot), _now())
        except ValueError as exc:
            log.error("could not take over a room: %s", exc)
            return
        self.takeovers += 1
        for peer in (*room.members, *room.lobby):
            self._directory[peer] = self.node
            self.moved_to.pop(peer, None)
        self._wake.set()
        server._schedule_tick()
        self._dirty_rooms.add(room_id)  # written under the new epoch
        self.touched([])

    async def _release_empty_rooms(self) -> None:
        """Give up every room that has been empty for _RELEASE_AFTER_SECONDS, in one round trip
        (a node that just carried thousands of short calls has as many rooms to give up)."""
        server = self._server()
        now = time.monotonic()
        async with self._ownership:
            empty = [(room_id, epoch) for room_id, (epoch, claimed) in self.owned.items()
                     if room_id not in server.core.rooms and now - claimed >= _RELEASE_AFTER_SECONDS]
            if not empty:
                return
            pipe = self._redis().pipeline(transaction=False)
            for room_id, epoch in empty:
                await self._release(keys=[f"xes:room:{room_id}", f"xes:owned:{self.node}"],
                                    args=[self.node, epoch, room_id], client=pipe)
            await pipe.execute()
            for room_id, epoch in empty:
                if self.owned.get(room_id, (None, 0.0))[0] == epoch:
                    del self.owned[room_id]
                    self._snapshot_versions.pop(room_id, None)

    # ------------------------------------------------------------------ liveness

    async def _beat(self) -> None:
        """Renew this node's leases every _BEAT_SECONDS, and do the chores (dead nodes, the
        directory, empty rooms to let go of) beside it, not before the next renewal: after a
        burst of calls the chores may take seconds (thousands of rooms to give up), and a late
        renewal would make the other nodes take this busy but live node's rooms."""
        chores: asyncio.Task[bool] | None = None
        try:
            while True:
                await asyncio.sleep(_BEAT_SECONDS)
                if not await self._noting_redis_errors(self._renew_leases()):
                    continue
                if chores is None or chores.done():
                    chores = asyncio.get_running_loop().create_task(
                        self._noting_redis_errors(self._chores()))
        finally:
            if chores is not None:
                chores.cancel()

    async def _noting_redis_errors(self, work: Awaitable[None]) -> bool:
        """Run `work`; False if it failed, the failure counted as Redis's (it is retried at the
        next beat, and a lost connection is what /healthz reports)."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._redis_failed(exc)
            return False
        return True

    async def _ensure_boot(self) -> bool:
        """Whether Redis lost everything since we last looked (``xes:boot`` is gone)."""
        r = self._redis()
        got = await r.get("xes:boot")
        if got is None:
            await r.set("xes:boot", secrets.token_hex(8), nx=True)
            got = await r.get("xes:boot")
        boot = _text(got).encode() if got is not None else None
        lost = self._boot is not None and boot != self._boot
        self._boot = boot
        return lost

    async def _beat_once(self) -> None:
        await self._renew_leases()
        await self._chores()

    async def _renew_leases(self) -> None:
        """This node's key (its liveness) and, if it leads the stranger queue, that lease."""
        r = self._redis()
        started = time.perf_counter()
        previous = await r.set(self._node_key(self.node), b"1", px=NODE_TTL_MS, get=True)
        self.redis_round_trip_seconds = time.perf_counter() - started
        if not self.redis_connected and self.server is not None and self._tasks:
            log.info("Redis is back")
            self._judge_after = time.monotonic() + _SETTLE_SECONDS
        self.redis_connected = True
        if await self._ensure_boot():
            # Every node's key went with the data: nobody is judged dead until all have beaten.
            self._judge_after = time.monotonic() + _SETTLE_SECONDS
            await self._republish_all()
        elif previous is None and self._tasks:
            await self._presumed_dead()
        leader = self.queue_leader
        if leader is not None and leader.epoch is not None and not await leader.renew():
            self._queue_lost()

    async def _chores(self) -> None:
        """Find dead nodes (and take their rooms), refresh the session directory, forget old
        moves, give up empty rooms."""
        r = self._redis()
        await r.sadd("xes:nodes", self.node)
        nodes = {_text(n) for n in await r.smembers("xes:nodes")} | self._referenced()
        nodes.discard(self.node)
        pipe = r.pipeline(transaction=False)
        ordered = sorted(nodes)
        for node in ordered:
            pipe.exists(self._node_key(node))
        alive = {node for node, exists in zip(ordered, await pipe.execute(), strict=True) if exists}
        dead = nodes - alive
        self.alive = alive
        if dead and time.monotonic() >= self._judge_after:
            await self._handle_dead(dead)
        now = time.monotonic()
        if now - self._directory_written > self._directory_ttl() / 4:
            self._directory_written = now
            for peer, client in self._server().core.clients.items():
                if client.room is not None or client.knocking is not None or client.queued:
                    self._directory[peer] = self.node
            self._wake.set()
        for peer, (_, when) in list(self.moved_to.items()):
            if now - when > _MOVED_SECONDS:
                del self.moved_to[peer]
        for peer, (since, _) in list(self._strays.items()):
            if now - since > _MOVED_SECONDS:
                del self._strays[peer]
        for peer, since in list(self._late_since.items()):
            if now - since > _MOVED_SECONDS:  # the old home died with them: go on without
                del self._late_since[peer]
                first, last, frames, arrived = self._late.pop(peer)
                connection = self._local(peer)
                if connection is not None:
                    self._replay(connection, frames + [arrived[n] for n in sorted(arrived)])
        await self._release_empty_rooms()

    async def _presumed_dead(self) -> None:
        """This node's key had expired (it was paused, or cut from Redis, for longer than its
        life): the others took its rooms and dropped its sockets. Let go of what is no longer
        ours, and close the sockets whose homes no longer count on this edge, so they resume."""
        log.warning("this node was presumed dead; checking what it still owns")
        r = self._redis()
        for room_id, (epoch, _) in list(self.owned.items()):
            owner, current = await r.hmget(f"xes:room:{room_id}", ["owner", "epoch"])
            if owner is None or _text(owner) != self.node or int(current or 0) != epoch:
                self._fenced(room_id)
        self._drop_dead_homes({c.home for c in self._server().connections.values()
                               if c.home is not None})

    def _referenced(self) -> set[str]:
        """Nodes this one depends on: homes of its sockets, edges of its sessions. Checked even
        once another node has handled their death and taken them out of ``xes:nodes``."""
        nodes = {node for node, _ in self.moved_to.values()}
        for found in self._server().connections.values():
            connection = cast(object, found)
            if type(connection) is RemoteConnection:
                nodes.add(connection.edge)
            elif found.home is not None:
                nodes.add(found.home)
        return nodes

    async def _handle_dead(self, dead: set[str]) -> None:
        server = self._server()
        # Edge lost: its sockets are gone; their sessions detach here, to resume elsewhere.
        for found in list(server.connections.values()):
            connection = cast(object, found)
            if type(connection) is RemoteConnection and connection.edge in dead:
                server.closed(found, detach=True)
        self._drop_dead_homes(dead)
        for peer, (node, _) in list(self.moved_to.items()):
            if node in dead:
                del self.moved_to[peer]
        r = self._redis()
        for node in sorted(dead):
            rooms = await r.smembers(f"xes:owned:{node}")
            for room in sorted(rooms):
                await self._owner(_text(room))
            if not await r.scard(f"xes:owned:{node}"):
                await r.srem("xes:nodes", node)
                await r.delete(self._inbox(node), f"xes:owned:{node}")

    async def _republish_all(self) -> None:
        """Redis came back empty: write again what this node holds, and read the inbox anew."""
        server = self._server()
        # The inbox is read on from the last id: new entries' ids are later (Redis's clock).
        log.warning("Redis lost its data; publishing this node's rooms and sessions again")
        now = _now()
        for room_id, (epoch, _) in list(self.owned.items()):
            if room_id not in server.core.rooms:
                continue
            data = encode_transfer(export_room(server.core, room_id, now))
            ok = await self._republish(keys=[f"xes:room:{room_id}"],
                                       args=[self.node, epoch, data, f"xes:owned:{self.node}", room_id])
            if not ok:
                self._fenced(room_id)
        for peer in server.core.clients:
            self._directory[peer] = self.node
        if self.queue_leader is not None and self.queue_leader.epoch is not None:
            await self._republish_queue()
        fingerprint = hmac.new(server.identity_secret, b"xes cluster check", hashlib.sha256).hexdigest()
        await self._redis().set("xes:identity-check", fingerprint, nx=True)
        self._wake.set()


def _oldest_kept() -> str:
    """The id below which inbox entries are trimmed (Redis ids are milliseconds)."""
    return f"{int(time.time() * 1000) - _INBOX_KEEP_MS}-0"


def _local_type() -> type[Connection]:
    """The class of a local socket (imported late: app imports this module)."""
    from .app import Connection

    return Connection


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _encode(envelopes: list[tuple[Any, ...]]) -> bytes:
    return msgspec.msgpack.encode(envelopes)


def _entries(answer: Any) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """XREAD's entries, in order, from its RESP2 reply: nil, or ``[[stream, [[id, [field,
    value, ...]], ...]], ...]``."""
    out: list[tuple[bytes, dict[bytes, bytes]]] = []
    for _stream, entries in answer or ():
        for entry_id, fields in entries:
            out.append((entry_id, dict(zip(fields[::2], fields[1::2], strict=True))))
    return out


def cluster_for(redis_url: str | None, node_id: str | None) -> LocalCluster | RedisCluster:
    """The cluster this server is part of: Redis if given a URL, else just itself."""
    return RedisCluster(redis_url, node_id) if redis_url else LocalCluster()


