"""Run a real coturn for tests, configured by `xes turn-config` plus a loopback-only overlay.

The relay tests use the very configuration `xes turn-config` generates for production; only the
lines the generated file itself says a test may append (`LOOPBACK_OVERLAY`) are added, and
runtime paths (log, pid file, database) point into the test's scratch directory.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import random
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from xes.server import relay
from xes.turnconfig import TurnConfig, render

__all__ = [
    "LOOPBACK_OVERLAY",
    "Coturn",
    "free_port",
    "start_coturn",
    "turn_rest_credentials",
    "wait_for_tcp",
]

TURNSERVER = "/usr/bin/turnserver"
REALM = "xes.test"

# The only lines a single-machine test appends to the production configuration: both
# browsers and the relay share 127.0.0.1, which production refuses as a peer address.
LOOPBACK_OVERLAY: tuple[str, ...] = ("allow-loopback-peers", "allowed-peer-ip=127.0.0.1")


# Relay port blocks of 200, below Linux's ephemeral range (32768+) so client sockets rarely sit
# in them (coturn skips a port that is taken anyway), handed out in a shuffled cycle: two coturns
# alive at once in one test session never share a block. A capture filters on a coturn's block,
# and a module's relayed call still streaming through another coturn in the same block showed
# up in it as this relay's traffic.
_BLOCK_STARTS = range(20000, 32000 - 199, 200)
_RELAY_BLOCKS: Iterator[int] = itertools.cycle(random.sample(_BLOCK_STARTS, len(_BLOCK_STARTS)))


def turn_rest_credentials(secret: str, user: str, expires_at: int) -> tuple[str, str]:
    """TURN REST API credentials, written independently of `xes.core.turn` on purpose.

    Username ``<expiry>:<user>``, credential base64(HMAC-SHA1(secret, username)), as coturn's
    ``use-auth-secret`` checks them.
    """
    username = f"{expires_at}:{user}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def free_port() -> int:
    """A port the kernel says is free for both TCP and UDP on 127.0.0.1 right now."""
    return relay.free_port("127.0.0.1")


def wait_for_tcp(host: str, port: int, timeout: float, netns: str | None = None) -> None:
    """Wait until something accepts TCP connections on host:port (inside `netns` if given).

    Raises:
        TimeoutError: If nothing listens before `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if netns is None:
            try:
                with socket.create_connection((host, port), timeout=0.5):
                    return
            except OSError:
                pass
        else:
            probe = subprocess.run(
                ["ip", "netns", "exec", netns, "bash", "-c", f"exec 3<>/dev/tcp/{host}/{port}"],
                capture_output=True,
            )
            if probe.returncode == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class Coturn:
    """One running turnserver: where it listens, its secret and its files."""

    host: str
    port: int
    min_port: int
    max_port: int
    secret: str
    run_dir: Path
    process: subprocess.Popen[bytes]
    config_path: Path
    netns: str | None = None
    tls_port: int | None = None
    extra_lines: tuple[str, ...] = field(default=())

    @property
    def log_path(self) -> Path:
        """coturn's log file."""
        return self.run_dir / "turn.log"

    def log_text(self) -> str:
        """Everything coturn logged so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def url(self, transport: str = "udp") -> str:
        """A ``turn:`` URL for this server."""
        return f"turn:{self.host}:{self.port}?transport={transport}"

    def credentials(self, user: str, ttl: int = 3600) -> tuple[str, str]:
        """Valid TURN REST credentials for `user`, expiring `ttl` seconds from now."""
        return turn_rest_credentials(self.secret, user, int(time.time()) + ttl)

    def relay_ports(self) -> range:
        """The UDP relay port range."""
        return range(self.min_port, self.max_port + 1)

    def stop(self) -> None:
        """Stop coturn (terminate, then kill) and wait for it."""
        relay.stop_process(self.process)


def start_coturn(
    run_dir: Path,
    *,
    host: str = "127.0.0.1",
    secret: str | None = None,
    extra_lines: Sequence[str] = LOOPBACK_OVERLAY,
    netns: str | None = None,
    port: int | None = None,
    port_range: tuple[int, int] | None = None,
    cert: tuple[Path, Path] | None = None,
    tls_port: int | None = None,
    more_addresses: Sequence[str] = (),
    timeout: float = 15.0,
) -> Coturn:
    """Start turnserver with the `xes turn-config` configuration plus `extra_lines`.

    Args:
        run_dir: Scratch directory for the configuration, log, pid file and database.
        host: Address coturn listens on and relays from.
        secret: Shared secret; a fresh random one when None.
        extra_lines: Lines appended to the generated configuration (the test overlay).
        netns: Network namespace to run in (via `ip netns exec`); the root one when None.
        port: TURN listening port; a free one when None.
        port_range: Relay port range; a random block of 200 below the ephemeral range if None.
        cert: (certificate, key) PEM files to enable the TLS listener.
        tls_port: Its port; a free one when None.
        more_addresses: More addresses to listen and relay on besides `host` (a dual-stack
            relay adds its IPv6 address).
        timeout: Seconds to wait for the listener.

    The caller must call `Coturn.stop()` (fixtures do it in their finalizer).

    Raises:
        TimeoutError: If coturn does not listen in time (its log is in the message).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    secret = secret if secret is not None else secrets.token_urlsafe(24)
    if port is None:
        port = free_port()
    if cert is not None and tls_port is None:
        tls_port = free_port()
    elif cert is None:
        tls_port = None
    if port_range is None:
        low = next(_RELAY_BLOCKS)
        port_range = (low, low + 199)
    config = TurnConfig(
        secret=secret,
        realm=REALM,
        listening_ips=(host, *more_addresses),
        relay_ips=(host, *more_addresses),
        listening_port=port,
        tls_listening_port=tls_port or 5349,
        min_port=port_range[0],
        max_port=port_range[1],
        cert=str(cert[0]) if cert else None,
        pkey=str(cert[1]) if cert else None,
        log_file=str(run_dir / "turn.log"),
    )
    config_path = run_dir / "turnserver.conf"
    config_path.write_text(render(config) + "\n".join(extra_lines) + "\n")
    config_path.chmod(0o600)
    command = [
        TURNSERVER, "-c", str(config_path),
        f"--pidfile={run_dir / 'turn.pid'}",
        f"--db={run_dir / 'turndb.sqlite'}",
        "--no-stdout-log",
    ]
    if netns is not None:
        command = ["ip", "netns", "exec", netns, *command]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    coturn = Coturn(
        host=host, port=port, min_port=port_range[0], max_port=port_range[1], secret=secret,
        run_dir=run_dir, process=process, config_path=config_path, netns=netns,
        tls_port=tls_port, extra_lines=tuple(extra_lines),
    )
    try:
        wait_for_tcp(host, port, timeout, netns)
        if tls_port is not None:
            wait_for_tcp(host, tls_port, timeout, netns)
    except TimeoutError as error:
        coturn.stop()
        raise TimeoutError(f"{error}; coturn log:\n{coturn.log_text()[-3000:]}") from error
    return coturn
