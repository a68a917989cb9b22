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
import asyncio
import gc
import json
import statistics
import sys
import time
import tracemalloc
from typing import Any

from payloads import candidate, sdp

from xes.server.app import Connection, XesServer
from xes.server.config import ServerSettings

ROOM = "R" * 22


class CountingTransport:
    """Stands in for picows's WSTransport (and its socket): takes bytes, keeps nothing, counts
    them and the writes (each a system call on a real socket)."""

    def __init__(self) -> None:
        self.sent = 0
        self.writes = 0
        self.is_close_frame_sent = False
        self.is_disconnected = False
        self.underlying_transport = self

    def send(self, kind: Any, data: bytes) -> None:
        self.write(data)

    def write(self, data: bytes) -> None:
        self.sent += len(data)
        self.writes += 1


async def turn() -> None:
    """Let the event loop turn once, as it does between two reads: the server writes what it
    queued for the end of the turn (a server from before the coalescing wrote it at once)."""
    await asyncio.sleep(0)


async def connection(server: XesServer) -> Connection:
    conn = Connection(server)
    conn.transport = CountingTransport()  # type: ignore[assignment]
    server.opened(conn)
    await turn()
    return conn


async def pair() -> tuple[XesServer, Connection, Connection]:
    server = XesServer(ServerSettings(port=0))
    a, b = await connection(server), await connection(server)
    for conn, name in ((a, "A"), (b, "B")):
        server.receive(conn, json.dumps({"type": "join", "room": ROOM, "name": name}).encode())
        await turn()
    return server, a, b


async def time_relay(data: dict[str, Any], messages: int, repeats: int) -> list[float]:
    server, a, b = await pair()
    frame = json.dumps({"type": "signal", "to": b.peer, "data": data}).encode()
    results = []
    for _ in range(repeats):
        gc.collect()
        started = time.thread_time_ns()
        for _ in range(messages):  # one message per turn: the coalescing's worst case
            server.receive(a, frame)
            await turn()
        results.append((time.thread_time_ns() - started) / messages)
    return results


async def setup_frames() -> tuple[XesServer, Connection, Connection, Any]:
    """Two kept connections and a function that sends one call set-up's 26 client messages as
    bench/loadgen.py's `setup` does: `join`, `join`, offer, answer, 10 + 10 candidates,
    `leave`, `leave` (a fresh room each time, as each set-up there draws one)."""
    server = XesServer(ServerSettings(port=0))
    a, b = await connection(server), await connection(server)
    offer, answer = json.dumps(sdp(2000)).encode(), json.dumps(sdp(1500)).encode()
    cand = json.dumps(candidate()).encode()
    to_a = b'{"type":"signal","to":"' + a.peer.encode() + b'","data":'
    to_b = b'{"type":"signal","to":"' + b.peer.encode() + b'","data":'
    leave = b'{"type":"leave"}'
    receive = server.receive
    rooms = iter(range(10**12))

    async def one_setup() -> None:
        """One event-loop turn per round trip of loadgen.py's set-up; what a client sends
        without waiting in between arrives in one read (the answer and a's ten candidates)."""
        join = json.dumps({"type": "join", "room": f"{next(rooms):022d}", "name": "bench"}).encode()
        receive(a, join)
        await turn()
        receive(b, join)
        await turn()
        receive(b, to_a + offer + b"}")
        await turn()
        receive(a, to_b + answer + b"}")
        for _ in range(10):
            receive(a, to_b + cand + b"}")
        await turn()
        for _ in range(10):
            receive(b, to_a + cand + b"}")
        await turn()
        receive(b, leave)
        await turn()
        receive(a, leave)
        await turn()

    return server, a, b, one_setup


async def time_setups(setups: int, repeats: int) -> list[float]:
    """Thread CPU nanoseconds per call set-up (see :func:`setup_frames`), after a warm-up that
    fills both sessions' replay buffers (the steady state of kept connections)."""
    _, _, _, one_setup = await setup_frames()
    for _ in range(200):
        await one_setup()
    results = []
    for _ in range(repeats):
        gc.collect()
        started = time.thread_time_ns()
        for _ in range(setups):
            await one_setup()
        results.append((time.thread_time_ns() - started) / setups)
    return results


