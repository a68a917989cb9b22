"""The Python XES peer: join voice calls from a program or a terminal (``xes call``).

Needs the ``peer`` extra (from a clone: ``pip install '.[peer]'``; aiortc and numpy). The API in brief::

    from xes.peer import Peer, open_file_source

    async with Peer("http://127.0.0.1:8000", name="bot",
                    audio=open_file_source("hello.wav", loop=True)) as peer:
        room = await peer.join("http://127.0.0.1:8000/r/Jf3kq8ZC0yB1o5uVhYx1Aw")
        async for event in peer.events():
            print(event)

See docs/python.md.
"""

from __future__ import annotations

from xes.peer.audio import (
    AudioTap,
    WavRecorder,
    capture_device_available,
    open_file_source,
    open_microphone,
)
from xes.peer.connection import LinkState, Route
from xes.peer.errors import (
    AudioError,
    ConnectionLost,
    JoinRefused,
    PeerError,
    RoomLinkError,
    ServerProtocolError,
    ServerUnreachable,
)
from xes.peer.events import (
    AudioStarted,
    ChatReceived,
    Disconnected,
    Event,
    HostChanged,
    Joined,
    Knocked,
    LinkChanged,
    PeerJoined,
    PeerLeft,
    Queued,
    Reconnected,
    Reconnecting,
    Resumed,
    RoomLeft,
    RulesChanged,
    SafetyAlert,
    SafetyCodeChanged,
    ServerError,
    WaitingInLobby,
)
from xes.peer.identity import PeerIdentity
from xes.peer.links import RoomTarget, resolve_room, websocket_url
from xes.peer.peer import Peer, RemotePeer, Room
from xes.protocol.codes import CloseCode, ErrorCode

__all__ = [
    "Peer",
    "PeerIdentity",
    "RemotePeer",
    "Room",
    "LinkState",
    "Route",
    "AudioTap",
    "WavRecorder",
    "open_file_source",
    "open_microphone",
    "capture_device_available",
    "RoomTarget",
    "resolve_room",
    "websocket_url",
    "PeerError",
    "RoomLinkError",
    "ServerUnreachable",
    "ConnectionLost",
    "JoinRefused",
    "ServerProtocolError",
    "AudioError",
    "ErrorCode",
    "CloseCode",
    "Event",
    "Joined",
    "Queued",
    "WaitingInLobby",
    "PeerJoined",
    "PeerLeft",
    "LinkChanged",
    "AudioStarted",
    "HostChanged",
    "RulesChanged",
    "Knocked",
    "RoomLeft",
    "ServerError",
    "Reconnecting",
    "Resumed",
    "Reconnected",
    "Disconnected",
    "SafetyCodeChanged",
    "SafetyAlert",
    "ChatReceived",
]
