"""Fixtures for the Python peer's tests: tone files and a private coturn.

The xes server comes from tests/conftest.py (`xes_server`, `start_xes_server`). coturn is
started here rather than borrowed from tests/turn so these tests stand on their own: loopback
only, TURN REST credentials (`--use-auth-secret`), UDP relay.
"""

from __future__ import annotations

import random
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_binary
from tests.peer.tones import write_tone


@pytest.fixture
def tones(tmp_path: Path) -> Callable[[float], Path]:
    """Factory: tones(440) -> path of a 10 s 440 Hz WAV in this test's tmp dir."""
    return lambda frequency: write_tone(tmp_path / "tones", frequency)


@dataclass(frozen=True)
class Coturn:
    """A running turnserver: where it listens and the file holding its shared secret."""

    port: int
    secret_file: Path
    log_file: Path
    relay_ports: range
    """The ports coturn allocates relayed addresses from."""

    @property
    def url(self) -> str:
        return f"turn:127.0.0.1:{self.port}?transport=udp"


def _free_port() -> int:
    # A port free for both UDP and TCP: coturn listens on both.
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"turnserver exited:\n{log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"turnserver did not listen on {port}")


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[Coturn]:
    """A private coturn on a free loopback port with a fresh static-auth-secret."""
    binary = require_binary("turnserver")
    run_dir = tmp_path / "coturn"
    run_dir.mkdir()
    secret = secrets.token_hex(16)
    secret_file = run_dir / "secret"
    secret_file.write_text(secret + "\n")
    port = _free_port()
    # A random relay range keeps concurrent coturns (other tests) from fighting over ports.
    low = random.randrange(50000, 59000, 100)
    log = run_dir / "turn.log"
    process = subprocess.Popen(
        [binary, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
         f"--listening-port={port}", f"--min-port={low}", f"--max-port={low + 99}",
         "--use-auth-secret", f"--static-auth-secret={secret}", "--realm=xes.test",
         "--fingerprint", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp-relay",
         "--allow-loopback-peers", "--no-multicast-peers", f"--log-file={log}", "--simple-log",
         "--no-stdout-log", f"--pidfile={run_dir / 'turn.pid'}",
         f"--db={run_dir / 'turndb.sqlite'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process, log)
        yield Coturn(port=port, secret_file=secret_file, log_file=log,
                     relay_ports=range(low, low + 100))
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
