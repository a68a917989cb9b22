"""`xes serve --workers N`: N server processes on one port, and a parent that keeps them running.

Each worker is a whole `xes serve` (its own event loop, core and node id) listening on the same
port with SO_REUSEPORT, so the kernel spreads new connections over them; they share rooms and
sessions through Redis (``--redis``), like nodes on different machines. The parent serves nothing:

- it reserves the port first (bound, never listening, so it takes no connections), which makes
  ``--port 0`` work and turns a port already taken into one clear error instead of N crashes;
- it prepares what the workers share before any starts: the data directory, the identity secret,
  one SQLite database (migrated once; WAL lets the processes share it) unless ``--database`` names
  PostgreSQL, and the built-in relay if one is wanted (one coturn, one secret, for all);
- it starts worker *i* with ``--data-dir DIR/worker-i`` (its saved rooms and its restart
  snapshot), a node id of its own (fresh on every start: a restarted worker is a new node, and the
  old one's rooms are taken over like any dead node's), and, when given, ``--metrics-port`` and
  ``--moderate-port`` plus *i*;
- it restarts a worker that dies (at once, or after a growing pause if it keeps dying young);
- on SIGTERM or SIGINT it passes SIGTERM on, waits for the workers' graceful stop, and exits.

Workers get SIGTERM if the parent dies without stopping them (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

__all__ = ["Supervisor", "SUPERVISOR_ENV", "reserve_port"]

log = logging.getLogger("xes.workers")

# Set in each worker's environment: the parent's pid (see xes.cli: the worker dies with it).
SUPERVISOR_ENV: Final = "XES_SUPERVISOR_PID"
_READY: Final = "XES is running."
# Lines each worker prints that the parent says once for all of them.
_SAID_BY_PARENT: Final = ("XES is running.", "XES stopped.", "Relay: ")
_SIGNALS: Final = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
# A worker that dies younger than this is restarted after a pause that doubles up to the cap.
_YOUNG_SECONDS: Final = 10.0
_PAUSE_CAP_SECONDS: Final = 30.0
# How long a graceful stop may take (the snapshot's write and the closing handshakes; see
# docs/deploy.md) before the parent kills what is left.
_STOP_SECONDS: Final = 25.0


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) with SO_REUSEPORT and not listening: the port is ours (the
    kernel lets only the same user join it) but this socket takes no connections.

    Raises:
        OSError: The port is taken by something that did not set SO_REUSEPORT.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    reservation = socket.socket(family, kind, proto)
    try:
        reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reservation.bind(address)
    except OSError:
        reservation.close()
        raise
    return reservation


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[str] | None = None
    node_id: str = ""
    started_at: float = 0.0
    ready: threading.Event = field(default_factory=threading.Event)
    restart_at: float | None = None
    pause: float = 1.0


class Supervisor:
    """Starts, watches and stops the workers (see the module docstring)."""

    def __init__(self, command: list[str], shared_args: list[str], count: int,
                 data_dir: Path, node_prefix: str, port_offsets: dict[str, int],
                 output: IO[str]) -> None:
        self.command = command
        self.shared_args = shared_args
        self.data_dir = data_dir
        self.node_prefix = node_prefix
        self.port_offsets = port_offsets
        self.output = output
        self.workers = [Worker(i) for i in range(count)]
        self._output_lock = threading.Lock()

    def _spawn(self, worker: Worker) -> None:
        worker.node_id = f"{self.node_prefix}-w{worker.index}-{secrets.token_hex(2)}"
        worker.ready.clear()
        extra = ["--node-id", worker.node_id,
                 "--data-dir", str(self.data_dir / f"worker-{worker.index}")]
        for option, base in self.port_offsets.items():
            extra += [option, str(base + worker.index if base else 0)]
        worker.process = subprocess.Popen(
            [*self.command, *self.shared_args, *extra], stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
            env={**os.environ, SUPERVISOR_ENV: str(os.getpid())})
        worker.started_at = time.monotonic()
        worker.restart_at = None
        threading.Thread(target=self._forward, args=(worker, worker.process), daemon=True).start()

    def _forward(self, worker: Worker, process: subprocess.Popen[str]) -> None:
        """Copy a worker's output to ours, but for the lines the parent says for all."""
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith(_READY):
                worker.ready.set()
            if not line.startswith(_SAID_BY_PARENT):
                with self._output_lock:
                    self.output.write(line)
                    self.output.flush()

    def start(self, timeout: float = 60.0) -> bool:
        """Start every worker; True once all are ready, False if one exited first (the others
        are stopped then: a worker that cannot start is a configuration error, not bad luck)."""
        for worker in self.workers:
            self._spawn(worker)
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            assert worker.process is not None
            while not worker.ready.wait(0.05):
                if worker.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    return False
        return True

    def run(self) -> None:
        """Supervise until SIGTERM or SIGINT (blocked by the caller and taken here, in order)."""
        while True:
            pending = [w.restart_at for w in self.workers if w.restart_at is not None]
            wait = min(pending) - time.monotonic() if pending else 60.0
            received = signal.sigtimedwait(_SIGNALS, max(0.0, wait))
            if received is not None and received.si_signo != signal.SIGCHLD:
                return
            now = time.monotonic()
            for worker in self.workers:
                process = worker.process
                if process is not None and process.poll() is not None:
                    lived = now - worker.started_at
                    worker.pause = (min(worker.pause * 2, _PAUSE_CAP_SECONDS)
                                    if lived < _YOUNG_SECONDS else 1.0)
                    delay = worker.pause if lived < _YOUNG_SECONDS else 0.0
                    log.warning("worker %d (node %s, pid %d) exited with %s; starting it again "
                                "in %.0f s", worker.index, worker.node_id, process.pid,
                                _exit_status(process.returncode), delay)
                    worker.process, worker.restart_at = None, now + delay
                if worker.process is None and worker.restart_at is not None \
                        and worker.restart_at <= now:
                    self._spawn(worker)

    def stop(self) -> None:
        """SIGTERM to every worker, then wait for their graceful stop; SIGKILL what is left."""
        running = [w.process for w in self.workers if w.process is not None]
        for process in running:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + _STOP_SECONDS
        for process in running:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _exit_status(code: int) -> str:
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"


def worker_arguments(args: argparse.Namespace) -> dict[str, int]:
    """The per-worker ports: the option, and the first worker's port (0: each a free one)."""
    offsets = {}
    if args.metrics_port is not None:
        offsets["--metrics-port"] = args.metrics_port
    if args.moderate_port is not None:
        offsets["--moderate-port"] = args.moderate_port
    return offsets


def worker_command() -> list[str]:
    """How the parent runs `xes` again: the same interpreter, the same package."""
    return [sys.executable, "-m", "xes.cli"]