async def setup_counts() -> dict[str, float]:
    """Per set-up: writes to the sockets (system calls), and Python function calls (cProfile),
    which a loaded machine does not change."""
    import cProfile
    import pstats
    _, a, b, one_setup = await setup_frames()
    for _ in range(200):
        await one_setup()
    writes = a.transport.writes + b.transport.writes  # type: ignore[attr-defined]
    setups = 100
    for _ in range(setups):
        await one_setup()
    writes = a.transport.writes + b.transport.writes - writes  # type: ignore[attr-defined]
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(setups):
        await one_setup()
    profile.disable()
    stats = pstats.Stats(profile)
    calls = sum(entry[1] for entry in stats.stats.values())  # type: ignore[attr-defined]
    return {"writes": writes / setups, "calls": calls / setups}


async def memory_per_connection(count: int) -> float:
    """Bytes of Python objects per idle connection (hello sent, not in a room)."""
    server = XesServer(ServerSettings(port=0))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    conns = [await connection(server) for _ in range(count)]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del conns
    return grown / count


async def memory_per_joined_connection(count: int) -> float:
    """Bytes of Python objects per idle connection in a room of two (as bench.py's idle clients):
    hello, `joined` and `peer-joined` sent, and kept for replay."""
    server = XesServer(ServerSettings(port=0))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    conns = []
    for n in range(count):
        conn = await connection(server)
        server.receive(conn, json.dumps({"type": "join", "room": f"{n // 2:022d}", "name": "M"}).encode())
        await turn()
        conns.append(conn)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / count


async def memory_per_detached_session(count: int, signals: int) -> float:
    """Bytes per session detached in a room, having been sent ``signals`` candidate-sized
    signals (kept in its replay buffer), beyond what it cost while attached and empty."""
    server = XesServer(ServerSettings(port=0))
    sender = await connection(server)
    server.receive(sender, json.dumps({"type": "join", "room": ROOM, "name": "S"}).encode())
    await turn()
    members = []
    for n in range(count):
        conn = await connection(server)
        server.receive(conn, json.dumps({"type": "join", "room": f"{n:022d}", "name": "M"}).encode())
        await turn()
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
    # The server queues what it sends for the end of the event loop's turn: it needs a loop
    # (which never turns here: end_of_turn stands in for it), uvloop's as `xes serve` runs on.
    import uvloop

    async def run() -> int:
        return await measure()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(run())


async def measure() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--setups", type=int, default=5_000)
    args = parser.parse_args()
    runs = await time_setups(args.setups, args.repeats)
    counts = await setup_counts()
    print(f"call set-up (26 client messages): best {min(runs) / 1000:.1f} µs, median "
          f"{statistics.median(runs) / 1000:.1f} µs; {counts['writes']:.0f} socket writes, "
          f"{counts['calls']:.0f} Python calls")
    for label, data in (("SDP 2 KB", sdp(2000)), ("candidate", candidate())):
        runs = await time_relay(data, args.messages, args.repeats)
        print(f"receive(signal, {label}): best {min(runs):.0f} ns, median "
              f"{statistics.median(runs):.0f} ns per message")
    print(f"idle connection: {await memory_per_connection(2000) / 1024:.2f} KiB of Python objects")
    print(f"idle connection in a room of two: {await memory_per_joined_connection(2000) / 1024:.2f} KiB")
    if not hasattr(XesServer(ServerSettings(port=0)).core, "detach"):
        return 0  # a server from before sessions
    for signals in (0, 20, 256):
        per = await memory_per_detached_session(500, signals)
        print(f"detached session with {signals} signals kept: {per / 1024:.2f} KiB more")
    return 0


if __name__ == "__main__":
    sys.exit(main())
