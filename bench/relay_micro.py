"""Micro-benchmark of the relay hot path: ``XesServer.receive`` for one ``signal``, in-process.

No sockets and no load generator: two connections in one room with a transport that only
counts bytes, so what is timed is XES's own work per relayed message (decode, route, splice,
number and keep for replay, hand to the transport). Also the memory a session costs: an idle
connection's Python objects, and a detached session holding its replay buffer.

    .venv/bin/python bench/relay_micro.py [--messages 200000] [--repeats 7]

Prints nanoseconds per message (best and median of the repeats) for SDP- and candidate-sized
payloads, in this thread's CPU time, so that time spent waiting for a core on a loaded machine
does not count. The socket-level figures (CPU µs per message against PeerJS) are bench/bench.py's.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from typing import Any

from payloads import candidate, sdp  # type: ignore[import-not-found]

from xes.server.app import Connection, XesServer
from xes.server.config import ServerSettings

ROOM = "R" * 22


class CountingTransport:
    """Stands in for picows's WSTransport: takes frames, keeps nothing."""

    def __init__(self) -> None:
        self.sent = 0
        self.is_close_frame_sent = False
        self.is_disconnected = False

    def send(self, kind: Any, data: bytes) -> None:
        self.sent += len(data)


def connection(server: XesServer) -> Connection:
    conn = Connection(server)
    conn.transport = CountingTransport()  # type: ignore[assignment]
    server.opened(conn)
    return conn


def pair() -> tuple[XesServer, Connection, Connection]:
    server = XesServer(ServerSettings(port=0))
    a, b = connection(server), connection(server)
    for conn, name in ((a, "A"), (b, "B")):
        server.receive(conn, json.dumps({"type": "join", "room": ROOM, "name": name}).encode())
    return server, a, b


def time_relay(data: dict[str, Any], messages: int, repeats: int) -> list[float]:
    server, a, b = pair()
    frame = json.dumps({"type": "signal", "to": b.peer, "data": data}).encode()
    results = []
    for _ in range(repeats):
        gc.collect()
        started = time.thread_time_ns()
        for _ in range(messages):
            server.receive(a, frame)
        results.append((time.thread_time_ns() - started) / messages)
    return results


def memory_per_connection(count: int) -> float:
    """Bytes of Python objects per idle connection (hello sent, not in a room)."""
    server = XesServer(ServerSettings(port=0))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    conns = [connection(server) for _ in range(count)]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del conns
    return grown / count


def memory_per_joined_connection(count: int) -> float:
    """Bytes of Python objects per idle connection in a room of two (as bench.py's idle clients):
    hello, `joined` and `peer-joined` sent, and kept for replay."""
    server = XesServer(ServerSettings(port=0))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    conns = []
    for n in range(count):
        conn = connection(server)
        server.receive(conn, json.dumps({"type": "join", "room": f"{n // 2:022d}", "name": "M"}).encode())
        conns.append(conn)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / count


def memory_per_detached_session(count: int, signals: int) -> float:
    """Bytes per session detached in a room, having been sent ``signals`` candidate-sized
    signals (kept in its replay buffer), beyond what it cost while attached and empty."""
    server = XesServer(ServerSettings(port=0))
    sender = connection(server)
    server.receive(sender, json.dumps({"type": "join", "room": ROOM, "name": "S"}).encode())
    members = []
    for n in range(count):
        conn = connection(server)
        server.receive(conn, json.dumps({"type": "join", "room": f"{n:022d}", "name": "M"}).encode())
        members.append(conn)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for conn in members:
        server.connections.pop(conn.peer)
        server.core.detach(conn.peer, _now())
        outbox = server.core.outbox(server.core.clients[conn.peer])
        for _ in range(signals):
            outbox.post(CANDIDATE)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / count


def _now() -> Any:
    from xes.server.app import _now as now
    return now()


CANDIDATE = json.dumps({"type": "signal", "from": "F" * 22,
                        "data": candidate()}).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    for label, data in (("SDP 2 KB", sdp(2000)), ("candidate", candidate())):
        runs = time_relay(data, args.messages, args.repeats)
        print(f"receive(signal, {label}): best {min(runs):.0f} ns, median "
              f"{statistics.median(runs):.0f} ns per message")
    print(f"idle connection: {memory_per_connection(2000) / 1024:.2f} KiB of Python objects")
    print(f"idle connection in a room of two: {memory_per_joined_connection(2000) / 1024:.2f} KiB")
    if not hasattr(XesServer(ServerSettings(port=0)).core, "detach"):
        return 0  # a server from before sessions
    for signals in (0, 20, 256):
        per = memory_per_detached_session(500, signals)
        print(f"detached session with {signals} signals kept: {per / 1024:.2f} KiB more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
