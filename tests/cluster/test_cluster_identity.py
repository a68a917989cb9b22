"""Identities agree across the nodes of a cluster: one identity secret, one PostgreSQL database.

docs/architecture.md, "Cluster": every node gets the same --identity-secret-file and --database.
A ban by identity made at one node holds when the banned key comes back through another, and a
node whose secret differs refuses to join the cluster rather than split identities in two.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import XesServerProcess, launch_xes_server
from tests.server.wsclient import Client, new_room
from tests.support.postgres import fresh_database
from tests.support.redis import RedisServer

pytestmark = pytest.mark.timeout(120)


async def test_a_ban_by_identity_holds_when_the_key_comes_back_through_another_node(
        start_nodes: Callable[..., list[XesServerProcess]], postgres: str) -> None:
    nodes = start_nodes(3, "--database", fresh_database(postgres))
    room = new_room()
    host = await Client.connect(nodes[0].ws_url)
    assert (await host.join(room, "host"))["type"] == "joined"
    mallory = await Client.connect(nodes[1].ws_url)
    assert (await mallory.identify())["type"] == "identified"
    assert (await mallory.join(room, "mallory"))["type"] == "joined"
    await host.expect("peer-joined")
    await host.send({"type": "ban", "peer": mallory.peer})
    assert (await mallory.expect("removed"))["banned"] is True
    await host.expect("peer-left")
    again = await Client.connect(nodes[2].ws_url)  # a new connection, a new peer id, same key
    assert (await again.identify(mallory.identity))["type"] == "identified"
    refused = await again.join(room, "mallory again")
    assert refused["type"] == "error" and refused["code"] == "banned"
    await host.silent(0.3)


def test_a_node_with_another_identity_secret_refuses_to_join(
        start_nodes: Callable[..., list[XesServerProcess]], redis_server: RedisServer,
        tmp_path: Path) -> None:
    start_nodes(1)
    other = tmp_path / "other-secret"
    other.write_bytes(secrets.token_bytes(32))
    other.chmod(0o600)
    with pytest.raises(RuntimeError, match="identity secret differs"):
        launch_xes_server(["--redis", redis_server.url, "--identity-secret-file", str(other)])
