"""Restarts of a real `xes serve`: a crash (SIGKILL) never reopens a protected room weaker."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import XesServerProcess, launch_xes_server
from tests.server.wsclient import Client, new_room

pytestmark = pytest.mark.timeout(90)

MALLORY_KEY = "browser-key-of-mallory-0001"
GUEST_KEY = "browser-key-of-the-guest-01"
PASSWORD = "correct horse"


@pytest.fixture
def servers() -> Iterator[list[XesServerProcess]]:
    """Servers a test starts one after another on one data directory; all stopped at the end."""
    started: list[XesServerProcess] = []
    yield started
    for server in started:
        server.stop()


def start(servers: list[XesServerProcess], data_dir: Path) -> XesServerProcess:
    server = launch_xes_server(["--data-dir", str(data_dir), "--restore-grace", "60"])
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
    await mallory.join(room_a, "Mallory", key=MALLORY_KEY)
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
    for secret in (PASSWORD, MALLORY_KEY, key_a, key_b, host_a.peer, "Host A", "Mallory", "127.0.0.1"):
        assert secret.encode() not in content, secret

    after = start(servers, data_dir)
    assert "restored 2 protected room(s)" in after.log

    async def refused(room: str, **fields: object) -> str:
        client = await Client.connect(after.ws_url)
        answer = await client.join(room, "Newcomer", **fields)
        assert answer["type"] == "error", answer
        return str(answer["code"])

    assert await refused(room_a) == "password-required"
    assert await refused(room_a, password="battery staple") == "wrong-password"
    assert await refused(room_a, password=PASSWORD, key=MALLORY_KEY) == "banned"
    assert await refused(room_a, host_key="x" * 22) == "password-required"  # a made-up key
    assert await refused(room_b) == "room-locked"

    # Members with the password come back; nobody is host until the host is.
    guest = await Client.connect(after.ws_url)
    back = await guest.join(room_a, "Guest", password=PASSWORD, key=GUEST_KEY)
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
