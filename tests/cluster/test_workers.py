"""`xes serve --workers N`: real processes on one port, supervised by a real parent."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import XesServerProcess, xes_command
from tests.server.wsclient import Client, new_room
from tests.support.metrics import metrics_urls, scrape
from tests.support.redis import RedisServer
from tests.turn.turnclient import allocation

pytestmark = pytest.mark.timeout(90)

CONNECTIONS = 40


def children(pid: int) -> set[int]:
    return {int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


async def connect_on(server: XesServerProcess, urls: list[str]) -> tuple[Client, int]:
    """A new client, and which worker took it (the one whose count of connections grew)."""
    before = [scrape(url)["xes_connections_opened_total"] for url in urls]
    client = await Client.connect(server.ws_url)
    grown = [n for n, url in enumerate(urls) if scrape(url)["xes_connections_opened_total"] > before[n]]
    assert len(grown) == 1, grown
    return client, grown[0]


def test_workers_without_redis_is_refused_with_a_reason() -> None:
    done = subprocess.run([*xes_command(), "serve", "--workers", "2", "--port", "0", "--no-turn"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--workers 2 needs --redis" in done.stderr


async def test_two_workers_share_one_port_and_rooms_and_the_parent_keeps_them(
        start_xes_server: Callable[..., XesServerProcess], redis_server: RedisServer) -> None:
    server = start_xes_server(["--workers", "2", "--redis", redis_server.url,
                               "--metrics-port", "0", "--node-id", "box"])
    parent = server.process.pid
    workers = children(parent)
    assert len(workers) == 2
    first_urls = metrics_urls(server.log)
    assert len(first_urls) == 2 and server.log.count("XES is running") == 1

    # Many connections to the one port: the kernel spreads them over both workers.
    clients = [await Client.connect(server.ws_url) for _ in range(CONNECTIONS)]
    pages = [scrape(url) for url in first_urls]
    nodes = {name for page in pages for name in page if name.startswith("xes_info")}
    assert len(nodes) == 2 and all('node="box-w' in node for node in nodes), nodes
    counts = [page["xes_connections"] for page in pages]
    assert sum(counts) == CONNECTIONS and min(counts) >= 1, counts
    for client in clients:
        await client.close()

    # Two clients on different workers meet in one room: the session of the second joiner
    # moves to the room's owner, and their signals cross between the processes through Redis.
    placed: dict[int, Client] = {}
    while len(placed) < 2:
        client, worker = await connect_on(server, first_urls)
        placed.setdefault(worker, client)
    alice, bob = placed[0], placed[1]
    room = new_room()
    assert (await alice.join(room, "Alice"))["type"] == "joined"
    assert (await bob.join(room, "Bob"))["type"] == "joined"
    assert (await alice.expect("peer-joined"))["peer"]["id"] == bob.peer
    await alice.send({"type": "signal", "to": bob.peer, "data": {"candidate": "from alice"}})
    assert (await bob.expect("signal"))["data"] == {"candidate": "from alice"}
    await bob.send({"type": "signal", "to": alice.peer, "data": {"candidate": "from bob"}})
    assert (await alice.expect("signal"))["data"] == {"candidate": "from bob"}
    pages = [scrape(url) for url in first_urls]
    assert sum(page["xes_cluster_migrations_total"] for page in pages) == 1
    assert all(page["xes_cluster_envelopes_received_total"] > 0 for page in pages)
    await alice.close()
    await bob.close()

    # A worker killed outright is started again, as a new node; the port keeps answering.
    killed = min(workers)
    subprocess.run(["kill", "-9", str(killed)], check=True)
    deadline = time.monotonic() + 20
    while len(metrics_urls(server.log)) < 3:
        assert time.monotonic() < deadline, server.log
        await asyncio.sleep(0.1)
    after = children(parent)
    assert len(after) == 2 and killed not in after and (after & workers)
    assert f"pid {killed}) exited with signal SIGKILL; starting it again" in server.log
    restarted = scrape(metrics_urls(server.log)[-1])
    assert not {name for name in restarted if name.startswith("xes_info")} & nodes
    for _ in range(10):
        client = await Client.connect(server.ws_url)
        await client.close()

    # SIGTERM to the parent: every worker stops gracefully (their snapshots), then the parent.
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    assert all(not Path(f"/proc/{pid}").exists() for pid in after)
    assert server.reader is not None
    server.reader.join(5)
    assert server.log.rstrip().endswith("XES stopped.")


async def test_workers_share_one_built_in_relay(
        start_xes_server: Callable[..., XesServerProcess], redis_server: RedisServer) -> None:
    """The parent starts the one coturn and gives every worker its URL and secret: credentials
    from either worker open an allocation on it, and it stops with the parent."""
    server = start_xes_server(["--workers", "2", "--redis", redis_server.url, "--metrics-port", "0"],
                              builtin_relay=True)
    kids = children(server.process.pid)
    relays = [pid for pid in kids if Path(f"/proc/{pid}/comm").read_text().strip() == "turnserver"]
    assert len(kids) == 3 and len(relays) == 1, kids
    urls = metrics_urls(server.log)
    placed: dict[int, Client] = {}
    while len(placed) < 2:
        client, worker = await connect_on(server, urls)
        placed.setdefault(worker, client)
    for client in placed.values():
        joined = await client.join(new_room(), "alone")
        [turn] = [s for s in joined["ice_servers"] if s["urls"][0].startswith("turn:")]
        found = re.match(r"turn:([\d.]+):(\d+)\?", turn["urls"][0])
        assert found is not None, turn
        async with allocation((found[1], int(found[2])), turn["username"], turn["credential"]):
            pass  # coturn accepted this worker's credentials
        await client.close()
    assert server.stop() == 0
    assert not Path(f"/proc/{relays[0]}").exists(), "the relay outlived the parent"
