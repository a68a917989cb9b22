"""What a restart's snapshot costs: its size and the time to take, write, read and load it.

    .venv/bin/python bench/snapshot_cost.py [--sessions 1000] [--dir /tmp]

Builds a core with SESSIONS people in full rooms of 8, each having received what a real call
sends: the room (`joined`/`peer-joined`), and from each of the 7 others one SDP (1.5 KB) and 8
trickled candidates, all kept in its replay buffer; then times what `xes serve` does on SIGTERM
(export + encode on the event loop, the atomic write with its fsyncs in a thread) and on the
next start (read, decode + import).
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

from xes.core.actions import Action, Send
from xes.core.signalling import CoreSettings, Signalling
from xes.core.snapshot import decode_snapshot, encode_snapshot, export_snapshot, import_snapshot
from xes.core.timing import Now
from xes.protocol import messages as m
from xes.server.store import write_atomically

SDP = "v=0\r\n" + "a=x-filler:" + "y" * 1500 + "\r\n"
CANDIDATE = "candidate:1 1 udp 2122260223 192.0.2.10 54321 typ host generation 0 ufrag abcd"


def build(sessions: int) -> Signalling:
    ids = (f"{n:022d}" for n in itertools.count())
    core = Signalling(CoreSettings(), ids)
    now = Now(monotonic=1000.0, unix=1.8e9)

    def deliver(actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send) and action.numbered and action.to in core.clients:
                core.outbox(core.clients[action.to]).post(action.payload)

    peers = [f"P{n:021d}" for n in range(sessions)]
    for index, peer in enumerate(peers):
        core.connect(peer, f"T{index:021d}", f"C{index:021d}")
        room = f"R{index // 8:021d}"
        deliver(core.handle(peer, m.Join(room=room, name=f"person {index}"), now))
    for index, peer in enumerate(peers):
        mates = peers[index - index % 8: index - index % 8 + 8]
        for other in mates:
            if other == peer:
                continue
            target = core.route_signal(other, peer)
            outbox = core.outbox(target)
            description = m.SignalData(description=m.SessionDescription(type="offer", sdp=SDP))
            outbox.post(m.encode_signal(other, m.signal_to(peer, description).data))
            for _ in range(8):
                candidate = m.SignalData(candidate=m.IceCandidate(candidate=CANDIDATE, sdp_mid="0"))
                outbox.post(m.encode_signal(other, m.signal_to(peer, candidate).data))
    return core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    core = build(args.sessions)
    now = Now(monotonic=2000.0, unix=1.8e9)
    started = time.perf_counter()
    data = encode_snapshot(export_snapshot(core, now))
    taken = time.perf_counter() - started
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        path = Path(directory) / "snapshot.json"
        started = time.perf_counter()
        write_atomically(path, data)
        written = time.perf_counter() - started
        started = time.perf_counter()
        read = path.read_bytes()
        fresh = Signalling(CoreSettings(), (f"{n:022d}" for n in itertools.count()))
        import_snapshot(fresh, decode_snapshot(read), now)
        loaded = time.perf_counter() - started
    frames = sum(len(c.outbox.frames) for c in core.clients.values() if c.outbox is not None)
    print(f"{args.sessions} sessions in {len(core.rooms)} rooms, {frames} replay frames kept")
    print(f"snapshot: {len(data) / 1e6:.1f} MB ({len(data) / args.sessions / 1024:.1f} KiB per session)")
    print(f"take (export + encode, on the event loop): {taken * 1000:.0f} ms")
    print(f"write (temp + fsync + rename + fsync dir, in a thread): {written * 1000:.0f} ms")
    print(f"load at start (read + decode + import): {loaded * 1000:.0f} ms")


if __name__ == "__main__":
    main()
