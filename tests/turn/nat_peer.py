"""A minimal aiortc voice peer speaking docs/protocol.md, run as a process inside a NAT lab host.

    python nat_peer.py WS_URL ROOM NAME TONE_WAV EXPECTED_HZ [--connect-timeout S] [--hold S]

It joins the room, takes the ICE servers and transport policy the XES server hands out in
`joined` (so the test exercises exactly what a real client gets), sends its tone, and listens
for the other peer's tone with an FFT. It prints one JSON object on stdout:

    {"connected": bool, "join_to_connected_ms": float|null, "join_to_tone_ms": float|null,
     "heard_hz": float|null, "pair": [local type, remote type]|null,
     "local_candidate_types": [...], "remote_candidate_types": [...], "ice_policy": "all"}

It stays `--hold` seconds after hearing the tone so the other side keeps receiving too (leaving
as soon as it hears the tone would leave the other side with a handful of packets). It is
deliberately independent of `xes.peer`: this test is about the network path, and a second small
client also cross-checks the server's protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import numpy as np
import websockets
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.sdp import candidate_from_sdp

FFT_SAMPLES = 4800  # 0.1 s at 48 kHz: 10 Hz bins, enough to tell 440 from 880
TONE_TOLERANCE_HZ = 15.0
HITS_NEEDED = 3


class Result:
    """What the peer observed, with times measured from sending `join`."""

    def __init__(self) -> None:
        self.joined_at = 0.0
        self.connected_at: float | None = None
        self.tone_at: float | None = None
        self.heard_hz: float | None = None
        self.heard = asyncio.Event()

    def ms(self, moment: float | None) -> float | None:
        return None if moment is None else round((moment - self.joined_at) * 1000, 1)


async def listen_for_tone(track: MediaStreamTrack, expected_hz: float, result: Result) -> None:
    """Read the remote track; note the first time its loudest frequency is the expected one."""
    buffer = np.zeros(0, dtype=np.float64)
    hits = 0
    window = np.hanning(FFT_SAMPLES)
    while True:
        frame: Any = await track.recv()
        samples = frame.to_ndarray().astype(np.float64)
        channels = len(frame.layout.channels)
        mono = samples.reshape(-1, channels).mean(axis=1) if channels > 1 else samples.ravel()
        buffer = np.concatenate([buffer, mono])
        while len(buffer) >= FFT_SAMPLES:
            chunk, buffer = buffer[:FFT_SAMPLES], buffer[FFT_SAMPLES:]
            spectrum = np.abs(np.fft.rfft(chunk * window))
            peak_hz = float(np.argmax(spectrum[1:]) + 1) * frame.sample_rate / FFT_SAMPLES
            if abs(peak_hz - expected_hz) <= TONE_TOLERANCE_HZ and spectrum.max() > 1e3:
                hits += 1
                if hits >= HITS_NEEDED and result.tone_at is None:
                    result.tone_at = time.monotonic()
                    result.heard_hz = peak_hz
                    result.heard.set()
            else:
                hits = 0


def candidate_types(sdp: str | None) -> list[str]:
    """The `typ` of every a=candidate line of an SDP."""
    types: list[str] = []
    for line in (sdp or "").splitlines():
        if line.startswith("a=candidate:"):
            parts = line.split()
            types.append(parts[parts.index("typ") + 1])
    return types


def selected_pair(pc: RTCPeerConnection) -> list[str] | None:
    """(local, remote) candidate types of the nominated ICE pair (aioice internals)."""
    for transceiver in pc.getTransceivers():
        connection = transceiver.sender.transport.transport._connection
        for pair in connection._nominated.values():
            return [pair.local_candidate.type, pair.remote_candidate.type]
    return None


async def _connect(url: str) -> websockets.ClientConnection:
    """Connect as a client does: again, for a while, if the first tries fail (a starved machine
    may take seconds before this namespace's first packets get through its NAT)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return await websockets.connect(url, max_size=2**20, open_timeout=10)
        except (OSError, TimeoutError) as exc:
            if time.monotonic() > deadline:
                raise
            print(f"connect failed ({type(exc).__name__}: {exc}); again", file=sys.stderr,
                  flush=True)
            await asyncio.sleep(1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result = Result()
    async with await _connect(args.ws_url) as ws:
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello", hello
        result.joined_at = time.monotonic()
        await ws.send(json.dumps(
            {"type": "join", "room": args.room, "name": args.name, "rollback": False}))
        joined = json.loads(await ws.recv())
        assert joined["type"] == "joined", joined
        print("joined", file=sys.stderr, flush=True)  # the test starts the second peer now
        servers = [
            RTCIceServer(urls=s["urls"], username=s.get("username"),
                         credential=s.get("credential"))
            for s in joined["ice_servers"]
        ]
        # Never None: aiortc's default would send STUN to a public Google server.
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        player = MediaPlayer(args.tone_wav, loop=True)
        assert player.audio is not None
        pc.addTrack(player.audio)
        listeners: list[asyncio.Task[None]] = []

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            listeners.append(asyncio.create_task(
                listen_for_tone(track, args.expected_hz, result)))

        connected = asyncio.Event()

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected" and result.connected_at is None:
                result.connected_at = time.monotonic()
                connected.set()

        other: str | None = None
        if joined["peers"]:
            # The newcomer offers (docs/protocol.md, `joined`).
            other = joined["peers"][0]["id"]
            await pc.setLocalDescription(await pc.createOffer())
            await ws.send(json.dumps({"type": "signal", "to": other, "data": {
                "description": {"type": "offer", "sdp": pc.localDescription.sdp}}}))

        async def signalling() -> None:
            nonlocal other
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] != "signal":
                    continue
                data = message["data"]
                if "description" in data:
                    description = data["description"]
                    await pc.setRemoteDescription(
                        RTCSessionDescription(sdp=description["sdp"], type=description["type"]))
                    if description["type"] == "offer":
                        other = message["from"]
                        await pc.setLocalDescription(await pc.createAnswer())
                        await ws.send(json.dumps({"type": "signal", "to": other, "data": {
                            "description": {"type": "answer", "sdp": pc.localDescription.sdp}}}))
                elif data.get("candidate"):
                    candidate = data["candidate"]
                    ice = candidate_from_sdp(candidate["candidate"].split(":", 1)[1])
                    ice.sdpMid = candidate.get("sdpMid")
                    ice.sdpMLineIndex = candidate.get("sdpMLineIndex")
                    await pc.addIceCandidate(ice)

        reader = asyncio.create_task(signalling())
        pair: list[str] | None = None
        try:
            await asyncio.wait_for(connected.wait(), args.connect_timeout)
            await asyncio.wait_for(result.heard.wait(), args.connect_timeout)
            # Now, while the call is surely up: on a slow machine the other peer may be gone
            # (and the connection closed) by the end of the hold.
            pair = selected_pair(pc)
            await asyncio.sleep(args.hold)
        except TimeoutError:
            pass
        if pair is None and result.connected_at is not None:
            pair = selected_pair(pc)
        remote_sdp = pc.remoteDescription.sdp if pc.remoteDescription else None
        local_sdp = pc.localDescription.sdp if pc.localDescription else None
        report = {
            "connected": result.connected_at is not None,
            "final_state": pc.connectionState,
            "join_to_connected_ms": result.ms(result.connected_at),
            "join_to_tone_ms": result.ms(result.tone_at),
            "heard_hz": result.heard_hz,
            "pair": pair,
            "local_candidate_types": candidate_types(local_sdp),
            "remote_candidate_types": candidate_types(remote_sdp),
            "ice_policy": joined["ice_transport_policy"],
            "ice_urls": [url for s in joined["ice_servers"] for url in s["urls"]],
        }
        reader.cancel()
        for listener in listeners:
            listener.cancel()
        player.audio.stop()
        await pc.close()
        return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ws_url")
    parser.add_argument("room")
    parser.add_argument("name")
    parser.add_argument("tone_wav")
    parser.add_argument("expected_hz", type=float)
    parser.add_argument("--connect-timeout", type=float, default=15.0)
    parser.add_argument("--hold", type=float, default=3.0)
    report = asyncio.run(run(parser.parse_args()))
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
