"""Clients that misbehave on purpose: one that never reads, invalid UTF-8, deep nesting, a hang-up
while a password hashes, and an unexpected exception inside the server. Each costs at most the
misbehaving connection; everyone else carries on."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets

from tests.conftest import XesServerProcess
from tests.server.rawws import TEXT, RawWebSocket, frame
from tests.server.wsclient import Client, new_room, resume_session
from xes.core.access import hash_password
from xes.server import app
from xes.server.app import XesServer
from xes.server.config import ServerSettings

pytestmark = pytest.mark.timeout(90)

MIB = 1 << 20
OUTGOING_LIMIT_BYTES = MIB  # docs/protocol.md, "Limits": unread messages


def _memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


async def test_a_client_that_never_reads_is_dropped_and_its_session_detached(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    """64 KiB signals, within the rate limit, to a member that never reads its socket.

    Before: all of it queued in the server (RSS grew by what was sent) and nobody was ever told
    the silent member left. Now its unsent bytes stop at the documented 1 MiB: it is closed
    (4009), its TCP connection aborted, and its session detached like any lost socket: the room
    sees ``peer-away``, never a ``peer-left`` while the session may still resume. What it left
    unread (over 1 MiB) is more than the replay buffer keeps (256 KiB), so when it comes back its
    resume is ``session-gone`` and the session ends at once (docs/protocol.md, "Sessions").
    """
    server = start_xes_server()
    room = new_room()
    ada, bob = await Client.connect(server.ws_url), await Client.connect(server.ws_url)
    await ada.join(room, "Ada")
    await bob.join(room, "Bob")
    await ada.expect("peer-joined")
    silent = RawWebSocket(server.ws_url, receive_buffer=4096)
    hello = await asyncio.to_thread(silent.read_message)
    silent.send_text(json.dumps({"type": "join", "room": room, "name": "Silent"}).encode())
    joined = await asyncio.to_thread(silent.read_message)  # the last message it ever reads
    assert joined["type"] == "joined" and joined["seq"] == 1
    silent_id = (await ada.expect("peer-joined"))["peer"]["id"]
    await bob.expect("peer-joined")

    before = _memory_kib(server.process.pid)
    # The frame is just under the 64 KiB message cap.
    signal = json.dumps({"type": "signal", "to": silent_id, "data": {"pad": "x" * 65_400}})
    assert 65_000 < len(signal) <= 65_536
    told = asyncio.ensure_future(bob.expect("peer-away", timeout=60))
    loop = asyncio.get_running_loop()
    started, sent = loop.time(), 0
    while not told.done() and sent < 600:  # up to 39 MB, at 100 a second: the sustained rate
        await ada.send(signal)
        sent += 1
        await asyncio.sleep(0.01)
    away = await told
    waited = loop.time() - started
    after = _memory_kib(server.process.pid)
    peak_growth_kib = after["VmHWM"] - before["VmRSS"]
    print(f"\nsilent member dropped after {sent} signals ({sent * len(signal) / MIB:.1f} MiB sent); "
          f"room told after {waited:.2f} s; server peak RSS growth {peak_growth_kib / 1024:.1f} MiB")

    assert away == {"type": "peer-away", "peer": silent_id}
    # What the server held for it stays near the bound: 1 MiB and one message, plus the replay
    # buffer's 256 KiB, not what was sent.
    assert peak_growth_kib * 1024 < OUTGOING_LIMIT_BYTES + 4 * MIB
    # Its connection is over (aborted: it was never going to read a close frame).
    _, ended = await asyncio.to_thread(silent.drain_until_closed)
    assert ended in ("reset", "closed")
    silent.close()
    # Ada was told the same; the relay between Ada and Bob is unaffected.
    assert await ada.recv() == away
    await bob.send({"type": "signal", "to": ada.peer, "data": {"relay": "unaffected"}})
    while (message := await ada.recv())["type"] != "signal":
        assert message["type"] == "error" and message["code"] == "peer-not-found", message
    assert message["data"] == {"relay": "unaffected"}
    await bob.silent()
    # It comes back having processed only `joined`: the replay no longer reaches back that far.
    _, answer = await resume_session(server.ws_url, silent_id, str(hello["resume"]), 1)
    assert answer["type"] == "error" and answer["code"] == "session-gone"
    left = {"type": "peer-left", "peer": silent_id, "reason": "disconnected"}
    assert await bob.recv() == left
    # Ada was told too; her later signals to it are refused, and the room goes on.
    assert await ada.recv() == left
    await bob.send({"type": "signal", "to": ada.peer, "data": {"still": "here"}})
    while (message := await ada.recv())["type"] != "signal":
        assert message["type"] == "error" and message["code"] == "peer-not-found", message
    assert message["data"] == {"still": "here"}


@pytest.fixture
async def pair(xes_server: XesServerProcess) -> AsyncIterator[tuple[Client, Client]]:
    """Ada and Bob in one room."""
    room = new_room()
    ada, bob = await Client.connect(xes_server.ws_url), await Client.connect(xes_server.ws_url)
    await ada.join(room, "Ada")
    await bob.join(room, "Bob")
    await ada.expect("peer-joined")
    yield ada, bob


NOT_UTF8 = {
    "a lone continuation byte": b"\xff",
    "above U+10FFFF": b"\xf4\x90\x80\x80",
    "a UTF-16 surrogate": b"\xed\xa0\x80",
    "an overlong encoding": b"\xc0\xaf",
    "a truncated sequence": b"\xe2\x82",
}


@pytest.mark.parametrize("bad", NOT_UTF8.values(), ids=NOT_UTF8.keys())
async def test_invalid_utf8_in_signal_data_is_refused_not_relayed(
        pair: tuple[Client, Client], bad: bytes) -> None:
    """Relayed, it made the receiving browser close its socket (1007): one message per victim."""
    ada, bob = pair
    frame = b'{"type":"signal","to":"' + ada.peer.encode() + b'","data":{"x":"a' + bad + b'b"}}'
    await bob.ws.send(frame, text=True)  # a text frame, bytes as they are
    error = await bob.expect("error")
    assert error["code"] == "bad-json" and error["ref"] == "signal"
    await ada.silent(0.2)
    # Both connections still work, and UTF-8 that is valid goes through byte for byte.
    await bob.send({"type": "signal", "to": ada.peer, "data": {"x": "é ☎ 🎧"}})
    assert (await ada.expect("signal"))["data"] == {"x": "é ☎ 🎧"}


NESTED = 1_000


@pytest.mark.parametrize("where", ["signal data", "an unknown field of leave"])
async def test_deep_nesting_gets_an_error_and_keeps_the_connection(
        xes_server: XesServerProcess, pair: tuple[Client, Client], where: str) -> None:
    """Before, the decoder's RecursionError closed the sender (1011) with a traceback logged."""
    ada, bob = pair
    deep = "[" * NESTED + "]" * NESTED
    if where == "signal data":
        message = f'{{"type":"signal","to":"{ada.peer}","data":{{"x":{deep}}}}}'
    else:
        message = f'{{"type":"leave","extra":{deep}}}'
    await bob.send(message)
    error = await bob.expect("error")
    assert error["code"] == "bad-json" and "nested" in error["message"]
    assert error["ref"] == ("signal" if where == "signal data" else "leave")
    await ada.silent(0.2)
    # Nesting within the documented 500 levels is accepted and relayed.
    shallow = "[" * 500 + "]" * 500
    await bob.send(f'{{"type":"signal","to":"{ada.peer}","data":{{"x":{shallow}}}}}')
    assert (await ada.expect("signal"))["data"]["x"] == json.loads(shallow)
    assert "Traceback" not in xes_server.log and "RecursionError" not in xes_server.log


