"""The Python peer against a scripted server on a real loopback socket: what it sends is the
server's own `join` struct, and what a newer or broken server might send does not derail it.

A scripted server (not `xes serve`) is the only way to send frames the real server never sends:
an unknown type, a known type with a field missing, a frame that is not JSON.
"""

from __future__ import annotations

import asyncio
from typing import cast

import picows
import pytest

from xes.peer import CloseCode, Disconnected, ErrorCode, HostChanged, Joined, JoinRefused, Peer
from xes.peer.events import Event
from xes.protocol import messages as m

ME, HOST, ROOM = "M" * 22, "H" * 22, "R" * 22
RULES = m.Rules(locked=False, lobby=False, password=False, max_peers=8)


class ScriptedServer(picows.WSListener):
    """Says hello, records what the client sends, answers `join` with `replies`."""

    def __init__(self, replies: list[bytes]) -> None:
        self.replies = replies
        self.received: list[m.ClientMessage] = []
        self.transport: picows.WSTransport | None = None

    def on_ws_connected(self, transport: picows.WSTransport) -> None:
        self.transport = transport
        hello = m.Hello(protocol=m.PROTOCOL_VERSION, peer=ME, resume=ME,
                        limits=m.Limits(65536, 8, 400, 100.0, 10.0), relay=False, challenge="c" * 43)
        transport.send(picows.WSMsgType.TEXT, m.encode(hello))

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        if frame.msg_type is picows.WSMsgType.CLOSE:
            transport.disconnect()
        elif frame.msg_type is picows.WSMsgType.TEXT:
            message = m.decode(frame.get_payload_as_bytes())  # the real server's decoder
            self.received.append(message)
            if isinstance(message, m.Identify):
                answer = m.Identified(cooldown_until=None, banned=False, warning=None)
                transport.send(picows.WSMsgType.TEXT, m.encode(answer))
            if isinstance(message, m.Join):
                for reply in self.replies:
                    transport.send(picows.WSMsgType.TEXT, reply)

    def close(self, code: int) -> None:
        assert self.transport is not None
        self.transport.send_close(cast(picows.WSCloseCode, code), b"scripted")


async def test_peer_sends_server_structs_and_skips_what_it_cannot_read() -> None:
    joined = m.encode(m.Joined(
        room=ROOM, you=ME, host=HOST, peers=[], rules=RULES, ice_servers=[],
        ice_expires_at=None, ice_transport_policy="all", match=False,
    ))
    replies = [
        b'{"type":"weather","sunny":true}',        # a type from a later server: ignored
        b'{"type":"host"}',                        # a known type missing its field: skipped
        b"not json at all",                        # skipped
        joined[:-1] + b',"added_later":[1,2]}',    # an unknown field: ignored, message read
        m.encode(m.Host(peer=HOST)),
    ]
    script = ScriptedServer(replies)
    server = await picows.ws_create_server(lambda request: script, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Peer(f"ws://127.0.0.1:{port}/ws", name="bot") as peer:
            assert peer.id == ME
            room = await asyncio.wait_for(peer.join(ROOM), 10)
            assert (room.id, room.host, room.rules) == (ROOM, HOST, RULES)
            identify, join = script.received  # the identity first, then the struct the server reads
            assert isinstance(identify, m.Identify) and identify.public_key == peer.identity.public_key
            assert join == m.Join(room=ROOM, name="bot", rollback=False)
            events: list[Event] = []

            async def collect() -> None:
                async for event in peer.events():
                    events.append(event)
                    if isinstance(event, HostChanged):
                        script.close(CloseCode.FLOOD)

            await asyncio.wait_for(collect(), 10)
    finally:
        server.close()
        await server.wait_closed()
    assert [type(event) for event in events] == [Joined, HostChanged, Disconnected]
    lost = events[-1]
    assert isinstance(lost, Disconnected) and lost.error is not None
    assert lost.error.close_code == CloseCode.FLOOD
    assert "rate" in str(lost.error) and "4029" in str(lost.error)


async def test_a_blank_name_is_refused_as_the_server_would_without_sending_it() -> None:
    script = ScriptedServer([])
    server = await picows.ws_create_server(lambda request: script, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Peer(f"ws://127.0.0.1:{port}/ws", name="   ") as peer:
            with pytest.raises(JoinRefused) as refused:
                await asyncio.wait_for(peer.join(ROOM), 10)
            assert refused.value.code is ErrorCode.BAD_FIELD and "blank" in str(refused.value)
            with pytest.raises(JoinRefused):
                await asyncio.wait_for(peer.match(), 10)
            peer.set_rules(locked=True)  # anything else still goes out, as the server's struct
            async with asyncio.timeout(10):
                while not script.received:
                    await asyncio.sleep(0.01)
    finally:
        server.close()
        await server.wait_closed()
    assert script.received[1:] == [m.SetRules(locked=True)]  # after the identity
