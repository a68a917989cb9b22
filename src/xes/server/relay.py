"""The built-in relay: `xes serve` starts a local coturn when it is given no TURN server.

A promise of the page — a stranger does not learn your IP address unless you allow it — needs a
relay, so the default install has one: when coturn's ``turnserver`` is installed and no
``--turn-url`` was given, `xes serve` runs it as a child process for its own lifetime.

- The secret is fresh for every run (128+ random bits) and lives only in a private scratch
  directory (mode 700, the configuration file mode 600) that is deleted when the server stops: no
  secret is kept between runs, and credentials from an earlier run stop working.
- The configuration is the one `xes turn-config` writes for production (`xes.turnconfig.render`),
  with one addition: the relay may send to its *own* address. Two strangers who both use this relay
  meet at that address (relay candidate to relay candidate), which the production deny-list refuses
  for loopback and private addresses. Only that one address is allowed, never the rest of the
  network; and TCP relaying stays off, so it reaches UDP services on that address only — on the
  default 127.0.0.1 install, services every local user can reach anyway.
- The relay listens on the address the server listens on, so a browser that can reach the page can
  reach the relay. A wildcard ``--host`` (0.0.0.0, ::) names no address to hand out, so there is no
  built-in relay then: run coturn with `xes turn-config` and give ``--turn-url`` (docs/deploy.md).
- The child gets SIGTERM if `xes serve` dies without cleaning up (Linux ``PR_SET_PDEATHSIG``), so
  no orphaned relay outlives the server. (After a SIGKILL the private directory stays behind; the
  secret in it opens nothing once that coturn is gone, since every run makes a new one.)
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ..turnconfig import TurnConfig, render

__all__ = ["BuiltinRelay", "RelayFailed", "RelayUnavailable", "die_with_parent", "free_port",
           "relay_address", "start_builtin_relay", "stop_process"]

REALM = "xes"
DEFAULT_PORT_RANGE = (49152, 65535)


class RelayUnavailable(Exception):
    """The built-in relay cannot run here; the message says why, for the start-up lines."""


class RelayFailed(RelayUnavailable):
    """coturn was started but did not come up; the message holds the end of its log."""


@dataclass
class BuiltinRelay:
    """A running coturn child: the TURN URLs and secret `xes serve` hands out credentials for."""

    urls: tuple[str, ...]
    secret: bytes
    process: subprocess.Popen[bytes]
    run_dir: Path

    def stop(self) -> None:
        """Stop coturn and delete its directory, secret and log included."""
        stop_process(self.process)
        shutil.rmtree(self.run_dir, ignore_errors=True)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop a child: SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


def relay_address(host: str) -> str:
    """The address the relay listens and relays on, for a server listening on `host`.

    Raises:
        RelayUnavailable: If `host` is a wildcard or a name (no single address to hand out).
    """
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise RelayUnavailable(f"--host {host} is a name, not an address; give --host an IP "
                               "address, or --turn-url") from None
    if address.is_unspecified:
        raise RelayUnavailable(f"--host {host} listens on every address, so there is no one "
                               "address to relay on; give --host the address browsers reach, "
                               "or run coturn yourself and give --turn-url") from None
    return str(address)


def free_port(address: str) -> int:
    """A port free for both TCP and UDP on `address` now (coturn listens on both)."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((address, 0))
            port: int = probe.getsockname()[1]
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as twin:
                twin.bind((address, port))
        except OSError:
            continue
        return port
    raise RelayUnavailable(f"no port free for both TCP and UDP on {address}")


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux; elsewhere a no-op)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the relay is still stopped by a normal shutdown


def start_builtin_relay(host: str, *, turnserver: str, port: int = 0,
                        port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
                        timeout: float = 10.0) -> BuiltinRelay:
    """Start coturn next to a server listening on `host`, and wait until it listens.

    Args:
        host: The server's ``--host``; the relay listens and relays on that address.
        turnserver: Path of coturn's ``turnserver``.
        port: TURN port (UDP and TCP); 0 picks a free one, so a system coturn on 3478 is no
            obstacle.
        port_range: UDP ports relayed traffic uses.
        timeout: Seconds to wait for the listener.

    Raises:
        RelayUnavailable: If it cannot run here; `RelayFailed` if coturn does not start (its
            log is in the message).
        ValueError: If `port` is out of range.
    """
    address = relay_address(host)
    if not 0 <= port <= 65535:
        raise ValueError(f"--relay-port {port} is out of range")
    port = port or free_port(address)
    secret = secrets.token_urlsafe(32)
    run_dir = Path(tempfile.mkdtemp(prefix="xes-relay-"))  # mode 700
    try:
        process = _launch(run_dir, address, port, secret, port_range, turnserver)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise
    shown = f"[{address}]" if ":" in address else address
    relay = BuiltinRelay(
        urls=(f"turn:{shown}:{port}?transport=udp", f"turn:{shown}:{port}?transport=tcp"),
        secret=secret.encode(), process=process, run_dir=run_dir,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection((address, port), timeout=0.5):
                return relay
        except OSError:
            time.sleep(0.05)
    try:
        log = (run_dir / "turn.log").read_text(errors="replace")[-2000:]
    except OSError:
        log = ""
    relay.stop()
    raise RelayFailed(f"coturn did not start on {shown}:{port}:\n{log}")


def _launch(run_dir: Path, address: str, port: int, secret: str, port_range: tuple[int, int],
            turnserver: str) -> subprocess.Popen[bytes]:
    """Write the configuration into run_dir and start coturn with it."""
    config = TurnConfig(
        secret=secret, realm=REALM, listening_ips=(address,), relay_ips=(address,),
        listening_port=port, min_port=port_range[0], max_port=port_range[1],
        log_file=str(run_dir / "turn.log"),
    )
    own_address = [f"allowed-peer-ip={address}",
                   "# Both strangers meet at this relay's own address (see xes.server.relay)."]
    if ipaddress.ip_address(address).is_loopback:
        own_address.insert(0, "allow-loopback-peers")
    config_path = run_dir / "turnserver.conf"
    # Created 0600 from the start: it holds the secret.
    with os.fdopen(os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w",
                   encoding="utf-8") as output:
        output.write(render(config) + "\n".join(own_address) + "\n")
    return subprocess.Popen(
        [turnserver, "-c", str(config_path), f"--pidfile={run_dir / 'turn.pid'}",
         f"--db={run_dir / 'turndb.sqlite'}", "--no-stdout-log"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=die_with_parent,  # in coturn, between fork and exec
    )
