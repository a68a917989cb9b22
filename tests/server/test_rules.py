"""Room rules and matchmaking on the real server, including attempts to get around them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.conftest import XesServerProcess
from tests.server.wsclient import Client, new_room
from tests.support.cluster import Service
from xes.peer.identity import PeerIdentity

pytestmark = pytest.mark.timeout(60)

MALLORY = PeerIdentity.generate()


async def room_with_host(server: Service) -> tuple[Client, str]:
    host = await Client.connect(server.ws_url)
    room = new_room()
    assert (await host.join(room, "Host"))["host"] == host.peer
    return host, room


async def test_password_wrong_missing_and_right(service: Service) -> None:
    host, room = await room_with_host(service)
    await host.send({"type": "set-rules", "password": "correct horse"})
    rules = await host.expect("rules")
    assert rules["rules"]["password"] is True and "correct horse" not in str(rules)
    guest = await Client.connect(service.ws_url)
    assert (await guest.join(room, "G"))["code"] == "password-required"
    assert (await guest.join(room, "G", password="battery staple"))["code"] == "wrong-password"
    await host.silent()
    joined = await guest.join(room, "G", password="correct horse")
    assert joined["type"] == "joined"
    await host.expect("peer-joined")
    await host.send({"type": "set-rules", "password": None})
    assert (await host.expect("rules"))["rules"]["password"] is False


async def test_lock_keeps_everyone_new_out(service: Service) -> None:
    host, room = await room_with_host(service)
    await host.send({"type": "set-rules", "locked": True})
    await host.expect("rules")
    late = await Client.connect(service.ws_url)
    assert (await late.join(room, "Late"))["code"] == "room-locked"


async def test_non_host_cannot_use_host_commands(service: Service) -> None:
    host, room = await room_with_host(service)
    guest = await Client.connect(service.ws_url)
    await guest.join(room, "Guest")
    await host.expect("peer-joined")
    for command in ({"type": "set-rules", "locked": True}, {"type": "remove", "peer": host.peer},
                    {"type": "ban", "peer": host.peer}, {"type": "admit", "peer": host.peer},
                    {"type": "decline", "peer": host.peer}):
        await guest.send(command)
        error = await guest.expect("error")
        assert error["code"] == "not-host" and error["ref"] == command["type"]
    await host.silent()


async def test_lobby_knock_admit_and_decline(service: Service) -> None:
    host, room = await room_with_host(service)
    await host.send({"type": "set-rules", "lobby": True})
    await host.expect("rules")
    knocker, other = await Client.connect(service.ws_url), await Client.connect(service.ws_url)
    assert (await knocker.join(room, "Knocker"))["type"] == "lobby"
    knock = await host.expect("knock")
    assert knock["peer"] == {"id": knocker.peer, "name": "Knocker"}
    # A knocker is not a member: it cannot signal anyone.
    await knocker.send({"type": "signal", "to": host.peer, "data": {}})
    assert (await knocker.expect("error"))["code"] == "not-joined"
    await host.send({"type": "admit", "peer": knocker.peer})
    assert (await knocker.expect("joined"))["peers"][0]["id"] == host.peer
    await host.expect("peer-joined")
    assert (await other.join(room, "Other"))["type"] == "lobby"
    await host.expect("knock")
    await host.send({"type": "decline", "peer": other.peer})
    assert (await other.expect("error"))["code"] == "declined"


async def test_removed_peer_cannot_signal_the_room(service: Service) -> None:
    host, room = await room_with_host(service)
    mallory = await Client.connect(service.ws_url)
    await mallory.join(room, "Mallory")
    await host.expect("peer-joined")
    await host.send({"type": "remove", "peer": mallory.peer})
    assert await mallory.expect("removed") == {"type": "removed", "room": room, "banned": False}
    assert (await host.expect("peer-left"))["reason"] == "removed"
    await mallory.send({"type": "signal", "to": host.peer, "data": {"sneaky": True}})
    assert (await mallory.expect("error"))["code"] == "not-joined"
    await host.silent()


async def test_banned_browser_cannot_return_on_a_new_connection(service: Service) -> None:
    host, room = await room_with_host(service)
    mallory = await Client.connect(service.ws_url)
    await mallory.identify(MALLORY)
    await mallory.join(room, "Mallory")
    await host.expect("peer-joined")
    await host.send({"type": "ban", "peer": mallory.peer})
    assert (await mallory.expect("removed"))["banned"] is True
    assert (await host.expect("peer-left"))["reason"] == "banned"
    # Same connection:
    assert (await mallory.join(room, "Mallory"))["code"] == "banned"
    await mallory.close()
    # New connection, new name, same browser identity:
    again = await Client.connect(service.ws_url)
    await again.identify(MALLORY)
    assert (await again.join(room, "Totally Not Mallory"))["code"] == "banned"
    await host.silent()


async def test_host_passes_on_and_can_lower_but_not_raise_the_size(service: Service) -> None:
    host, room = await room_with_host(service)
    await host.send({"type": "set-rules", "max_peers": 9})
    error = await host.expect("error")
    assert error["code"] == "bad-field" and "max_peers" in error["message"]
    await host.send({"type": "set-rules", "max_peers": 2})
    await host.expect("rules")
    second, third = await Client.connect(service.ws_url), await Client.connect(service.ws_url)
    await second.join(room, "Second")
    assert (await third.join(room, "Third"))["code"] == "room-full"
    await host.close()
    assert (await second.expect("peer-left"))["reason"] == "disconnected"
    promoted = await second.expect("host")  # with the new host's own key (docs/protocol.md)
    assert promoted["peer"] == second.peer and len(promoted["host_key"]) == 22


async def test_strangers_are_matched_skipped_and_rematched(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=["--match-relax", "1"])
    a, b, c = [await Client.connect(server.ws_url) for _ in range(3)]
    await a.match("A", tags=["chess"], direct=True)
    await a.expect("queued")
    await b.match("B", tags=["Chess"], direct=True)
    await b.expect("queued")
    joined_b = await b.expect("joined")
    joined_a = await a.expect("joined")
    assert joined_a["match"] and joined_a["room"] == joined_b["room"]
    assert joined_b["peers"][0]["id"] == a.peer  # A waited longer: B joins second and offers
    await a.expect("peer-joined")
    # Nobody else can enter a match room.
    intruder = await Client.connect(server.ws_url)
    assert (await intruder.join(joined_a["room"], "Intruder"))["code"] == "room-locked"
    # A presses Next: B is told, A queues again, and never meets B again on this connection.
    await a.send({"type": "next"})
    await a.expect("left")
    await a.expect("queued")
    assert (await b.expect("peer-left"))["peer"] == a.peer
    await b.send({"type": "next"})
    await b.expect("left")
    await b.expect("queued")
    await asyncio.sleep(1.5)  # past --match-relax: A and B would accept anyone, but not each other
    await a.silent(0.2)
    await c.match("C", direct=True)
    await c.expect("queued")
    assert (await c.expect("joined"))["peers"][0]["id"] == a.peer  # the earliest waiting
    await c.send({"type": "stop"})
    await c.expect("left")
    await c.expect("unqueued")
    await b.send({"type": "stop"})
    assert (await b.expect("unqueued"))["type"] == "unqueued"
