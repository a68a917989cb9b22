"""Fixtures every test may use: a real `xes serve` process on an ephemeral loopback port."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.cluster import Service, XesCluster
    from tests.support.redis import RedisServer
    from tests.turn.coturn import Coturn

ROOT = Path(__file__).resolve().parent.parent
_URL = re.compile(r"Open (http://[^/\s]+)/")


@dataclass
class XesServerProcess:
    """A running `xes serve`: its URLs, its process, and everything it wrote to its log."""

    http_url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = None
    # A data directory made for this server alone, removed when it stops (None: the test's own).
    own_data_dir: Path | None = None

    @property
    def port(self) -> int:
        return int(self.http_url.rsplit(":", 1)[1])

    @property
    def ws_url(self) -> str:
        return self.http_url.replace("http://", "ws://", 1) + "/ws"

    @property
    def log(self) -> str:
        return "".join(self.output)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.own_data_dir is not None:
            shutil.rmtree(self.own_data_dir, ignore_errors=True)
        return self.process.returncode


def xes_command() -> list[str]:
    """How to run `xes` from the virtualenv under test."""
    exe = Path(sys.executable).with_name("xes")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "xes.cli"]


def launch_xes_server(args: list[str] | None = None, env: dict[str, str] | None = None,
                      host: str = "127.0.0.1", wrapper: list[str] | None = None,
                      builtin_relay: bool = False) -> XesServerProcess:
    """Start `xes serve --port 0` and wait until it prints its URL.

    Without TURN unless the test asks for it (`--turn-url` or `--turn-host` in `args`, or
    `builtin_relay` for the coturn `xes serve` starts by itself): a test states the relay it
    relies on. With a fresh data directory of its own unless `args` name one (`--data-dir`), so
    that servers never share saved rooms.
    """
    args = list(args or [])
    if not builtin_relay and "--turn-url" not in args and "--turn-host" not in args:
        args.append("--no-turn")
    if "--new-identities-per-day" not in args:
        # Every test's browsers and clients are new identities from one address (loopback): the
        # per-network limit is tested where a test asks for it, not tripped by the others.
        args += ["--new-identities-per-day", "100000"]
    own_data_dir = None
    if "--data-dir" not in args:
        # Each server its own throwaway data: never the operator's default directory.
        own_data_dir = Path(tempfile.mkdtemp(prefix="xes-data-"))
        args += ["--data-dir", str(own_data_dir)]
    command = [*(wrapper or []), *xes_command(), "serve", "--host", host, "--port", "0", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})}, bufsize=1)
    assert process.stdout is not None
    output: list[str] = []
    url = None
    for line in process.stdout:
        output.append(line)
        found = _URL.search(line)
        if found:
            url = found.group(1)
            break
    if url is None:
        process.wait(5)
        process.stdout.close()
        if own_data_dir is not None:
            shutil.rmtree(own_data_dir, ignore_errors=True)
        raise RuntimeError("xes serve did not start:\n" + "".join(output))
    server = XesServerProcess(url, process, output, own_data_dir=own_data_dir)

    def drain() -> None:  # keep reading so the pipe never fills, and keep the log for tests
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)

    server.reader = threading.Thread(target=drain, daemon=True)
    server.reader.start()
    return server


@pytest.fixture
def start_xes_server() -> Iterator[Callable[..., XesServerProcess]]:
    """Factory: start_xes_server(args=[...], env={...}) -> a running server, stopped afterwards."""
    started: list[XesServerProcess] = []

    def start(args: list[str] | None = None, env: dict[str, str] | None = None,
              **kwargs: object) -> XesServerProcess:
        server = launch_xes_server(args, env, **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def xes_server(start_xes_server: Callable[..., XesServerProcess]) -> XesServerProcess:
    """A fresh default server for one test."""
    return start_xes_server()


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    """A real coturn on loopback for one test: the production configuration (`xes turn-config`)
    plus the loopback overlay, a fresh secret; tests/turn/coturn.py starts it."""
    from tests.turn.coturn import start_coturn

    server = start_coturn(tmp_path / "coturn")
    yield server
    server.stop()


def require_binary(name: str) -> str:
    """Absolute path of a system binary; fails (never skips) when the install step missed it."""
    path = shutil.which(name) or (name if Path(name).exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed: scripts/test.sh should have installed it")
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A real PostgreSQL cluster for the whole session (started on first use); its URL."""
    from tests.support.postgres import postgres_cluster

    with postgres_cluster() as url:
        yield url


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A real, empty redis-server for one test (persistence off): its `url`, `restart()`, `stop()`."""
    from tests.support.redis import redis_server as start_redis

    with start_redis() as server:
        yield server


@pytest.fixture(scope="session")
def shared_cluster(postgres: str) -> Iterator[XesCluster]:
    """Three `xes serve --redis` nodes for the whole session, for the tests in which no node dies
    (tests/support/cluster.py): one Redis, one PostgreSQL database, one identity secret."""
    from tests.support.cluster import running_cluster

    with running_cluster(postgres) as cluster:
        yield cluster


@pytest.fixture(params=["one-process", "3-nodes-on-redis"])
def service(request: pytest.FixtureRequest) -> Service:
    """The server of a contract test, once per backend: a fresh `xes serve` of its own (state in
    memory), and the shared three-node cluster on Redis, where each new client lands on the next
    node. The same test against both, so that the in-memory default and Redis cannot diverge."""
    if request.param == "one-process":
        server: Service = request.getfixturevalue("xes_server")
    else:
        server = request.getfixturevalue("shared_cluster")
    return server


@pytest.fixture
def start_cluster(postgres: str) -> Iterator[Callable[..., XesCluster]]:
    """Factory: start_cluster(size=3, args=[...]) -> a cluster on a Redis of its own (`.redis`,
    which the test may restart), with a fresh PostgreSQL database; all stopped afterwards."""
    from tests.support.cluster import running_cluster

    with ExitStack() as stack:
        def start(size: int = 3, args: list[str] | None = None) -> XesCluster:
            return stack.enter_context(running_cluster(postgres, size, args or []))

        yield start


@pytest.fixture(params=["sqlite", "postgresql"])
def storage_args(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """`xes serve` / `xes moderator` options for each backend: SQLite in a fresh --data-dir, or a
    fresh database in the session's PostgreSQL (the identity secret still in --data-dir)."""
    args = ["--data-dir", str(tmp_path)]
    if request.param == "postgresql":
        from tests.support.postgres import fresh_database

        args += ["--database", fresh_database(request.getfixturevalue("postgres"))]
    return args
