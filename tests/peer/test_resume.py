"""The Python peer resumes its session when its signalling socket is cut, and the call goes on.

Ada reaches the server through a TCP proxy the test controls; the proxy resets her connection (no
close frame) and refuses new ones for 10 s, inside the server's 20 s grace. She reconnects and
resumes: same peer id, same aiortc links, and Bob (connected directly) never sees her leave. Audio
keeps arriving both ways throughout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.peer.test_mesh import new_room_id, wait_connected
from tests.peer.tones import wait_for_tone
from tests.support.tcpproxy import TcpProxy
from xes.peer import (
    Disconnected,
    Event,
    Peer,
    PeerJoined,
    PeerLeft,
    Reconnected,
    Reconnecting,
    RemotePeer,
    Resumed,
    open_file_source,
)

CUT_SECONDS = 10.0
MAX_SILENCE_S = 1.0


async def collect(peer: Peer, into: list[tuple[float, Event]]) -> None:
    async for event in peer.events():
        into.append((time.monotonic(), event))


async def longest_stall(members: list[RemotePeer], until: asyncio.Event) -> float:
    """Longest time, in seconds, any member's received audio frame count stood still."""
    counts = {id(member): (member.audio.frames_received, time.monotonic()) for member in members}
    longest = 0.0
    while not until.is_set():
        await asyncio.sleep(0.05)
        now = time.monotonic()
        for member in members:
            frames, since = counts[id(member)]
            if member.audio.frames_received != frames:
                counts[id(member)] = (member.audio.frames_received, now)
            else:
                longest = max(longest, now - since)
    return longest


async def test_python_peer_resumes_after_its_socket_is_cut(
    xes_server: Any, tones: Callable[[float], Path], capsys: Any
) -> None:
    room = new_room_id()
    with TcpProxy("127.0.0.1", xes_server.port) as proxy:
        async with Peer(f"http://127.0.0.1:{proxy.port}", name="Ada",
                        audio=open_file_source(tones(440), loop=True)) as ada, \
                Peer(xes_server.http_url, name="Bob",
                     audio=open_file_source(tones(660), loop=True)) as bob:
            await ada.join(room)
            await bob.join(room)
            await asyncio.gather(wait_connected(ada, 1), wait_connected(bob, 1))
            bob_at_ada, ada_at_bob = ada.members[bob.id], bob.members[ada.id]
            taps = (bob_at_ada.listen(), ada_at_bob.listen())
            await asyncio.gather(wait_for_tone(taps[0], 660), wait_for_tone(taps[1], 440))
            ada_id, links = ada.id, (bob_at_ada.link, ada_at_bob.link)
            ada_events: list[tuple[float, Event]] = []
            bob_events: list[tuple[float, Event]] = []
            collectors = [asyncio.ensure_future(collect(ada, ada_events)),
                          asyncio.ensure_future(collect(bob, bob_events))]
            done = asyncio.Event()
            stall = asyncio.ensure_future(longest_stall([bob_at_ada, ada_at_bob], done))

            await asyncio.sleep(0.1)  # the collectors take what came before the cut
            cut_at = time.monotonic()
            proxy.refuse = True  # first, so that no reconnection slips in after the cut
            assert proxy.cut() == 1
            await asyncio.sleep(CUT_SECONDS)
            proxy.refuse = False
            restored_at = time.monotonic()
            async with asyncio.timeout(30):
                while not any(isinstance(event, Resumed | Reconnected | Disconnected)
                              for _, event in ada_events[-3:]):
                    await asyncio.sleep(0.02)
            after_cut = [(t, event) for t, event in ada_events if t >= cut_at]
            assert [type(event) for _, event in after_cut][:2] == [Reconnecting, Resumed], after_cut
            resumed_at = after_cut[1][0]
            # Audio still arrives, both ways, after the resume.
            await asyncio.gather(wait_for_tone(taps[0], 660), wait_for_tone(taps[1], 440))
            done.set()
            longest = await stall

            assert ada.id == ada_id
            assert (ada.members[bob.id].link, bob.members[ada.id].link) == links
            assert not [e for t, e in bob_events if t >= cut_at and isinstance(e, PeerLeft | PeerJoined)]
            assert longest < MAX_SILENCE_S, f"audio stood still for {longest:.2f} s"
            with capsys.disabled():
                print(f"\n[python resume] resumed {resumed_at - restored_at:.2f} s after the "
                      f"cut ended; longest audio stall {longest * 1000:.0f} ms")
            for tap in taps:
                tap.stop()
            for task in collectors:
                task.cancel()
