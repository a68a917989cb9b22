"""What an operator watches: counters kept as plain ints, rendered for Prometheus only when scraped.

The server counts with ``+= 1`` on a :class:`Counters` (slots, no locks: one event loop); the
gauges (connections, sessions, rooms, the queue) are read from the server's own dictionaries at
scrape time. Nothing here runs on the relay path beyond that one increment.

Every series is an aggregate: no label ever holds a peer id, a room id, a name or an address, and
the label values come from XES's own tables (error and close codes), never from a client. So the
page can be scraped without leaking anything about a user; it is still served only on
``--metrics-port``, on loopback unless told otherwise (docs/deploy.md, "Metrics"), so that a
reverse proxy forwarding everything cannot publish it by accident.

With ``--redis``, :class:`RedisProbe` pings Redis once a second on a connection of its own: its
round trip is a gauge, and ``/healthz`` answers 503 (with the reason) when Redis stops answering.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, cast

from ..protocol.codes import CloseCode, ErrorCode

if TYPE_CHECKING:
    from .app import XesServer
    from .cluster import RedisCluster

__all__ = ["CONTENT_TYPE", "Counters", "RedisProbe", "RedisStatus", "render"]

log = logging.getLogger("xes.redis")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# How often the probe pings Redis, and how long one ping may take before Redis counts as gone.
PROBE_SECONDS: Final = 1.0
PROBE_TIMEOUT_SECONDS: Final = 1.0
# Without a successful ping for this long, Redis counts as unreachable even if no ping failed
# (a ping stuck in a half-open connection).
STALE_AFTER_SECONDS: Final = 3.0


class Counters:
    """Monotonic counts since the process started (Prometheus counters)."""

    __slots__ = ("connections_opened", "relayed", "detached", "resumes", "errors", "closes")

    def __init__(self) -> None:
        self.connections_opened = 0
        self.relayed = 0          # `signal` messages relayed (the hot path's one increment)
        self.detached = 0         # sessions whose socket was lost and that wait for a resume
        self.resumes = 0          # resumes accepted (refused ones are errors: session-gone)
        # Refused messages by `error` code, every code present from the start (a series that
        # appears only on its first error breaks `rate()` over it).
        self.errors: dict[str, int] = dict.fromkeys(ErrorCode, 0)
        # Connections the server closed, by close code (floods, error streaks, 1011, ...).
        self.closes: dict[int, int] = dict.fromkeys(CloseCode, 0)


@dataclass(frozen=True, slots=True)
class RedisStatus:
    """The probe's last word: whether Redis answers, and if not, why (no address, no secret)."""

    up: bool
    reason: str
    roundtrip_seconds: float


class RedisProbe:
    """Pings Redis once a second on its own connection; a PING stuck behind the inbox's
    blocking read would measure the reader, not Redis."""

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic) -> None:
        import redis.asyncio  # only nodes with --redis load the client
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # No retries: a failed ping is reported now; the next one, a second later, is the retry.
        self._client = redis.asyncio.Redis.from_url(
            url, socket_timeout=PROBE_TIMEOUT_SECONDS, socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0), single_connection_client=True)
        self._clock = clock
        self._last_ok: float | None = None
        self._roundtrip = 0.0
        self._failure = ""  # why the last ping failed; "" after a success, or before the first
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Ping once now (so /healthz is right from the first request), then every second."""
        await self.ping()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            await self.ping()

    async def ping(self) -> None:
        started = time.perf_counter()
        try:
            await asyncio.wait_for(self._client.ping(), PROBE_TIMEOUT_SECONDS)
        except OSError as exc:  # TimeoutError (ours) is one too
            self._failed(f"no answer ({type(exc).__name__})")
        except Exception as exc:  # redis.exceptions.*: connection refused, loading, auth
            self._failed(type(exc).__name__)
        else:
            self._roundtrip = time.perf_counter() - started
            self._last_ok = self._clock()
            if self._failure:
                log.warning("redis answers again (round trip %.1f ms)", self._roundtrip * 1000)
            self._failure = ""

    def _failed(self, why: str) -> None:
        # Once per outage, and never the URL: it may hold a password.
        if not self._failure:
            log.error("redis unreachable: %s; /healthz answers 503 until it is back", why)
        self._failure = why

    def status(self) -> RedisStatus:
        if self._last_ok is None:
            return RedisStatus(False, f"redis unreachable: {self._failure or 'not checked yet'}",
                               0.0)
        since = self._clock() - self._last_ok
        if self._failure or since > STALE_AFTER_SECONDS:
            why = self._failure or "no answer"
            return RedisStatus(False, f"redis unreachable for {since:.0f} s: {why}",
                               self._roundtrip)
        return RedisStatus(True, "", self._roundtrip)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._client.aclose()


def _metric(lines: list[str], name: str, kind: str, help_text: str,
            samples: list[tuple[str, float]]) -> None:
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")
    for labels, value in samples:
        lines.append(f"{name}{labels} {value!r}")


def _process_samples(lines: list[str]) -> None:
    """The standard process_* series Prometheus's own clients export (Linux)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    _metric(lines, "process_cpu_seconds_total", "counter", "CPU time used by this process.",
            [("", usage.ru_utime + usage.ru_stime)])
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        _metric(lines, "process_resident_memory_bytes", "gauge", "Resident memory.",
                [("", resident)])
        _metric(lines, "process_open_fds", "gauge", "Open file descriptors (sockets included).",
                [("", len(os.listdir("/proc/self/fd")))])
        _metric(lines, "process_max_fds", "gauge", "The limit of open file descriptors.",
                [("", resource.getrlimit(resource.RLIMIT_NOFILE)[0])])
    except OSError:
        pass  # not Linux: the XES series are what matters


