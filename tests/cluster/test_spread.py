"""A room of eight whose members are spread over three nodes (issue 14): everyone sees the same
member list, and signals cross the nodes exactly once and in order per sender."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.server.wsclient import Client, new_room
from tests.support.cluster import XesCluster

pytestmark = pytest.mark.timeout(60)

ROUNDS = 20  # signals each member sends each other member: 7 × 20 = 140, inside the rate burst


async def test_a_room_of_eight_over_three_nodes(shared_cluster: XesCluster) -> None:
    room = new_room()
    urls = [shared_cluster.ws_url for _ in range(8)]
    assert len(set(urls)) == 3  # three nodes, each holding two or three of the sockets
    members = [await Client.connect(url) for url in urls]
    for k, member in enumerate(members):
        joined = await member.join(room, f"P{k}")
        assert joined["type"] == "joined" and joined["host"] == members[0].peer
        assert [(p["id"], p["name"]) for p in joined["peers"]] == [
            (earlier.peer, f"P{n}") for n, earlier in enumerate(members[:k])]
        for earlier in members[:k]:
            notice = await earlier.expect("peer-joined")
            assert notice["peer"] == {"id": member.peer, "name": f"P{k}"}

    # Everyone talks to everyone at once, interleaved across the nodes.
    for n in range(ROUNDS):
        for sender in members:
            for receiver in members:
                if receiver is not sender:
                    await sender.send({"type": "signal", "to": receiver.peer, "data": {"n": n}})
    for receiver in members:
        heard: dict[str, list[int]] = defaultdict(list)
        for _ in range(ROUNDS * 7):
            message = await receiver.expect("signal")  # and seq grows by one each time
            heard[message["from"]].append(message["data"]["n"])
        assert heard == {sender.peer: list(range(ROUNDS)) for sender in members
                         if sender is not receiver}
    for receiver in members:
        await receiver.silent(0.1)  # exactly once: no duplicate arrives late
