"""A room taken over from a dead owner keeps what its host set before (issue 14: "bans and rules
hold across nodes"): the password (its hash and salt), the bans, the host role. They travel in the
owner's snapshot, not in anyone's memory that survived."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis

from tests.cluster.test_cluster_rooms import closed_code, drain, resume_until
from tests.server.wsclient import Client, new_room
from tests.support.cluster import XesCluster
from xes.peer.identity import PeerIdentity

pytestmark = pytest.mark.timeout(120)

MALLORY = PeerIdentity.generate()
PASSWORD = "correct horse"


async def test_password_bans_and_host_survive_the_owners_death(
        start_cluster: Callable[..., XesCluster]) -> None:
    cluster = start_cluster()
    room = new_room()
    host = await Client.connect(cluster.node(0).ws_url)  # the first node owns the room
    assert (await host.join(room, "Host"))["host"] == host.peer
    guest, mallory = (await Client.connect(cluster.node(1).ws_url),
                      await Client.connect(cluster.node(2).ws_url))
    await guest.join(room, "Guest")
    await host.expect("peer-joined")
    await mallory.identify(MALLORY)
    await mallory.join(room, "Mallory")
    for member in (host, guest):
        await member.expect("peer-joined")
    await host.send({"type": "ban", "peer": mallory.peer})
    assert (await mallory.expect("removed"))["banned"] is True
    for member in (host, guest):
        assert (await member.expect("peer-left"))["reason"] == "banned"
    await host.send({"type": "set-rules", "password": PASSWORD})
    for member in (host, guest):
        assert (await member.expect("rules"))["rules"]["password"] is True
    # The rules live in Redis only: no node keeps a copy of the password's hash or the bans on
    # its disk (docs/privacy.md), where it would outlive the room.
    for node in cluster.alive():
        assert node.own_data_dir is not None
        assert not (node.own_data_dir / "rooms.json").exists(), node.own_data_dir

    cluster.kill(0)
    assert await closed_code(guest) == 1012  # its home died: resume
    host = await resume_until(host, cluster.node(1).ws_url)
    guest = await resume_until(guest, cluster.node(2).ws_url)
    for member in (host, guest):  # each saw the other away and back at most: nobody left
        assert {message["type"] for message in await drain(member)} <= {"peer-away", "peer-back"}

    # The host is still host, with its rules; everything it set still applies.
    await host.send({"type": "set-rules", "max_peers": 8})
    for member in (host, guest):
        rules = (await member.expect("rules"))["rules"]
        assert rules["password"] is True and rules["max_peers"] == 8
    again = await Client.connect(cluster.node(1).ws_url)
    await again.identify(MALLORY)
    assert (await again.join(room, "Not Mallory", password=PASSWORD))["code"] == "banned"
    stranger = await Client.connect(cluster.node(2).ws_url)
    assert (await stranger.join(room, "Stranger"))["code"] == "password-required"
    assert (await stranger.join(room, "Stranger", password="battery"))["code"] == "wrong-password"
    joined = await stranger.join(room, "Stranger", password=PASSWORD)
    assert joined["type"] == "joined" and joined["host"] == host.peer
    assert sorted(p["id"] for p in joined["peers"]) == sorted([host.peer, guest.peer])
    for member in (host, guest):
        assert (await member.expect("peer-joined"))["peer"]["id"] == stranger.peer


async def test_a_rule_is_confirmed_only_once_a_takeover_would_keep_it(
        start_cluster: Callable[..., XesCluster]) -> None:
    """The owner dies the moment the host sees its new password confirmed. Redis holds every
    write for a while first (CLIENT PAUSE WRITE), so a node that told the host before the
    snapshot was in Redis would lose the password with it; XES tells only after."""
    cluster = start_cluster()
    room = new_room()
    host = await Client.connect(cluster.node(0).ws_url)  # the first node owns the room
    await host.join(room, "Host")
    guest = await Client.connect(cluster.node(1).ws_url)
    await guest.join(room, "Guest")
    await host.expect("peer-joined")

    probe = redis.Redis.from_url(cluster.redis.url)
    try:
        probe.client_pause(1500, all=False)  # writes wait 1.5 s; the nodes' leases last longer
        await host.send({"type": "set-rules", "password": PASSWORD})
        assert (await host.expect("rules"))["rules"]["password"] is True
        cluster.kill(0)
    finally:
        probe.close()

    assert await closed_code(guest) == 1012
    host = await resume_until(host, cluster.node(1).ws_url)
    stranger = await Client.connect(cluster.node(2).ws_url)
    assert (await stranger.join(room, "Stranger")).get("code") == "password-required"
    joined = await stranger.join(room, "Stranger", password=PASSWORD)
    assert joined["type"] == "joined" and joined["host"] == host.peer


async def test_a_join_is_confirmed_only_once_a_takeover_would_keep_it(
        start_cluster: Callable[..., XesCluster]) -> None:
    """The owner dies the moment a newcomer sees `joined`. Redis holds every write for a while
    first (CLIENT PAUSE WRITE): a node that confirmed the join before the room's snapshot and the
    newcomer's directory entry were in Redis would lose the newcomer with it. XES confirms only
    after: the newcomer resumes at another node, still in the room, and everyone sees it there."""
    cluster = start_cluster(2)
    room = new_room()
    host = await Client.connect(cluster.node(0).ws_url)  # the first node owns the room
    await host.join(room, "Host")
    guest = await Client.connect(cluster.node(1).ws_url)  # it sees the owner die
    await guest.join(room, "Guest")
    await host.expect("peer-joined")
    newcomer = await Client.connect(cluster.node(0).ws_url)

    probe = redis.Redis.from_url(cluster.redis.url)
    try:
        probe.client_pause(1500, all=False)  # writes wait 1.5 s; the nodes' leases last longer
        assert (await newcomer.join(room, "Newcomer"))["type"] == "joined"
        cluster.kill(0)
    finally:
        probe.close()

    assert await closed_code(guest) == 1012
    for lost in (newcomer, host):  # what reached them before their node died counts
        await closed_code(lost)
    members = []
    for client in (newcomer, host, guest):
        fresh = await Client.connect(cluster.node(1).ws_url)
        await fresh.send({"type": "resume", "peer": client.peer, "token": client.token,
                          "last_seq": client.last_seq})
        resumed = await fresh.recv(timeout=20)
        assert resumed["type"] == "resumed", resumed
        everyone = {client.peer for client in (newcomer, host, guest)}
        assert {p["id"] for p in resumed["room"]["peers"]} == everyone - {client.peer}
        fresh.peer, fresh.token, fresh.last_seq = resumed["peer"], resumed["resume"], client.last_seq
        members.append(fresh)
    for member in members:
        assert "peer-left" not in {message["type"] for message in await drain(member)}


async def test_a_join_writes_its_rooms_snapshot_once(
        start_cluster: Callable[..., XesCluster]) -> None:
    """The snapshot a join waits for already holds the newcomer; telling the room only numbers
    the announcements, which a takeover does not need, so it is not written again (one Redis
    write per join, and never a snapshot naming a `seq` a member may not have received)."""
    cluster = start_cluster(2)
    room = new_room()
    host = await Client.connect(cluster.node(0).ws_url)  # the first node owns the room
    await host.join(room, "Host")
    probe = redis.Redis.from_url(cluster.redis.url)
    try:
        def version() -> int:
            return int(probe.hget(f"xes:room:{room}", "version") or 0)

        await asyncio.sleep(0.5)  # any write still to come for the host's own join lands
        before = version()
        for node, name in ((1, "Guest"), (0, "Third")):
            newcomer = await Client.connect(cluster.node(node).ws_url)
            assert (await newcomer.join(room, name))["type"] == "joined"
            await host.expect("peer-joined")
        await asyncio.sleep(0.5)
        assert version() == before + 2
    finally:
        probe.close()
