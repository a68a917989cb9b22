"""Several real `xes serve --redis` processes sharing one real Redis: a cluster for the tests.

Every node is a `xes serve` of its own (tests/conftest.py's `launch_xes_server`) with a node id of
its own, its own data directory and port, and what nodes must share to agree about people: the
Redis, one PostgreSQL database (identities' standing, blocks) and one identity secret (so that an
identity, and a ban of it, hashes the same on every node).

An `XesCluster` looks like one server to a test: `ws_url`, `http_url` and `port` hand out the live
nodes in turn, so that consecutive clients land on different nodes (each client on a node of its
own, as behind a load balancer without sticky sessions), and `log` is every node's log. The same
test can so run against one process and against the cluster (tests/conftest.py, `service`).
"""

from __future__ import annotations

import itertools
import secrets
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from tests.conftest import XesServerProcess, launch_xes_server
from tests.support.postgres import fresh_database
from tests.support.redis import RedisServer, redis_server

__all__ = ["Service", "XesCluster", "running_cluster"]

# Node ids are unique across the whole test run: a cluster started after another on the same Redis
# must never be mistaken for the first one's nodes (whose keys may not have expired yet).
_node_numbers = itertools.count()


class Service(Protocol):
    """What a protocol test needs of "the server": one process or a cluster of them."""

    @property
    def ws_url(self) -> str: ...

    @property
    def http_url(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def log(self) -> str: ...


def wait_until_healthy(server: XesServerProcess, timeout: float = 20.0) -> None:
    """Poll `/healthz` until it answers 200 (a node reports whether it reaches Redis there)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.http_url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.05)
    raise RuntimeError(f"{server.http_url} never became healthy ({last}):\n{server.log}")


class XesCluster:
    """`size` nodes on `redis`; see the module docstring.

    `args` are given to every node (e.g. a short `--resume-grace`); `database` is the PostgreSQL
    URL every node shares. The cluster stops its nodes, not its Redis (the caller's).
    """

    def __init__(self, redis: RedisServer, database: str, size: int = 3,
                 args: Sequence[str] = ()) -> None:
        self.redis = redis
        self.database = database
        self.args = list(args)
        self._shared = Path(tempfile.mkdtemp(prefix="xes-cluster-"))
        self.identity_secret = self._shared / "identity-secret"
        self.identity_secret.write_bytes(secrets.token_bytes(32))
        self.nodes: dict[str, XesServerProcess] = {}
        self._turn = 0
        ids = [f"n{next(_node_numbers)}" for _ in range(size)]
        # All at once: each node spends its start importing Python, which overlaps well.
        with ThreadPoolExecutor(size) as pool:
            launches = [pool.submit(self._launch, node_id) for node_id in ids]
        failure: BaseException | None = None
        for node_id, launch in zip(ids, launches, strict=True):
            try:
                self.nodes[node_id] = launch.result()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            self.stop()
            raise failure

    def _launch(self, node_id: str) -> XesServerProcess:
        node = launch_xes_server([*self.args, "--redis", self.redis.url, "--node-id", node_id,
                                  "--database", self.database,
                                  "--identity-secret-file", str(self.identity_secret)])
        try:
            wait_until_healthy(node)
        except BaseException:
            node.stop()
            raise
        return node

    def start_node(self, node_id: str | None = None) -> str:
        """Start one more node (a fresh id unless given); returns its id once it is healthy."""
        node_id = node_id or f"n{next(_node_numbers)}"
        self.nodes[node_id] = self._launch(node_id)
        return node_id

    @property
    def ids(self) -> list[str]:
        """The nodes' ids in the order they were started, the dead ones included."""
        return list(self.nodes)

    def node(self, index_or_id: int | str) -> XesServerProcess:
        return self.nodes[index_or_id if isinstance(index_or_id, str) else self.ids[index_or_id]]

    def alive(self) -> list[XesServerProcess]:
        return [node for node in self.nodes.values() if node.process.poll() is None]

    def next_node(self) -> XesServerProcess:
        """The next live node in turn."""
        live = self.alive()
        assert live, "every node of the cluster is dead"
        node = live[self._turn % len(live)]
        self._turn += 1
        return node

    @property
    def ws_url(self) -> str:
        return self.next_node().ws_url

    @property
    def http_url(self) -> str:
        return self.next_node().http_url

    @property
    def port(self) -> int:
        return self.next_node().port

    @property
    def log(self) -> str:
        return "".join(f"--- node {node_id} ---\n{node.log}" for node_id, node in self.nodes.items())

    def kill(self, index_or_id: int | str) -> None:
        """`kill -9` one node: no goodbye to Redis, to its clients or to the other nodes."""
        node = self.node(index_or_id)
        node.process.send_signal(signal.SIGKILL)
        node.process.wait(10)

    def stop(self) -> None:
        if self.nodes:  # all at once too: each spends its stop handing its rooms over
            with ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(XesServerProcess.stop, self.nodes.values()))
        shutil.rmtree(self._shared, ignore_errors=True)

    def __enter__(self) -> XesCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def running_cluster(postgres_url: str, size: int = 3, args: Sequence[str] = ()
                    ) -> Iterator[XesCluster]:
    """A cluster on a Redis of its own and a fresh database in the PostgreSQL at `postgres_url`."""
    with redis_server() as redis, XesCluster(redis, fresh_database(postgres_url), size, args) as cluster:
        yield cluster
