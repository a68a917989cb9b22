"""`xes serve --turn-host NAME`: browsers are handed TURN over UDP, TCP and TLS together.

The real server over a real WebSocket: what a joining client receives in `joined.ice_servers` is
what its browser will try, so that is where the port plan (3478 UDP+TCP, TLS on 443) must show.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import XesServerProcess
from tests.server.wsclient import Client
from xes.turnconfig import TurnConfig, render

ENV = {"XES_TURN_SECRET": "s3cret-for-the-test"}


async def turn_urls_handed_out(server: XesServerProcess) -> list[str]:
    """The TURN URLs a client joining a fresh room is given."""
    client = await Client.connect(server.ws_url)
    await client.send({"type": "join", "room": secrets.token_urlsafe(16), "name": "Ada"})
    joined = await client.expect("joined")
    return [url for entry in joined["ice_servers"] for url in entry["urls"]
            if url.startswith(("turn:", "turns:"))]


async def test_turn_host_hands_out_udp_tcp_and_tls_together(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=["--turn-host", "turn.example.org"], env=ENV)
    assert sorted(await turn_urls_handed_out(server)) == sorted([
        "turn:turn.example.org:3478?transport=udp",
        "turn:turn.example.org:3478?transport=tcp",
        "turns:turn.example.org:443?transport=tcp",
    ])


async def test_turn_host_ports_move_and_turn_url_adds(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=[
        "--turn-host", "relay.example.org", "--turn-port", "3479", "--turn-tls-port", "0",
        "--turn-url", "turn:other.example.org:3478?transport=udp"], env=ENV)
    assert sorted(await turn_urls_handed_out(server)) == sorted([
        "turn:other.example.org:3478?transport=udp",
        "turn:relay.example.org:3479?transport=udp",
        "turn:relay.example.org:3479?transport=tcp",
    ])


@pytest.mark.parametrize("args", [
    ["--turn-host", "turn.example.org:3478"],  # the port belongs in --turn-port
    ["--turn-host", "turn.example.org/x"],
    ["--turn-host", "turn.example.org", "--turn-tls-port", "70000"],
    ["--turn-host", "turn.example.org", "--no-turn"],
])
def test_bad_turn_host_is_refused_with_a_reason(args: list[str]) -> None:
    xes = Path(sys.executable).with_name("xes")
    result = subprocess.run([str(xes), "serve", "--port", "0", *args], env={**os.environ, **ENV},
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2, result
    assert result.stderr.startswith("xes serve: "), result.stderr


def test_turn_config_plans_tls_on_443_and_prints_the_matching_serve_flags() -> None:
    """With a certificate, the generated coturn file listens for TLS on 443 next to 3478 and
    names the `xes serve` flags that hand out all three URLs; without one, no turns: at all."""
    with_tls = render(TurnConfig(secret="x", realm="turn.example.org",
                                 cert="/c.pem", pkey="/k.pem")).splitlines()
    for line in ("listening-port=3478", "tls-listening-port=443", "no-tlsv1", "no-tlsv1_1",
                 "cipher-list=ECDHE+AESGCM:ECDHE+CHACHA20",
                 "#   --turn-url turns:turn.example.org:443?transport=tcp",
                 "#   --turn-url turn:turn.example.org:3478?transport=tcp",
                 "#   --turn-host turn.example.org"):
        assert line in with_tls, line
    without = render(TurnConfig(secret="x", realm="turn.example.org")).splitlines()
    assert "no-tls" in without
    assert not any(line.startswith("#   --turn-url turns:") for line in without)
    assert "#   --turn-host turn.example.org --turn-tls-port 0" in without
