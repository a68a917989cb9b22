"""Python peers in one room through a real `xes serve`, over loopback, each hearing the others.

Every peer sends its own tone from a WAV file; a receiver proves it hears a member by finding
that member's frequency in what it received (FFT), live and in a recording.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.peer.tones import read_wav, tone_share, wait_for_tone
from xes.peer import (
    Joined,
    LinkChanged,
    LinkState,
    Peer,
    PeerJoined,
    Route,
    WavRecorder,
    open_file_source,
)
from xes.peer.sdp import AUDIO_LEVEL_URI


def new_room_id() -> str:
    return secrets.token_urlsafe(16)  # 16 random bytes: 22 base64url characters


async def wait_connected(peer: Peer, count: int, timeout: float = 20.0) -> None:
    """Wait until `peer` has `count` members whose links are connected."""
    async with asyncio.timeout(timeout):
        while sum(m.state is LinkState.CONNECTED for m in peer.members.values()) < count:
            await asyncio.sleep(0.02)


async def test_two_python_peers_hear_each_other(
    xes_server: Any, tones: Callable[[float], Path], capsys: Any
) -> None:
    """Ada waits in the room, Bob joins and offers; each hears the other's tone, directly,
    and neither description carries the audio-level header extension."""
    room = new_room_id()
    async with Peer(xes_server.http_url, name="Ada",
                    audio=open_file_source(tones(440), loop=True)) as ada:
        await ada.join(room)
        async with Peer(xes_server.http_url, name="Bob",
                        audio=open_file_source(tones(660), loop=True)) as bob:
            joined_at = time.monotonic()
            bob_room = await bob.join(room)
            assert [m.name for m in bob_room.peers] == ["Ada"]
            ada_member = bob_room.peers[0]
            ada_hears = None
            async with asyncio.timeout(10):
                while ada_hears is None:
                    ada_hears = next(iter(ada.members.values()), None)
                    await asyncio.sleep(0.01)
            bob_tap, ada_tap = ada_member.listen(), ada_hears.listen()
            bob_heard_at, ada_heard_at = await asyncio.gather(
                wait_for_tone(bob_tap, 440), wait_for_tone(ada_tap, 660))
            await wait_connected(bob, 1)
            assert ada_member.route is Route.DIRECT
            assert ada_member.candidate_types == ("host", "host")
            for member in (ada_member, ada_hears):
                assert member.link is not None
                pc = member.link.peer_connection
                assert AUDIO_LEVEL_URI not in pc.localDescription.sdp
                assert AUDIO_LEVEL_URI not in pc.remoteDescription.sdp
                assert "a=crypto:" not in pc.remoteDescription.sdp
            assert ada_member.connected_at is not None
            with capsys.disabled():
                print(f"\n[python<->python] newcomer join->connected "
                      f"{(ada_member.connected_at - joined_at) * 1000:.0f} ms, join->first tone "
                      f"{(bob_heard_at - joined_at) * 1000:.0f} ms (newcomer hears), "
                      f"{(ada_heard_at - joined_at) * 1000:.0f} ms (first in room hears)")
            bob_tap.stop()
            ada_tap.stop()


async def test_three_python_peers_full_mesh_record_each_other(
    xes_server: Any, tones: Callable[[float], Path], tmp_path: Path
) -> None:
    """Three peers, three tones: each records every other member to its own WAV file, and each
    file carries exactly that member's tone."""
    room = new_room_id()
    frequencies = {"Ada": 440.0, "Bob": 660.0, "Cy": 880.0}
    peers: dict[str, Peer] = {}
    recorders: dict[tuple[str, str], WavRecorder] = {}

    def record(listener: str, peer: Peer) -> None:
        for member in peer.members.values():
            key = (listener, member.name)
            if key not in recorders:
                recorders[key] = WavRecorder(tmp_path / f"{listener}-hears-{member.name}.wav")
                recorders[key].add(member.id, member.listen())

    try:
        for name, frequency in frequencies.items():
            peer = Peer(xes_server.http_url, name=name,
                        audio=open_file_source(tones(frequency), loop=True))
            await peer.connect()
            peers[name] = peer
            await peer.join(room)
            record(name, peer)
        async with asyncio.timeout(20):
            while len(recorders) < 6:
                for name, peer in peers.items():
                    record(name, peer)
                await asyncio.sleep(0.01)
        for peer in peers.values():
            await wait_connected(peer, 2)
        await asyncio.sleep(2.5)  # two seconds of steady audio in every file
    finally:
        for recorder in recorders.values():
            await recorder.stop()
        for peer in peers.values():
            await peer.close()
    assert len(recorders) == 6
    for (listener, speaker), recorder in recorders.items():
        samples, rate = read_wav(recorder.path)
        assert len(samples) > rate, f"{listener} recorded under a second of {speaker}"
        share = tone_share(samples, rate, frequencies[speaker])
        assert share > 0.8, f"{listener} hears {speaker}'s tone at only {share:.2f}"
        for other, frequency in frequencies.items():
            if other != speaker:
                assert tone_share(samples, rate, frequency) < 0.05, (
                    f"{listener}'s recording of {speaker} carries {other}'s tone")


async def test_late_joiner_is_announced_and_offers(
    xes_server: Any, tones: Callable[[float], Path]
) -> None:
    """The member already present gets `PeerJoined`, then its link goes connecting ->
    connected, without ever making an offer itself (the newcomer does)."""
    room = new_room_id()
    async with Peer(xes_server.http_url, name="Ada") as ada:
        await ada.join(room)
        async with Peer(xes_server.http_url, name="Bob",
                        audio=open_file_source(tones(660), loop=True)) as bob:
            await bob.join(room)
            seen: list[object] = []
            async with asyncio.timeout(20):
                async for event in ada.events():
                    if isinstance(event, Joined):
                        continue  # her own join, before Bob came
                    seen.append(event)
                    if isinstance(event, LinkChanged) and event.state is LinkState.CONNECTED:
                        break
            assert isinstance(seen[0], PeerJoined) and seen[0].peer.name == "Bob"
            states = [e.state for e in seen if isinstance(e, LinkChanged)]
            assert states == [LinkState.CONNECTING, LinkState.CONNECTED]
            bob_at_ada = seen[0].peer
            assert bob_at_ada.link is not None
            # Ada answered: her local description is an answer, never an offer of her own.
            assert bob_at_ada.link.peer_connection.localDescription.type == "answer"
            assert await wait_for_tone(bob_at_ada.listen(), 660) > 0