def _cluster_samples(lines: list[str], cluster: RedisCluster) -> None:
    """What the cluster layer counts (server.cluster), with --redis."""
    _metric(lines, "xes_inbox_lag_seconds", "gauge",
            "How old the newest message from another node was when this node read it "
            "(Redis's clock against this node's).", [("", cluster.inbox_lag_seconds)])
    _metric(lines, "xes_cluster_nodes", "gauge", "Live nodes, this one included, at the last beat.",
            [("", len(cluster.alive) + 1)])
    _metric(lines, "xes_cluster_rooms_owned", "gauge", "Rooms whose owner this node is.",
            [("", len(cluster.owned))])
    for name, help_text, value in (
            ("xes_cluster_envelopes_sent_total", "Messages sent to other nodes' inboxes.",
             cluster.envelopes_sent),
            ("xes_cluster_envelopes_received_total", "Messages read from this node's inbox.",
             cluster.envelopes_received),
            ("xes_cluster_migrations_total", "Sessions moved here to the room they joined.",
             cluster.migrations),
            ("xes_cluster_takeovers_total", "Rooms taken over from a dead or fenced owner.",
             cluster.takeovers),
            ("xes_cluster_redis_errors_total", "Redis operations of the cluster layer that failed.",
             cluster.redis_errors)):
        _metric(lines, name, "counter", help_text, [("", value)])


def render(server: XesServer, started_at: float) -> bytes:
    """The metrics page, in Prometheus's text format (version 0.0.4)."""
    from .app import Connection  # the module that imports this one

    counts, core = server.counts, server.core
    detached = sum(1 for session in core.clients.values() if session.detached_at is not None)
    # In a cluster `connections` also holds the sessions attached here through another node's
    # socket (RemoteConnection): the sockets are the local ones.
    sockets = sum(1 for connection in server.connections.values() if type(connection) is Connection)
    lines: list[str] = []
    node_id = server.cluster.node if server.cluster.enabled else server.settings.node_id or "local"
    node = node_id.replace("\\", "\\\\").replace('"', '\\"')
    _metric(lines, "xes_info", "gauge", "This node (the value is always 1).",
            [(f'{{node="{node}"}}', 1)])
    _metric(lines, "xes_start_time_seconds", "gauge", "When this process started (Unix time).",
            [("", started_at)])
    _metric(lines, "xes_connections", "gauge", "Open signalling WebSockets on this node.",
            [("", sockets)])
    _metric(lines, "xes_connections_opened_total", "counter", "Signalling WebSockets opened.",
            [("", counts.connections_opened)])
    _metric(lines, "xes_sessions", "gauge", "Sessions held by this node, attached or detached.",
            [("", len(core.clients))])
    _metric(lines, "xes_sessions_detached", "gauge",
            "Sessions whose socket was lost, waiting within their grace for a resume.",
            [("", detached)])
    _metric(lines, "xes_sessions_detached_total", "counter", "Sessions that lost their socket.",
            [("", counts.detached)])
    _metric(lines, "xes_resumes_total", "counter", "Sessions resumed on a new socket.",
            [("", counts.resumes)])
    _metric(lines, "xes_rooms", "gauge", "Rooms held by this node (match rooms included).",
            [("", len(core.rooms))])
    _metric(lines, "xes_queue_waiting", "gauge", "Strangers waiting for a match on this node.",
            [("", len(core.queue))])
    _metric(lines, "xes_matches_total", "counter", "Strangers paired (one per pair).",
            [("", core.matches_made)])
    _metric(lines, "xes_relayed_messages_total", "counter", "Signals relayed to a recipient.",
            [("", counts.relayed)])
    _metric(lines, "xes_errors_total", "counter", "Messages refused, by error code.",
            [(f'{{code="{code}"}}', n) for code, n in counts.errors.items()])
    _metric(lines, "xes_closes_total", "counter",
            "Connections closed by the server, by close code.",
            [(f'{{code="{int(code)}"}}', n) for code, n in counts.closes.items()])
    probe = server.redis_probe
    if probe is not None:
        status = probe.status()
        _metric(lines, "xes_redis_up", "gauge", "1 if Redis answered its last ping in time.",
                [("", int(status.up))])
        _metric(lines, "xes_redis_roundtrip_seconds", "gauge",
                "Round trip of the last successful PING to Redis.",
                [("", status.roundtrip_seconds)])
    if server.cluster.enabled:
        _cluster_samples(lines, cast("RedisCluster", server.cluster))
    _process_samples(lines)
    lines.append("")
    return "\n".join(lines).encode()
