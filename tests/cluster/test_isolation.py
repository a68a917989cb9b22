"""Bad input and floods against one node never affect the others (issue 14).

Mallory's sockets are all on the third node; the room's other members are on the first two (the
room is owned by the first). Whatever she sends gets its documented answer on her connection
alone: the members elsewhere see nothing of it, and every node, hers included, goes on serving.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import websockets

from tests.server.test_app import BAD_INPUT
from tests.server.wsclient import Client, new_room, resume_session
from tests.support.cluster import XesCluster, running_cluster

pytestmark = pytest.mark.timeout(90)

BURST = 50


@pytest.fixture(scope="module")
def cluster(postgres: str) -> Iterator[XesCluster]:
    with running_cluster(postgres, args=["--rate-burst", str(BURST), "--rate-per-second", "10"]
                         ) as started:
        yield started


@pytest.fixture
async def room(cluster: XesCluster) -> AsyncIterator[tuple[Client, Client, str]]:
    """Ada (host, first node) and Bob (second node) in a room."""
    room = new_room()
    ada = await Client.connect(cluster.node(0).ws_url)
    bob = await Client.connect(cluster.node(1).ws_url)
    await ada.join(room, "Ada")
    await bob.join(room, "Bob")
    await ada.expect("peer-joined")
    yield ada, bob, room


async def every_node_serves(cluster: XesCluster, room: str, members: list[Client]) -> None:
    """A newcomer on each node joins the room, and everyone in it is told."""
    assert len(cluster.alive()) == len(cluster.nodes)
    for node in cluster.nodes.values():
        newcomer = await Client.connect(node.ws_url)
        assert (await newcomer.join(room, "Newcomer"))["type"] == "joined"
        for member in members:
            assert (await member.expect("peer-joined"))["peer"]["id"] == newcomer.peer
        members.append(newcomer)


async def test_bad_input_on_one_node_reaches_no_other(
        cluster: XesCluster, room: tuple[Client, Client, str]) -> None:
    ada, bob, room_id = room
    mallory = await Client.connect(cluster.node(2).ws_url)
    await mallory.join(room_id, "Mallory")
    for member in (ada, bob):
        await member.expect("peer-joined")
    elsewhere = await Client.connect(cluster.node(0).ws_url)
    await elsewhere.join(new_room(), "Elsewhere")  # another room's member, on another node
    refused: list[tuple[object, str]] = [(payload, code) for _, payload, code in BAD_INPUT]
    refused += [
        ({"type": "signal", "to": elsewhere.peer, "data": {}}, "peer-not-found"),
        ({"type": "set-rules", "locked": True}, "not-host"),
        ({"type": "ban", "peer": ada.peer}, "not-host"),
        ({"type": "remove", "peer": bob.peer}, "not-host"),
        ({"type": "join", "room": new_room(), "name": "Twice"}, "already-joined"),
        ({"type": "resume", "peer": ada.peer, "token": mallory.token, "last_seq": 0},
         "already-joined"),
    ]
    for payload, code in refused:
        await mallory.send(payload)  # type: ignore[arg-type]
        error = await mallory.expect("error")
        assert error["code"] == code and error["message"], (payload, error)
    # Resuming someone else's session, from Mallory's node: refused, and changes nothing.
    for victim in (ada, bob, elsewhere):
        _, answer = await resume_session(cluster.node(2).ws_url, victim.peer, mallory.token, 0)
        assert answer["code"] == "session-gone"
    await asyncio.gather(*(member.silent(0.5) for member in (ada, bob, elsewhere)))
    # Mallory's connection still works, across the nodes, and so does everyone's.
    await mallory.send({"type": "signal", "to": ada.peer, "data": {"ok": True}})
    assert await ada.expect("signal") == {"type": "signal", "from": mallory.peer,
                                          "data": {"ok": True}}
    await every_node_serves(cluster, room_id, [ada, bob, mallory])


async def test_floods_on_one_node_close_only_the_flooders(
        cluster: XesCluster, room: tuple[Client, Client, str]) -> None:
    ada, bob, room_id = room
    flooder = await Client.connect(cluster.node(2).ws_url)  # in the room, signalling Ada
    await flooder.join(room_id, "Flooder")
    for member in (ada, bob):
        await member.expect("peer-joined")
    outsider = await Client.connect(cluster.node(2).ws_url)  # in no room, "hearing" Ada
    elsewhere = await Client.connect(cluster.node(0).ws_url)
    await elsewhere.join(new_room(), "Elsewhere")

    async def flood(client: Client, message: dict[str, object]) -> int | None:
        try:
            for _ in range(4 * BURST):
                await client.send(message)
            while True:
                await client.recv()
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    codes = await asyncio.gather(
        flood(flooder, {"type": "signal", "to": ada.peer, "data": {}}),
        flood(outsider, {"type": "hearing", "peer": ada.peer}))
    assert codes == [4029, 4029]
    received = 0
    while (message := await ada.recv())["type"] == "signal":
        received += 1
    assert message == {"type": "peer-left", "peer": flooder.peer, "reason": "disconnected"}
    assert BURST - 10 <= received <= BURST + 10  # the burst went through, the rest did not
    assert await bob.recv() == message  # and nothing else
    await asyncio.gather(*(member.silent(0.5) for member in (ada, bob, elsewhere)))
    await every_node_serves(cluster, room_id, [ada, bob])
