"""Strangers matched across real `xes serve --redis` nodes by the one queue leader (issue 14).

A stranger's `match` at any node moves its session to the queue's leader, whose core decides and
commits the match through the Lua script (server/cluster_queue.py); when the leader is killed,
another node takes the lead once its lease lapses, and strangers still meet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import redis

from tests.cluster.test_cluster_rooms import forgotten
from tests.conftest import XesServerProcess
from tests.server.wsclient import Client
from tests.support.redis import RedisServer
from xes.server.cluster_queue import QueueKeys

KEYS = QueueKeys()


async def meet(first: Client, second: Client) -> str:
    """Both queue (first, then second); they meet in one match room: its id."""
    for client, name in ((first, "Ada"), (second, "Bob")):
        await client.match(name, direct=True)
        await client.expect("queued", timeout=20)
    joined = [await client.expect("joined", timeout=20) for client in (first, second)]
    assert joined[0]["match"] and joined[0]["room"] == joined[1]["room"]
    assert [p["id"] for p in joined[1]["peers"]] == [first.peer]  # the earlier one is first
    await first.expect("peer-joined")
    return str(joined[0]["room"])


async def test_strangers_at_different_nodes_meet_through_the_queue_leader_even_after_it_dies(
        start_nodes: Callable[..., list[XesServerProcess]], redis_server: RedisServer) -> None:
    nodes = start_nodes(3)
    probe = redis.Redis.from_url(redis_server.url)
    try:
        ada, bob = await Client.connect(nodes[0].ws_url), await Client.connect(nodes[1].ws_url)
        await meet(ada, bob)
        leader = probe.get(KEYS.leader)
        assert leader == b"n0"  # the first to queue made its node the leader
        first_epoch = int(probe.get(KEYS.epoch) or 0)
        # Committed: both tickets left Redis, and the match is recorded (for a while).
        assert probe.zcard(KEYS.order) == 0
        assert probe.get(KEYS.matched(ada.peer)) == f"{bob.peer} {first_epoch}".encode()

        nodes[0].process.kill()  # the leader dies: its lease lapses with its node key (5 s)
        # Until then a `match` may still move a session to the dead leader, which ends it like
        # any session homed at a dead node outside a room (its client queues afresh).
        await forgotten("n0", redis_server)
        carol, dave = await Client.connect(nodes[1].ws_url), await Client.connect(nodes[2].ws_url)
        await meet(carol, dave)
        assert probe.get(KEYS.leader) in (b"n1", b"n2")
        assert int(probe.get(KEYS.epoch) or 0) == first_epoch + 1
    finally:
        probe.close()


async def test_a_stranger_waiting_when_redis_restarts_empty_is_still_matched(
        start_nodes: Callable[..., list[XesServerProcess]], redis_server: RedisServer) -> None:
    leader, other = start_nodes(2)
    ada = await Client.connect(leader.ws_url)
    await ada.match("Ada", direct=True)
    await ada.expect("queued")
    probe = redis.Redis.from_url(redis_server.url)
    try:
        assert probe.zrange(KEYS.order, 0, -1) == [ada.peer.encode()]
        redis_server.restart()
        # The leader notices Redis lost everything and writes its waiting ticket back.
        deadline = time.monotonic() + 20
        while probe.zrange(KEYS.order, 0, -1) != [ada.peer.encode()]:
            assert time.monotonic() < deadline, "the queue was not written back"
            await asyncio.sleep(0.1)
        assert probe.get(KEYS.leader) == b"n0"
        bob = await Client.connect(other.ws_url)
        await bob.match("Bob", direct=True)
        await bob.expect("queued", timeout=20)
        joined = [await client.expect("joined", timeout=20) for client in (ada, bob)]
        assert joined[0]["room"] == joined[1]["room"]
    finally:
        probe.close()
