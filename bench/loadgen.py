"""Load-generator worker: one process, one asyncio loop, many WebSocket clients.

bench/bench.py starts one or more of these (pinned to cores the server is not on) and drives
them with one JSON command per line on stdin; each command is answered by one JSON line on
stdout. All times in commands are CLOCK_MONOTONIC nanoseconds, which every process on the
machine shares, so the coordinator can line up measurement windows across workers and sample
the server's CPU counters at the same instants.

Two small adapters speak the two protocols:

- XES (docs/protocol.md): a pair's two clients `join` one room, then `signal {to, data}` arrives
  as `signal {from, data}`. The bare relay (bench/bare_relay.py) speaks the same subset.
- PeerJS (npm `peer`): clients pick their own id in the URL, get `OPEN`, and send
  `{type: OFFER|ANSWER|CANDIDATE|LEAVE, dst, payload}` which arrives with `src` stamped.

Every loop here is bounded in count and time: each command carries a deadline, and the worker
exits when stdin closes. Loopback only: bench.py refuses other hosts before it starts workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import secrets
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec
from payloads import MARK, PATTERN, body_heads, candidate, sdp
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

MARK_LEN = len(MARK)
BODY_HEADS = body_heads()
PATTERN_LEN = len(PATTERN)
# Latency samples kept per worker and window: enough for a stable p99.9, bounded memory.
MAX_SAMPLES = 300_000


def now_us() -> int:
    return time.monotonic_ns() // 1000


class Envelope(msgspec.Struct):
    """Only the `type` field: msgspec skips the rest without building objects."""

    type: str = ""


ENVELOPE = msgspec.json.Decoder(Envelope)


class BenchError(Exception):
    """The server answered something the scenario did not expect (reported, never hidden)."""


class Window:
    """What one measurement window counts: received relays and their latencies (µs)."""

    def __init__(self, start_us: int, end_us: int) -> None:
        self.start_us = start_us
        self.end_us = end_us
        self.count = 0
        self.bytes = 0
        self.samples: list[int] = []
        self.stride = 1  # keep every stride-th sample once MAX_SAMPLES is reached
        self.seen = 0

    def record(self, now: int, latency: int, size: int) -> None:
        if self.start_us <= now < self.end_us:
            self.count += 1
            self.bytes += size
            self.seen += 1
            if self.seen % self.stride == 0:
                self.samples.append(latency)
                if len(self.samples) >= MAX_SAMPLES:
                    # Halve the kept samples and the rate at which we keep them: unbiased, bounded.
                    self.samples = self.samples[::2]
                    self.stride *= 2


class Client(WSListener):
    """One WebSocket connection. Relayed benchmark payloads take a fast path; everything else
    (hello, joined, errors...) is queued for the scenario coroutine to `expect`."""

    def __init__(self, gen: Generator) -> None:
        self.gen = gen
        self.transport: WSTransport | None = None
        self.peer_id = ""
        self.node = 0  # which of the connect command's `bases` (cluster nodes) it is on
        self.partner: Client | None = None
        self.prefixes: list[bytes] = []  # per payload kind: the envelope up to `data`/`payload`
        self.seq = 0
        self.inbox: deque[tuple[str, bytes]] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.closed = False

    # picows callbacks -------------------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            self.gen.close_codes.append(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return  # pings are answered by picows itself (enable_auto_pong)
        payload = frame.get_payload_as_bytes()
        gen = self.gen
        if gen.relaying:
            at = payload.find(MARK)
            if at >= 0:
                sent = int(payload[at + MARK_LEN: payload.index(b"}", at)])
                now = now_us()
                gen.received_total += 1
                gen.window.record(now, now - sent, len(payload))
                if gen.closed_loop and now < gen.window.end_us:
                    self.send_next()
                return
        self.push(payload)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.closed = True
        self.gen.disconnects += 1
        self._wake()

    # sending ----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.send(WSMsgType.TEXT, data)

    def send_next(self) -> None:
        """Send the next payload of PATTERN to the partner, stamped with the send time."""
        kind = PATTERN[self.seq % PATTERN_LEN]
        self.seq += 1
        if self.transport is not None and not self.closed:
            self.gen.sent_total += 1
            self.transport.send(
                WSMsgType.TEXT,
                self.prefixes[kind] + BODY_HEADS[kind] + str(now_us()).encode() + b"}}",
            )

    # control messages -------------------------------------------------------------------------
    def push(self, payload: bytes) -> None:
        try:
            kind = ENVELOPE.decode(payload).type
        except msgspec.DecodeError:
            kind = "?"
        self.inbox.append((kind, payload))
        self._wake()

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def next(self) -> tuple[str, bytes]:
        """The next control message. No timeout here: every scenario runs under one deadline
        (asyncio.timeout) instead, which costs nothing per message."""
        for _ in range(1_000_000):
            if self.inbox:
                return self.inbox.popleft()
            if self.closed:
                raise BenchError(f"connection closed (close codes {self.gen.close_codes[-3:]})")
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        raise BenchError("no message after 1,000,000 wake-ups")

    async def expect(self, kind: str) -> bytes:
        got, payload = await self.next()
        if got != kind:
            raise BenchError(f"expected {kind!r}, got {payload[:300]!r}")
        return payload


# Protocol adapters ----------------------------------------------------------------------------
class Protocol:
    name = ""
    hello = ""
    heartbeat: bytes | None = None

    def url(self, base: str) -> str:
        raise NotImplementedError

    def on_hello(self, client: Client, payload: bytes) -> None:
        raise NotImplementedError

    def envelope(self, kind: str, src: Client, dst: Client) -> bytes:
        """Bytes before the payload object; the message ends with the payload then `}`."""
        raise NotImplementedError

    def relay_prefixes(self, src: Client, dst: Client) -> list[bytes]:
        kinds = ["offer", "offer", "offer", "candidate"]
        return [self.envelope(kind, src, dst) for kind in kinds]

    async def pair(self, a: Client, b: Client) -> None:
        """Make a and b able to signal each other (XES: one room; PeerJS: nothing to do)."""

    async def setup(self, a: Client, b: Client, sdp_offer: bytes, sdp_answer: bytes,
                    cands: list[bytes]) -> None:
        raise NotImplementedError


class Xes(Protocol):
    """docs/protocol.md, version 1."""

    name = "xes"
    hello = "hello"

    def url(self, base: str) -> str:
        return base.rstrip("/") + "/ws"

    def on_hello(self, client: Client, payload: bytes) -> None:
        client.peer_id = str(json.loads(payload)["peer"])

    def envelope(self, kind: str, src: Client, dst: Client) -> bytes:
        return b'{"type":"signal","to":"' + dst.peer_id.encode() + b'","data":'

    @staticmethod
    def join(room: str) -> bytes:
        return json.dumps({"type": "join", "room": room, "name": "bench"}).encode()

    async def pair(self, a: Client, b: Client) -> None:
        room = secrets.token_urlsafe(16)
        # a first, so b is the newcomer (the one that offers, like in the protocol's example).
        a.send(self.join(room))
        await a.expect("joined")
        b.send(self.join(room))
        await b.expect("joined")
        await a.expect("peer-joined")

    async def setup(self, a: Client, b: Client, sdp_offer: bytes, sdp_answer: bytes,
                    cands: list[bytes]) -> None:
        """join, join, offer, answer, 10+10 candidates, leave, leave: 26 client messages."""
        await self.pair(a, b)
        b.send(self.envelope("", b, a) + sdp_offer + b"}")
        await a.expect("signal")
        to_b = self.envelope("", a, b)
        a.send(to_b + sdp_answer + b"}")
        for cand in cands:
            a.send(to_b + cand + b"}")
        await b.expect("signal")
        to_a = self.envelope("", b, a)
        for cand in cands:
            b.send(to_a + cand + b"}")
        for _ in cands:
            await b.expect("signal")
        b.send(b'{"type":"leave"}')
        await b.expect("left")
        for _ in cands:
            await a.expect("signal")
        await a.expect("peer-left")
        a.send(b'{"type":"leave"}')
        await a.expect("left")


class PeerJs(Protocol):
    """The PeerJS server's own WebSocket protocol (npm `peer` 1.x)."""

    name = "peerjs"
    hello = "OPEN"
    heartbeat = b'{"type":"HEARTBEAT"}'

    def url(self, base: str) -> str:
        # The PeerJS client picks its id and a token; the server only checks they are present.
        self_id = secrets.token_urlsafe(16)
        return f"{base.rstrip('/')}/peerjs?key=peerjs&id={self_id}&token={secrets.token_hex(4)}"

    def on_hello(self, client: Client, payload: bytes) -> None:
        pass  # the id was set from the URL before connecting

    def envelope(self, kind: str, src: Client, dst: Client) -> bytes:
        kind = {"offer": "OFFER", "answer": "ANSWER", "candidate": "CANDIDATE"}.get(kind, kind)
        return b'{"type":"' + kind.encode() + b'","dst":"' + dst.peer_id.encode() + b'","payload":'

    async def setup(self, a: Client, b: Client, sdp_offer: bytes, sdp_answer: bytes,
                    cands: list[bytes]) -> None:
        """offer, answer, 10+10 candidates, LEAVE (hang-up): 23 client messages; PeerJS has no
        rooms, so there is nothing to join."""
        b.send(self.envelope("offer", b, a) + sdp_offer + b"}")
        await a.expect("OFFER")
        a.send(self.envelope("answer", a, b) + sdp_answer + b"}")
        cand_to_b = self.envelope("candidate", a, b)
        for cand in cands:
            a.send(cand_to_b + cand + b"}")
        await b.expect("ANSWER")
        cand_to_a = self.envelope("candidate", b, a)
        for cand in cands:
            b.send(cand_to_a + cand + b"}")
        for _ in cands:
            await b.expect("CANDIDATE")
        b.send(self.envelope("LEAVE", b, a) + b"{}}")
        for _ in cands:
            await a.expect("CANDIDATE")
        await a.expect("LEAVE")


