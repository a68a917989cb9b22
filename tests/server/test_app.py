"""The real server process over real WebSockets: rooms, relay, bad input, limits, HTTP."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable

import pytest
import websockets
from picows import WSListener, WSMsgType, ws_connect

from tests.conftest import XesServerProcess
from tests.server.wsclient import Client, new_room
from tests.support.cluster import Service

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def trio(service: Service) -> AsyncIterator[tuple[Client, Client, Client, str]]:
    """Ada and Bob in one room, Cy in another (on the cluster: each on a node of its own)."""
    room = new_room()
    ada, bob, cy = [await Client.connect(service.ws_url) for _ in range(3)]
    await ada.join(room, "Ada")
    await bob.join(room, "Bob")
    await ada.expect("peer-joined")
    await cy.join(new_room(), "Cy")
    yield ada, bob, cy, room
    for c in (ada, bob, cy):
        await c.close()


async def test_join_and_leave_notifications(service: Service) -> None:
    room = new_room()
    ada, bob, cy = [await Client.connect(service.ws_url) for _ in range(3)]
    joined = await ada.join(room, "Ada")
    assert joined["type"] == "joined" and joined["peers"] == [] and joined["host"] == ada.peer
    joined = await bob.join(room, "Bob")
    assert [(p["id"], p["name"]) for p in joined["peers"]] == [(ada.peer, "Ada")]
    notice = await ada.expect("peer-joined")
    assert notice["peer"]["id"] == bob.peer and notice["peer"]["name"] == "Bob"
    joined = await cy.join(room, "Cy")
    assert [p["name"] for p in joined["peers"]] == ["Ada", "Bob"]
    await ada.expect("peer-joined")
    await bob.expect("peer-joined")
    await bob.send({"type": "leave"})
    assert await bob.expect("left") == {"type": "left", "room": room}
    for member in (ada, cy):
        assert await member.expect("peer-left") == {"type": "peer-left", "peer": bob.peer, "reason": "left"}
    await cy.close()  # closing the tab
    left = await ada.expect("peer-left")
    assert left["peer"] == cy.peer and left["reason"] == "disconnected"


async def test_relay_stamps_the_sender_and_keeps_data(trio: tuple[Client, Client, Client, str]) -> None:
    ada, bob, _, _ = trio
    data = {"description": {"type": "offer", "sdp": "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"}}
    await bob.send({"type": "signal", "to": ada.peer, "from": ada.peer, "data": data})
    relayed = await ada.expect("signal")
    assert relayed["from"] == bob.peer  # a forged "from" is ignored: the server stamps it
    assert relayed["data"] == data


async def test_signal_outside_the_room_is_refused_and_nobody_notices(
        trio: tuple[Client, Client, Client, str]) -> None:
    ada, bob, cy, _ = trio
    for target in (cy.peer, "A" * 22, bob.peer):  # another room's member, nobody, yourself
        await bob.send({"type": "signal", "to": target, "data": {"candidate": None}})
        error = await bob.expect("error")
        assert error["code"] == "peer-not-found" and error["ref"] == "signal"
    await cy.send({"type": "signal", "to": ada.peer, "data": {"candidate": None}})
    assert (await cy.expect("error"))["code"] == "peer-not-found"
    await ada.silent()
    await cy.silent(0.05)


async def test_signal_before_joining(service: Service) -> None:
    lone = await Client.connect(service.ws_url)
    await lone.send({"type": "signal", "to": "A" * 22, "data": {}})
    assert (await lone.expect("error"))["code"] == "not-joined"
    await lone.send({"type": "set-rules", "locked": True})
    assert (await lone.expect("error"))["code"] == "not-joined"


BAD_INPUT = [
    ("malformed JSON", "{nope", "bad-json"),
    ("not an object", "[1, 2]", "bad-json"),
    ("binary frame", b"\x00\x01", "bad-json"),
    ("unknown type", {"type": "teleport"}, "unknown-type"),
    ("missing type", {"room": "x"}, "unknown-type"),
    ("type not a string", {"type": 7}, "unknown-type"),
    ("missing field", {"type": "join", "name": "x"}, "bad-field"),
    ("wrong-typed field", {"type": "join", "room": 12, "name": "x"}, "bad-field"),
    ("malformed id", {"type": "signal", "to": "../etc", "data": {}}, "bad-field"),
    ("data not an object", {"type": "signal", "to": "A" * 22, "data": "sdp"}, "bad-field"),
    ("name too long", {"type": "join", "room": "A" * 22, "name": "x" * 65}, "bad-field"),
    ("control characters in name", {"type": "join", "room": "A" * 22, "name": "a\nb"}, "bad-field"),
    ("oversized", {"type": "signal", "to": "A" * 22, "data": {"sdp": "x" * 70_000}}, "too-big"),
]


@pytest.mark.parametrize(("case", "payload", "code"), BAD_INPUT, ids=[c[0] for c in BAD_INPUT])
async def test_bad_input_gets_a_structured_error_and_changes_nothing(
        trio: tuple[Client, Client, Client, str], case: str, payload: object, code: str) -> None:
    ada, bob, _, _ = trio
    await bob.send(payload)  # type: ignore[arg-type]
    error = await bob.expect("error")
    assert error["code"] == code and error["message"]
    await ada.silent(0.2)
    # ... and the connection still works:
    await bob.send({"type": "signal", "to": ada.peer, "data": {"ok": True}})
    assert (await ada.expect("signal"))["data"] == {"ok": True}


async def test_frames_over_the_hard_cap_close_the_connection(
        trio: tuple[Client, Client, Client, str]) -> None:
    ada, bob, _, _ = trio
    await bob.send("x" * 1_100_000)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await bob.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    assert (await ada.expect("peer-left"))["reason"] == "disconnected"


async def test_a_flood_closes_only_the_flooder(start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=["--rate-burst", "50", "--rate-per-second", "10"])
    room = new_room()
    ada, bob = await Client.connect(server.ws_url), await Client.connect(server.ws_url)
    await ada.join(room, "Ada")
    await bob.join(room, "Bob")
    await ada.expect("peer-joined")
    try:
        for _ in range(200):
            await bob.send({"type": "signal", "to": ada.peer, "data": {}})
    except websockets.ConnectionClosed:
        pass  # the server may close before all 200 are written
    code = None
    try:
        while True:
            await bob.recv()
    except websockets.ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else None
    assert code == 4029
    received = 0
    while True:
        message = await ada.recv()
        if message["type"] == "peer-left":
            break
        received += 1
    assert 40 <= received <= 60  # the burst went through, the rest did not
    # Ada is fine: she can still talk to a newcomer.
    cy = await Client.connect(server.ws_url)
    await cy.join(room, "Cy")
    await ada.expect("peer-joined")


async def test_an_error_streak_closes_the_connection(service: Service) -> None:
    bad = await Client.connect(service.ws_url)
    for _ in range(50):
        await bad.send("{")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        for _ in range(51):
            await bad.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002


async def test_the_ninth_joiner_is_told_the_room_is_full(service: Service) -> None:
    room = new_room()
    members = [await Client.connect(service.ws_url) for _ in range(9)]
    assert members[0].hello["limits"]["max_peers"] == 8
    for member in members[:8]:
        assert (await member.join(room))["type"] == "joined"
    error = await members[8].join(room)
    assert error["type"] == "error" and error["code"] == "room-full" and error["ref"] == "join"


async def test_heartbeat_detects_a_dead_connection(start_xes_server: Callable[..., XesServerProcess]) -> None:
    """A client that stops answering pings (a lost network) is detached within 2 heartbeats (the
    room sees `peer-away`), and leaves (`peer-left`) when its resume grace runs out."""
    server = start_xes_server(args=["--heartbeat", "1", "--resume-grace", "1"])
    room = new_room()
    ada = await Client.connect(server.ws_url)
    await ada.join(room, "Ada")

    class Mute(WSListener):  # type: ignore[misc]
        def on_ws_frame(self, transport: object, frame: object) -> None:
            pass

    # picows with auto-pong off: the TCP connection stays up but the peer never answers a ping.
    transport, _ = await ws_connect(Mute, server.ws_url, enable_auto_pong=False)
    transport.send(WSMsgType.TEXT, json.dumps({"type": "join", "room": room, "name": "Ghost"}).encode())
    await ada.expect("peer-joined")
    loop = asyncio.get_running_loop()
    started = loop.time()
    away = await ada.expect("peer-away", timeout=10)
    elapsed = loop.time() - started
    left = await ada.expect("peer-left", timeout=10)
    assert left == {"type": "peer-left", "peer": away["peer"], "reason": "disconnected"}
    print(f"dead peer detected after {elapsed:.1f} s with --heartbeat 1")
    transport.disconnect()


async def test_origin_check(start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=["--allow-origin", "https://xes.example.org"])
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(server.ws_url, origin="http://evil.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    for origin in (server.http_url, "https://xes.example.org"):
        ok = await Client.connect(server.ws_url, origin=origin)
        await ok.close()


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_http_routes(xes_server: XesServerProcess) -> None:
    status, headers, body = _get(xes_server.http_url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"
    status, headers, _ = _get(xes_server.http_url + "/new")
    assert status == 303 and headers["Location"].startswith("/r/")
    room_id = headers["Location"][3:]
    assert len(room_id) == 22  # 128 random bits, base64url
    status, headers, _ = _get(xes_server.http_url + headers["Location"])
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    status, headers, _ = _get(xes_server.http_url + "/static/main.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert _get(xes_server.http_url + "/static/../pyproject.toml")[0] == 404
    assert _get(xes_server.http_url + "/nothing-here")[0] == 404


async def test_room_ids_from_new_are_unique(xes_server: XesServerProcess) -> None:
    ids = {_get(xes_server.http_url + "/new")[1]["Location"] for _ in range(20)}
    assert len(ids) == 20