# ----------------------------------------------------------------------------- in-process server
# For what cannot be done from outside: hold a password hash at a chosen moment, inject a fault.


@pytest.fixture
async def local_server() -> AsyncIterator[tuple[XesServer, str]]:
    server = XesServer(ServerSettings(port=0))
    port = await server.start()
    yield server, f"ws://127.0.0.1:{port}/ws"
    await server.stop()


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler (an exception nobody handled)."""
    caught: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: caught.append(context))
    yield caught
    loop.set_exception_handler(previous)


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (up to 10 s: a bound for a stuck test, not a speed requirement) for ``condition``."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never met")


async def test_a_hang_up_while_a_password_hashes_replays_nothing(
        local_server: tuple[XesServer, str], loop_errors: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Frames queued behind a password hash were replayed for a peer already gone: a KeyError
    in a task, every time."""
    server, url = local_server
    hashing, release = threading.Event(), threading.Event()

    def held_hash(password: str, salt: bytes) -> object:
        hashing.set()
        release.wait(10)
        return hash_password(password, salt)

    host, room = await Client.connect(url), new_room()
    await host.join(room, "Host")
    await host.send({"type": "set-rules", "password": "correct horse"})
    await host.expect("rules")
    monkeypatch.setattr(app, "hash_password", held_hash)
    guest = await Client.connect(url)
    await guest.send({"type": "join", "room": room, "name": "Guest", "password": "correct horse"})
    await asyncio.to_thread(hashing.wait, 10)
    for message in ({"type": "signal", "to": host.peer, "data": {}}, {"type": "ice-refresh"},
                    {"type": "leave"}):
        await guest.send(message)  # queued behind the hash
    await guest.close()
    await _until(lambda: guest.peer not in server.connections)
    release.set()
    await _until(lambda: not server._tasks)
    await asyncio.sleep(0.05)  # an orphaned task's exception is reported when it is collected
    gc.collect()
    assert loop_errors == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # The server still serves: the same room, the same password.
    again = await Client.connect(url)
    assert (await again.join(room, "Again", password="correct horse"))["type"] == "joined"
    await host.expect("peer-joined")


