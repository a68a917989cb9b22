"""Real `xes serve --redis` nodes on one real redis-server, and the clients the tests open."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import XesServerProcess, launch_xes_server
from tests.server.wsclient import close_all_clients
from tests.support.redis import RedisServer

GRACE = 20.0  # the default: a node's death is noticed within NODE_TTL_MS + a beat, well inside


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    yield
    await close_all_clients()


@pytest.fixture
def start_nodes(redis_server: RedisServer, tmp_path: Path
                ) -> Iterator[Callable[..., list[XesServerProcess]]]:
    """Factory: start_nodes(count, *args) -> that many nodes of one cluster, stopped afterwards.

    Every node shares the identity secret (as docs/architecture.md, "Cluster", requires), each
    has its own data directory, and its id is n0, n1, ... in start order.
    """
    secret = tmp_path / "identity-secret"
    secret.write_bytes(secrets.token_bytes(32))
    secret.chmod(0o600)
    started: list[XesServerProcess] = []

    def start(count: int, *args: str) -> list[XesServerProcess]:
        for _ in range(count):
            started.append(launch_xes_server([
                "--redis", redis_server.url, "--identity-secret-file", str(secret),
                "--node-id", f"n{len(started)}", "--resume-grace", str(GRACE), *args]))
        return started[-count:]

    yield start
    for node in started:
        node.stop()
        print(f"--- node log ({node.http_url}) ---\n{node.log[-4000:]}")  # shown if the test failed