PROTOCOLS: dict[str, Callable[[], Protocol]] = {"xes": Xes, "peerjs": PeerJs}


def cross_node_pairs(clients: list[Client], nodes: int) -> list[tuple[Client, Client]]:
    """Pairs of clients; on a cluster, each pair's two clients are on different nodes (node k
    with node k+1), so every relayed message crosses from one node to another."""
    if nodes < 2:
        return [(clients[i], clients[i + 1]) for i in range(0, len(clients) - 1, 2)]
    by_node: list[list[Client]] = [[] for _ in range(nodes)]
    for c in clients:
        by_node[c.node].append(c)
    pairs: list[tuple[Client, Client]] = []
    for k in range(0, nodes - 1, 2):
        pairs += zip(by_node[k], by_node[k + 1], strict=False)
    return pairs


# The worker -----------------------------------------------------------------------------------
class Generator:
    def __init__(self, worker: int) -> None:
        self.worker = worker
        self.proto: Protocol = Xes()
        self.base = ""
        self.clients: list[Client] = []
        self.pairs: list[tuple[Client, Client]] = []
        self.relaying = False
        self.closed_loop = False
        self.window = Window(0, 0)
        self.disconnects = 0
        # Relayed payloads sent and received, all windows included: a window is over only when
        # the server has delivered everything, so no backlog spills into the next measurement.
        self.sent_total = 0
        self.received_total = 0
        self.close_codes: list[WSCloseCode] = []
        # Set-up payloads: JSON without the benchmark stamp, so they take the control path as a
        # real client's would (parsed, matched against what the exchange expects next).
        self.sdp_offer = json.dumps(sdp(2000, "offer"), separators=(",", ":")).encode()
        self.sdp_answer = json.dumps(sdp(2000, "answer"), separators=(",", ":")).encode()
        self.cands = [json.dumps(candidate(i), separators=(",", ":")).encode() for i in range(10)]

    # commands ---------------------------------------------------------------------------------
    async def cmd_connect(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Open n connections, `concurrency` handshakes in flight; optionally pair them up."""
        self.proto = PROTOCOLS[msg["proto"]]()
        self.base = str(msg["base"])
        n = int(msg["n"])
        deadline = float(msg.get("timeout", 120))
        sem = asyncio.Semaphore(int(msg.get("concurrency", 100)))
        errors: list[str] = []
        new: list[Client] = []

        # Several loopback source addresses: each has its own ephemeral ports towards the one
        # server port (about 28,000 each), so 100,000 clients do not run out of ports.
        sources = [str(a) for a in msg.get("sources") or []]
        counter = iter(range(10_000_000))
        # A cluster: clients go to its nodes in turn (node i of the i-th connection).
        bases = [str(b) for b in msg.get("bases") or [self.base]]

        async def one() -> None:
            async with sem:
                i = next(counter)
                node = i % len(bases)
                url = self.proto.url(bases[node])
                extra: dict[str, Any] = {}
                if sources:
                    extra["local_addr"] = (sources[i % len(sources)], 0)
                try:
                    _, listener = await ws_connect(
                        lambda: Client(self), url, websocket_handshake_timeout=30, **extra)
                    assert isinstance(listener, Client)
                    client = listener
                    client.node = node
                    if isinstance(self.proto, PeerJs):
                        client.peer_id = url.split("id=", 1)[1].split("&", 1)[0]
                    self.proto.on_hello(client, await client.expect(self.proto.hello))
                    new.append(client)
                except Exception as exc:  # noqa: BLE001 - any failure is counted and reported
                    errors.append(f"{type(exc).__name__}: {exc}"[:200])

        t0 = time.monotonic_ns()
        try:
            async with asyncio.timeout(deadline):
                await asyncio.gather(*(one() for _ in range(n)))
        except TimeoutError:
            errors.append(f"connect phase over {deadline} s")
        t1 = time.monotonic_ns()
        self.clients.extend(new)
        paired = 0
        t2 = t1
        new_pairs = cross_node_pairs(new, len(bases))
        for a, b in new_pairs:
            a.partner, b.partner = b, a
            a.prefixes = self.proto.relay_prefixes(a, b)
            b.prefixes = self.proto.relay_prefixes(b, a)
            # Start each pair somewhere else in PATTERN, so that any window sees the same mix
            # of SDP and candidates whatever the server's speed.
            a.seq = b.seq = random.randrange(PATTERN_LEN)
        self.pairs.extend(new_pairs)
        if msg.get("pair"):
            psem = asyncio.Semaphore(int(msg.get("concurrency", 100)))

            async def pair(a: Client, b: Client) -> None:
                async with psem:
                    await self.proto.pair(a, b)

            try:
                async with asyncio.timeout(deadline):
                    await asyncio.gather(*(pair(a, b) for a, b in new_pairs))
                paired = len(new_pairs)
            except (BenchError, TimeoutError) as exc:
                errors.append(f"pairing: {type(exc).__name__}: {exc}"[:300])
            t2 = time.monotonic_ns()
        return {"connected": len(new), "errors": len(errors), "first_errors": errors[:5],
                "connect_ns": t1 - t0, "pair_ns": t2 - t1, "pairs": paired}

    async def cmd_idle(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Stay connected until `until`; PeerJS clients send HEARTBEAT every `heartbeat_s`, as the
        PeerJS client library does (XES needs nothing: its server pings after 10 s of silence and
        picows answers the ping)."""
        until = int(msg["until"])
        period = float(msg.get("heartbeat_s", 5.0))
        hb = self.proto.heartbeat
        sent = 0
        disconnects0 = self.disconnects
        if hb is None or not self.clients:
            await asyncio.sleep(max(0.0, (until - time.monotonic_ns()) / 1e9))
        else:
            # Spread heartbeats evenly: client i beats at offset i/n of each period.
            n = len(self.clients)
            start = time.monotonic_ns()
            for _ in range(10_000_000):
                now = time.monotonic_ns()
                if now >= until:
                    break
                due = int((now - start) / 1e9 / period * n)
                while sent < due:
                    self.clients[sent % n].send(hb)
                    sent += 1
                await asyncio.sleep(0.01)
        return {"heartbeats": sent, "disconnects": self.disconnects - disconnects0,
                "open": sum(1 for c in self.clients if not c.closed)}

    async def cmd_relay(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Relay payloads between paired clients until `end`, counting those received within
        [measure_from, end).

        closed: every pair keeps `inflight` messages in flight (the receiver answers each one);
        open: the worker sends `rate` messages per second in total, on a 1 ms schedule,
        whatever the server does (latency under a fixed offered load).
        """
        start, end = int(msg["measure_from"]) // 1000, int(msg["end"]) // 1000
        self.window = Window(start, end)
        self.sent_total = self.received_total = 0
        self.relaying = True
        disconnects0 = self.disconnects
        behind_max = 0
        sent = 0
        try:
            if msg["mode"] == "closed":
                self.closed_loop = True
                for _ in range(int(msg.get("inflight", 1))):
                    for a, _b in self.pairs:
                        a.send_next()
                        sent += 1
                await asyncio.sleep(max(0.0, end / 1e6 - time.monotonic()))
            else:
                self.closed_loop = False
                rate = float(msg["rate"])
                senders = [c for pair in self.pairs for c in pair]
                n = len(senders)
                t0 = now_us()
                # At most this many per tick, so a stalled loop cannot turn into a huge burst.
                cap = max(1, int(rate / 100))
                for _ in range(10_000_000):
                    now = now_us()
                    if now >= end or n == 0:
                        break
                    due = int((now - t0) * rate / 1e6) - sent
                    behind_max = max(behind_max, due)
                    for _ in range(min(due, cap)):
                        senders[sent % n].send_next()
                        sent += 1
                    await asyncio.sleep(0.001)
            # Let what is in flight land (not counted: it arrives after `end`), so that an overloaded
            # server's backlog cannot spill into the next window.
            drain_until = time.monotonic() + float(msg.get("drain_s", 30.0))
            for _ in range(100_000):
                if self.received_total >= self.sent_total or time.monotonic() > drain_until:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
        finally:
            self.relaying = False
            self.closed_loop = False
        # Anything still queued from the relay is stale now.
        for c in self.clients:
            c.inbox.clear()
        w = self.window
        return {"received": w.count, "bytes": w.bytes,
                "undelivered": self.sent_total - self.received_total, "samples": w.samples,
                "sample_stride": w.stride, "sent_open": sent, "behind_max": behind_max,
                "disconnects": self.disconnects - disconnects0,
                "close_codes": self.close_codes[-5:]}

    async def cmd_setup(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Each pair does complete call set-ups back to back until `end`; set-ups that finish
        within [measure_from, end) are counted, with their duration (µs)."""
        start, end = int(msg["measure_from"]) // 1000, int(msg["end"]) // 1000
        window = Window(start, end)
        errors: list[str] = []
        proto = self.proto

        async def loop_pair(a: Client, b: Client) -> None:
            for _ in range(1_000_000):
                t0 = now_us()
                if t0 >= end:
                    return
                await proto.setup(a, b, self.sdp_offer, self.sdp_answer, self.cands)
                t1 = now_us()
                window.record(t1, t1 - t0, 0)

        async def guarded(a: Client, b: Client) -> None:
            try:
                await loop_pair(a, b)
            except BenchError as exc:
                errors.append(str(exc)[:300])

        grace = float(msg.get("grace_s", 10.0))
        try:
            async with asyncio.timeout(max(0.1, end / 1e6 - time.monotonic() + grace)):
                await asyncio.gather(*(guarded(a, b) for a, b in self.pairs))
        except TimeoutError:
            errors.append(f"set-ups still running {grace} s after the window")
        return {"setups": window.count, "samples": window.samples,
                "sample_stride": window.stride, "errors": len(errors),
                "first_errors": errors[:5], "close_codes": self.close_codes[-5:]}

    async def cmd_close(self, msg: dict[str, Any]) -> dict[str, Any]:
        n = 0
        for c in self.clients:
            if c.transport is not None and not c.closed:
                c.transport.disconnect()
                n += 1
        self.clients.clear()
        self.pairs.clear()
        await asyncio.sleep(float(msg.get("settle_s", 0.5)))
        return {"closed": n}


async def serve(worker: int) -> None:
    gen = Generator(worker)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    handlers = {
        "connect": gen.cmd_connect, "idle": gen.cmd_idle, "relay": gen.cmd_relay,
        "setup": gen.cmd_setup, "close": gen.cmd_close,
    }
    for _ in range(100_000):  # one command per line; stdin EOF ends the worker
        line = await reader.readline()
        if not line:
            break
        msg = json.loads(line)
        if msg.get("cmd") == "exit":
            break
        try:
            reply = await handlers[msg["cmd"]](msg)
            reply["ok"] = True
        except Exception as exc:  # reported to the coordinator, which fails the scenario
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
        reply["worker"] = worker
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def main() -> None:
    worker = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if os.environ.get("BENCH_UVLOOP", "1") == "1":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass  # plain asyncio works, it just offers less load per generator core
    asyncio.run(serve(worker))


if __name__ == "__main__":
    main()