@pytest.mark.parametrize("where", ["relay", "join after a password hash", "leave"])
async def test_an_unexpected_exception_closes_that_connection_only(
        local_server: tuple[XesServer, str], loop_errors: list[dict[str, Any]],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, where: str) -> None:
    """A bug hit while handling one client's event: one log line without the payload, that
    client closed with 1011 and its session detached, everyone else served as before."""
    server, url = local_server
    room = new_room()
    ada, cy = await Client.connect(url), await Client.connect(url)
    await ada.join(room, "Ada")
    await cy.join(room, "Cy")
    await ada.expect("peer-joined")
    if where == "join after a password hash":
        await ada.send({"type": "set-rules", "password": "correct horse"})
        await ada.expect("rules")
        await cy.expect("rules")
    faulty = await Client.connect(url)
    secret = "SECRET-SDP-a=candidate:1 1 udp 203.0.113.7"

    def fail_for_faulty(method: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(peer: str, *args: Any, **kwargs: Any) -> Any:
            if peer == faulty.peer:
                raise RuntimeError(f"boom with a payload in it: {secret}")
            return method(peer, *args, **kwargs)
        return wrapper

    if where == "relay":
        assert (await faulty.join(room, "Faulty"))["type"] == "joined"
        for member in (ada, cy):
            await member.expect("peer-joined")
        monkeypatch.setattr(server.core, "route_signal", fail_for_faulty(server.core.route_signal))
        await faulty.send({"type": "signal", "to": ada.peer, "data": {"sdp": secret}})
    elif where == "leave":
        assert (await faulty.join(room, "Faulty"))["type"] == "joined"
        for member in (ada, cy):
            await member.expect("peer-joined")
        monkeypatch.setattr(server.core, "handle", fail_for_faulty(server.core.handle))
        await faulty.send({"type": "leave", "note": secret})
    else:
        monkeypatch.setattr(server.core, "handle", fail_for_faulty(server.core.handle))
        await faulty.send({"type": "join", "room": room, "name": "Faulty",
                           "password": "correct horse", "note": secret})

    with pytest.raises(websockets.ConnectionClosed) as closed:
        await faulty.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    present = {"Ada", "Cy"}
    if where != "join after a password hash":
        # It was in the room: the bug was ours, not a wish to leave, so its session detaches
        # (docs/protocol.md, "Sessions") and keeps its seat for the grace.
        for member in (ada, cy):
            assert await member.expect("peer-away") == {"type": "peer-away", "peer": faulty.peer}
        present.add("Faulty")
    await ada.send({"type": "signal", "to": cy.peer, "data": {"ok": True}})
    assert (await cy.expect("signal"))["data"] == {"ok": True}
    newcomer = await Client.connect(url)
    joined = await newcomer.join(room, "New", password="correct horse")
    assert joined["type"] == "joined" and {p["name"] for p in joined["peers"]} == present

    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1, [r.getMessage() for r in problems]
    line = problems[0].getMessage()
    assert "RuntimeError" in line and faulty.peer in line and "1011" in line
    assert not problems[0].exc_info  # no traceback
    assert secret not in caplog.text and "boom" not in caplog.text
    assert loop_errors == []


CLOSE_PATHS = {  # how the server ends it: the close code it sends (docs/protocol.md)
    "over the outgoing limit": 4009,
    "heartbeat lost": 1001,
    "the client's close frame": 1000,
    "flood": 4029,
    "error streak": 4002,
    "server stop": 1012,
}


@pytest.mark.parametrize(("path", "code"), CLOSE_PATHS.items(), ids=CLOSE_PATHS.keys())
async def test_every_close_ends_in_time_even_for_a_client_that_never_reads(
        monkeypatch: pytest.MonkeyPatch, loop_errors: list[dict[str, Any]], path: str,
        code: int) -> None:
    """Every close used to wait for a graceful drain, which a client that does not read never
    allows: its room was never told, and its socket and queue were kept for ever."""
    if path != "over the outgoing limit":
        # So that what is closed is a queue stuck below the limit, for another reason.
        monkeypatch.setattr(app, "OUTGOING_LIMIT_BYTES", 256 * MIB)
    server = XesServer(ServerSettings(port=0, heartbeat_seconds=1.0 if path == "heartbeat lost" else 10.0))
    url = f"ws://127.0.0.1:{await server.start()}/ws"
    stopped = False
    try:
        room = new_room()
        ada, bob = await Client.connect(url), await Client.connect(url)
        await ada.join(room, "Ada")
        await bob.join(room, "Bob")
        await ada.expect("peer-joined")
        silent = await asyncio.to_thread(RawWebSocket, url, 4096)
        silent.send_text(json.dumps({"type": "join", "room": room, "name": "Silent"}).encode())
        silent_id = (await ada.expect("peer-joined"))["peer"]["id"]
        await bob.expect("peer-joined")
        transport = server.connections[silent_id].transport
        signal = json.dumps({"type": "signal", "to": silent_id, "data": {"pad": "x" * 65_000}})
        while (silent_id in server.connections
               and transport.underlying_transport.get_write_buffer_size() < 2 * MIB):
            await ada.send(signal)
            await asyncio.sleep(0.005)

        small = json.dumps({"type": "signal", "to": ada.peer, "data": {}}).encode()
        if path == "the client's close frame":
            silent.send_close()
        elif path == "flood":
            silent.sock.sendall(b"".join(frame(TEXT, small) for _ in range(500)))
        elif path == "error streak":
            silent.sock.sendall(b"".join(frame(TEXT, b"{") for _ in range(50)))
        elif path == "server stop":
            await asyncio.wait_for(server.stop(), 10)
            stopped = True
        if path in ("over the outgoing limit", "heartbeat lost"):  # lost sockets: detached
            assert await bob.expect("peer-away", timeout=10) == {"type": "peer-away",
                                                                  "peer": silent_id}
        elif path != "server stop":  # a hang-up, or shut out: the session ends at once
            left = await bob.expect("peer-left", timeout=10)
            assert left == {"type": "peer-left", "peer": silent_id, "reason": "disconnected"}
        # Its socket is dropped within the close grace, though it never read a byte.
        await _until(lambda: transport.is_disconnected)
        sent = transport.close_handshake.sent  # what it was sent, had it read
        assert sent is not None and sent.code.value == code
        silent.close()
        assert loop_errors == []
    finally:
        if not stopped:
            await server.stop()


async def test_an_unexpected_exception_routing_a_page_is_a_bare_500(
        local_server: tuple[XesServer, str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """picows answered with the exception's own text; now a plain 500 and one log line."""
    server, url = local_server
    http = url.replace("ws://", "http://").removesuffix("/ws")

    def broken(name: str) -> object:
        raise RuntimeError("boom: /etc/secret-path")

    monkeypatch.setattr(server, "_file", broken)

    def get(path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(http + path, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    status, body = await asyncio.to_thread(get, "/")
    assert status == 500 and b"secret" not in body and b"boom" not in body
    assert await asyncio.to_thread(get, "/healthz") == (200, b"ok\n")
    [line] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "RuntimeError" in line and "secret" not in caplog.text
