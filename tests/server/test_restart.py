"""Restarts of a real `xes serve`: a crash (SIGKILL) never reopens a protected room weaker."""

from __future__ import annotations

import asyncio
import signal
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import XesServerProcess, launch_xes_server
from tests.server.wsclient import Client, new_room
from xes.peer.identity import PeerIdentity

pytestmark = pytest.mark.timeout(90)

MALLORY = PeerIdentity.generate()
PASSWORD = "correct horse"
# docs/protocol.md, "Restarts": how long `xes serve` may take to stop on SIGTERM.
STOP_BOUND_SECONDS = 5.0


@pytest.fixture
def servers() -> Iterator[list[XesServerProcess]]:
    """Servers a test starts one after another on one data directory; all stopped at the end."""
    started: list[XesServerProcess] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[XesServerProcess], data_dir: Path) -> XesServerProcess:
    server = launch_xes_server(["--data-dir", str(data_dir), "--room-wait", "60"])
    servers.append(server)
    return server


async def set_rules(host: Client, **rules: object) -> dict[str, object]:
    await host.send({"type": "set-rules", **rules})
    changed = await host.expect("rules")
    return changed["rules"]  # type: ignore[no-any-return]


async def test_sigkill_then_restart_no_room_comes_back_weaker(
        servers: list[XesServerProcess], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    before = start(servers, data_dir)
    # Room A: a password, a ban and a maximum of 3; room B: locked with the lobby on.
    room_a, room_b = new_room(), new_room()
    host_a = await Client.connect(before.ws_url)
    joined = await host_a.join(room_a, "Host A")
    key_a = joined["host_key"]
    assert joined["host"] == host_a.peer and len(key_a) == 22
    mallory = await Client.connect(before.ws_url)
    assert (await mallory.identify(MALLORY))["type"] == "identified"
    await mallory.join(room_a, "Mallory")
    await host_a.expect("peer-joined")
    await host_a.send({"type": "ban", "peer": mallory.peer})
    await host_a.expect("peer-left")
    await set_rules(host_a, max_peers=3)
    rules_a = await set_rules(host_a, password=PASSWORD)
    host_b = await Client.connect(before.ws_url)
    key_b = (await host_b.join(room_b, "Host B"))["host_key"]
    await set_rules(host_b, locked=True)
    rules_b = await set_rules(host_b, lobby=True)

    # The last `rules` has arrived: what it announced is on disk. Crash now.
    before.process.kill()
    before.process.wait(10)
    saved = data_dir / "rooms.json"
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    content = saved.read_bytes()
    for secret in (PASSWORD, MALLORY.public_key, key_a, key_b, host_a.peer, "Host A", "Mallory", "127.0.0.1"):
        assert secret.encode() not in content, secret

    after = start(servers, data_dir)
    assert "restored 2 protected room(s)" in after.log

    async def refused(room: str, identity: PeerIdentity | None = None, **fields: object) -> str:
        client = await Client.connect(after.ws_url)
        if identity is not None:
            assert (await client.identify(identity))["type"] == "identified"
        answer = await client.join(room, "Newcomer", **fields)
        assert answer["type"] == "error", answer
        return str(answer["code"])

    assert await refused(room_a) == "password-required"
    assert await refused(room_a, password="battery staple") == "wrong-password"
    assert await refused(room_a, MALLORY, password=PASSWORD) == "banned"
    assert await refused(room_a, host_key="x" * 22) == "password-required"  # a made-up key
    assert await refused(room_b) == "room-locked"

    # Members with the password come back; nobody is host until the host is.
    guest = await Client.connect(after.ws_url)
    await guest.identify()
    back = await guest.join(room_a, "Guest", password=PASSWORD)
    assert back["type"] == "joined" and back["host"] is None and "host_key" not in back
    assert back["rules"] == rules_a
    await guest.send({"type": "set-rules", "password": None})  # nobody else can weaken it
    assert (await guest.expect("error"))["code"] == "not-host"
    second = await Client.connect(after.ws_url)
    assert (await second.join(room_a, "Second", password=PASSWORD))["type"] == "joined"
    await guest.expect("peer-joined")
    # The maximum counts the host's seat: a third newcomer finds the room full.
    assert await refused(room_a, password=PASSWORD) == "room-full"

    # The host proves itself with its key: no password asked, the role is its own again.
    host_again = await Client.connect(after.ws_url)
    joined = await host_again.join(room_a, "Host A", host_key=key_a)
    assert joined["type"] == "joined" and joined["host"] == host_again.peer
    assert joined["rules"] == rules_a and joined["host_key"] not in (None, key_a)
    for member in (guest, second):
        assert (await member.expect("peer-joined"))["peer"]["id"] == host_again.peer
        assert await member.expect("host") == {"type": "host", "peer": host_again.peer}
        await member.silent()
    host_b_again = await Client.connect(after.ws_url)
    joined_b = await host_b_again.join(room_b, "Host B", host_key=key_b)
    assert joined_b["host"] == host_b_again.peer and joined_b["rules"] == rules_b


async def closed_with(client: Client) -> int | None:
    """Read until the server closes ``client``'s socket; the close code it sent."""
    with pytest.raises(ConnectionClosed):
        while True:
            await client.recv(timeout=10)
    return client.ws.close_code


async def test_sigterm_then_restart_every_client_resumes_where_it_was(
        servers: list[XesServerProcess], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    before = start(servers, data_dir)
    room, lobby_room = new_room(), new_room()
    host = await Client.connect(before.ws_url)
    assert (await host.join(room, "Host"))["host"] == host.peer
    ada, bob = await Client.connect(before.ws_url), await Client.connect(before.ws_url)
    await ada.join(room, "Ada")
    await host.expect("peer-joined")
    await bob.join(room, "Bob")
    for member in (host, ada):
        await member.expect("peer-joined")
    rules = await set_rules(host, password=PASSWORD)
    for member in (ada, bob):
        await member.expect("rules")
    doorkeeper, knocker = await Client.connect(before.ws_url), await Client.connect(before.ws_url)
    await doorkeeper.join(lobby_room, "Doorkeeper")
    await set_rules(doorkeeper, lobby=True)
    assert (await knocker.join(lobby_room, "Knocker"))["type"] == "lobby"
    await doorkeeper.expect("knock")
    stranger = await Client.connect(before.ws_url)
    await stranger.match("Stranger", direct=True)
    await stranger.expect("queued")
    everyone = [host, ada, bob, doorkeeper, knocker, stranger]

    asked = time.monotonic()
    before.process.send_signal(signal.SIGTERM)
    for client in everyone:
        assert await closed_with(client) == 1012
    assert await asyncio.to_thread(before.process.wait, 30) == 0
    took = time.monotonic() - asked
    print(f"SIGTERM to exit: {took:.2f} s")
    assert took <= STOP_BOUND_SECONDS, f"xes serve took {took:.1f} s to stop"
    snapshot = data_dir / "snapshot.json"
    assert stat.S_IMODE(snapshot.stat().st_mode) == 0o600
    content = snapshot.read_bytes()
    for client in everyone:
        assert client.token.encode() not in content  # only the tokens' digests
    assert PASSWORD.encode() not in content
    assert stranger.identity.public_key.encode() not in content  # only its keyed hash

    after = start(servers, data_dir)
    assert not snapshot.exists()  # read once, then gone
    resumed: dict[str, dict[str, object]] = {}
    for client in everyone:
        fresh, answer = await client.resume(after.ws_url)
        assert answer["type"] == "resumed" and answer["peer"] == client.peer, answer
        resumed[client.peer] = answer
        client.ws, client.token, client.last_seq = fresh.ws, fresh.token, fresh.last_seq
    in_room = [resumed[c.peer]["room"] for c in (host, ada, bob)]
    assert all(r["room"] == room and r["host"] == host.peer and r["rules"] == rules  # type: ignore[index]
               for r in in_room), in_room
    assert resumed[doorkeeper.peer]["room"]["knocks"] == [  # type: ignore[index]
        {"id": knocker.peer, "name": "Knocker"}]
    assert resumed[knocker.peer]["lobby"] == lobby_room and resumed[knocker.peer]["room"] is None
    assert resumed[stranger.peer]["queued"] is True

    # Nobody left, joined or became host: a restart is a blip every room-mate resumed from.
    for client in everyone:
        while True:
            try:
                message = await client.recv(timeout=0.5)
            except TimeoutError:
                break
            assert message["type"] == "peer-back", message
    # And the relay works on the resumed sessions, the host's commands too.
    await ada.send({"type": "signal", "to": bob.peer, "data": {"candidate": None}})
    assert (await bob.expect("signal"))["from"] == ada.peer
    await doorkeeper.send({"type": "admit", "peer": knocker.peer})
    assert (await knocker.expect("joined"))["host"] == doorkeeper.peer
    # The stranger resumed identified: it may queue again without a new `identify`.
    await stranger.send({"type": "stop"})
    await stranger.expect("unqueued")
    await stranger.send({"type": "match", "name": "Stranger", "direct": True})
    await stranger.expect("queued")
