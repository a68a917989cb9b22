"""Messages to one connection are written together once per event-loop turn (server.outgoing):
each must still arrive whole, in order, with the right frame length, and before any close."""

from __future__ import annotations

import asyncio
import json

from tests.conftest import XesServerProcess
from tests.server.rawws import TEXT, RawWebSocket, frame
from tests.server.wsclient import Client, new_room
from xes.protocol.codes import CloseCode
from xes.protocol.messages import MAX_MESSAGE_BYTES
from xes.server.outgoing import text_frames


def test_text_frames_uses_each_length_encoding() -> None:
    """RFC 6455 §5.2: 7-bit lengths up to 125, then 16-bit, then 64-bit; server frames unmasked."""
    messages = [b"", b"a" * 125, b"b" * 126, b"c" * 65_535, b"d" * 65_536]
    data = text_frames(messages)
    heads = [b"\x81\x00", b"\x81\x7d", b"\x81\x7e\x00\x7e", b"\x81\x7e\xff\xff",
             b"\x81\x7f" + (65_536).to_bytes(8, "big")]
    at = 0
    for head, message in zip(heads, messages, strict=True):
        assert data[at:at + len(head)] == head
        at += len(head)
        assert data[at:at + len(message)] == message
        at += len(message)
    assert at == len(data)


async def test_a_burst_of_signals_arrives_whole_and_in_order(xes_server: XesServerProcess) -> None:
    """Sent in one write, they are read in one go and relayed in one write: small, medium and
    one whose relayed frame needs a 64-bit length, to a real client's WebSocket parser."""
    room = new_room()
    ada = await Client.connect(xes_server.ws_url)
    await ada.join(room, "Ada")
    bob = await asyncio.to_thread(RawWebSocket, xes_server.ws_url)
    try:
        assert bob.read_message()["type"] == "hello"
        bob.send_text(json.dumps({"type": "join", "room": room, "name": "Bob"}).encode())
        assert bob.read_message()["type"] == "joined"
        bob_id = (await ada.expect("peer-joined"))["peer"]["id"]
        # The largest that fits: with the server's head and seq its relayed frame is over 64 KiB.
        envelope = len(json.dumps({"type": "signal", "to": ada.peer, "data": {"pad": ""}}))
        sizes = [10, 300, 5, 3000, MAX_MESSAGE_BYTES - envelope, 20]
        signals = [json.dumps({"type": "signal", "to": ada.peer, "data": {"pad": "x" * n}})
                   for n in sizes]
        bob.sock.sendall(b"".join(frame(TEXT, s.encode()) for s in signals))
        for n in sizes:
            relayed = await ada.expect("signal")
            assert relayed == {"type": "signal", "from": bob_id, "data": {"pad": "x" * n}}
    finally:
        bob.close()


async def test_errors_sent_before_a_close_arrive_before_it(xes_server: XesServerProcess) -> None:
    """The error streak's last refusals and its close (4002) leave in the same turn: the queued
    errors must be written before the close frame, not dropped or overtaken by it."""
    limit = 50  # ServerSettings.error_streak_limit, the shipped default
    raw = await asyncio.to_thread(RawWebSocket, xes_server.ws_url)
    try:
        raw.read_message()  # hello
        raw.sock.sendall(b"".join(frame(TEXT, b"{") for _ in range(limit)))
        for _ in range(limit):
            message = raw.read_message()
            assert message["type"] == "error" and message["code"] == "bad-json", message
        head = raw.sock.recv(2)
        assert head[0] == 0x88, f"expected a close frame, got {head!r}"
        code = int.from_bytes(raw.sock.recv(2), "big")
        assert code == CloseCode.TOO_MANY_ERRORS == 4002
    finally:
        raw.close()


async def test_leave_tells_both_in_order(xes_server: XesServerProcess) -> None:
    """Signals, then `leave` (`peer-left` for the one who stays and `left` for the leaver, queued
    in one turn), then a join again: each side gets its messages once, in order, seq unbroken."""
    room = new_room()
    ada, bob = [await Client.connect(xes_server.ws_url) for _ in range(2)]
    await ada.join(room, "Ada")
    await bob.join(room, "Bob")
    await ada.expect("peer-joined")
    for _ in range(3):
        await bob.send({"type": "signal", "to": ada.peer, "data": {}})
    await bob.send({"type": "leave"})
    await bob.send({"type": "join", "room": room, "name": "Bob"})
    for _ in range(3):
        assert (await ada.expect("signal"))["from"] == bob.peer
    assert await ada.expect("peer-left") == {"type": "peer-left", "peer": bob.peer, "reason": "left"}
    assert await bob.expect("left") == {"type": "left", "room": room}
    assert (await bob.expect("joined"))["room"] == room
    assert (await ada.expect("peer-joined"))["peer"]["id"] == bob.peer
    await bob.silent()  # nothing more, nothing twice
    await ada.silent()
