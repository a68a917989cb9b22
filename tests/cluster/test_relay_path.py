"""Which nodes a relayed `signal` crosses in a cluster, counted on every node's /metrics.

Every member's session, with its `seq` counter and replay buffer, lives at the room's owner, so a
signal goes sender's edge -> owner -> recipient's edge, skipping the nodes that coincide: one
inbox entry per signal when the owner holds one side's socket (every two-person room but a
stranger match, since the first joiner's node claims the room), two when it holds neither.
docs/architecture.md ("Cluster", the relay path) says why a shortcut past the owner was not taken;
these are the counts its figures rest on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.conftest import XesServerProcess
from tests.server.wsclient import Client, new_room
from tests.support.metrics import metrics_urls, scrape

pytestmark = pytest.mark.timeout(60)

SIGNALS = 20  # each way


def relay_counts(nodes: list[XesServerProcess]) -> list[tuple[int, int]]:
    """Per node: signals it relayed (numbered for their recipient), inbox entries it wrote."""
    counts = []
    for node in nodes:
        samples = scrape(metrics_urls(node.log)[-1])
        counts.append((int(samples["xes_relayed_messages_total"]),
                       int(samples["xes_cluster_envelopes_sent_total"])))
    return counts


async def exchange(a: Client, b: Client) -> None:
    """SIGNALS signals each way; each arrives once and in order (wsclient checks every seq)."""
    for k in range(SIGNALS):
        await a.send({"type": "signal", "to": b.peer, "data": {"k": k}})
        await b.send({"type": "signal", "to": a.peer, "data": {"k": k}})
    for receiver in (a, b):
        got = [(await receiver.expect("signal"))["data"]["k"] for _ in range(SIGNALS)]
        assert got == list(range(SIGNALS))
        await receiver.silent(0.2)


async def settled(nodes: list[XesServerProcess]) -> list[tuple[int, int]]:
    """The counts once the joins' own envelopes and snapshot writes are out."""
    await asyncio.sleep(0.5)
    return relay_counts(nodes)


def delta(after: list[tuple[int, int]], before: list[tuple[int, int]]) -> list[tuple[int, int]]:
    return [(a[0] - b[0], a[1] - b[1]) for a, b in zip(after, before, strict=True)]


async def test_a_signal_between_two_nodes_crosses_one_inbox_when_the_owner_holds_a_side(
        start_nodes: Callable[..., list[XesServerProcess]]) -> None:
    nodes = start_nodes(2, "--metrics-port", "0")
    room = new_room()
    a = await Client.connect(nodes[0].ws_url)
    await a.join(room, "a")  # claims the room: node 0 owns it
    b = await Client.connect(nodes[1].ws_url)
    await b.join(room, "b")
    await a.expect("peer-joined")
    before = await settled(nodes)
    await exchange(a, b)
    # Node 0 numbers both directions (it holds both sessions) and writes a's signals to node 1's
    # inbox; node 1 writes b's to node 0's. One inbox entry per signal: nothing to shortcut.
    assert delta(await settled(nodes), before) == [(2 * SIGNALS, SIGNALS), (0, SIGNALS)]


async def test_with_the_owner_on_a_third_node_a_signal_crosses_two_inboxes(
        start_nodes: Callable[..., list[XesServerProcess]]) -> None:
    nodes = start_nodes(3, "--metrics-port", "0")
    room = new_room()
    host = await Client.connect(nodes[0].ws_url)
    await host.join(room, "host")  # node 0 owns the room, and a member's socket stays there
    a = await Client.connect(nodes[1].ws_url)
    await a.join(room, "a")
    b = await Client.connect(nodes[2].ws_url)
    await b.join(room, "b")
    await a.expect("peer-joined")
    before = await settled(nodes)
    await exchange(a, b)
    # Each signal: its sender's edge -> node 0 (numbered there) -> its recipient's edge.
    assert delta(await settled(nodes), before) == [
        (2 * SIGNALS, 2 * SIGNALS), (0, SIGNALS), (0, SIGNALS)]
