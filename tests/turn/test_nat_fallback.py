"""Automatic TURN fallback: two peers behind symmetric NATs connect only through coturn.

The lab (scripts/netns_nat.sh) puts each aiortc peer in its own namespace behind its own
symmetric NAT; the XES server and coturn sit on the "public" router between them. Nobody
ticks "always relay": the peers use exactly the ICE servers and policy (`all`) that `joined`
gives them. With STUN only, the NATs' per-destination ports make every candidate pair fail;
with TURN added, ICE finds the relayed path by itself and both tones get through.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import write_tone_wav

from .coturn import Coturn, start_coturn

ROOT = Path(__file__).resolve().parents[2]
NAT_SCRIPT = ROOT / "scripts" / "netns_nat.sh"
PEER_SCRIPT = Path(__file__).with_name("nat_peer.py")
PUBLIC_IP = "198.51.100.1"  # the "public" router: XES server and coturn
# The lab's "internet" is the documentation ranges, which production coturn refuses as peers;
# the lab may allow them, and nothing else. 10.x stays denied: coturn closes the whole allocation
# when relaying to a peer fails, which it would when ICE makes it relay to the other side's private
# host candidate that the "public" namespace cannot route to; denied, it answers 403 instead.
LAB_OVERLAY = ("allowed-peer-ip=198.51.100.0-198.51.100.255",
               "allowed-peer-ip=203.0.113.0-203.0.113.255")


@dataclass
class NatLab:
    """The namespaces of one lab, by role."""

    prefix: str

    def ns(self, role: str) -> str:
        return f"{self.prefix}-{role}"


@pytest.fixture
def nat_lab() -> Iterator[Callable[[str], NatLab]]:
    """Factory: bring the lab up in a NAT mode; always torn down (namespaces, processes)."""
    prefix = f"xesnat{os.getpid() % 100000}"

    def up(mode: str) -> NatLab:
        subprocess.run([str(NAT_SCRIPT), "up", mode, prefix], check=True, capture_output=True,
                       timeout=60)
        return NatLab(prefix)

    yield up
    subprocess.run([str(NAT_SCRIPT), "down", prefix], check=False, timeout=60)


@pytest.fixture
def tones(tmp_path: Path) -> Path:
    """A directory with tone440.wav and tone880.wav."""
    directory = tmp_path / "tones"
    for hz in (440, 880):
        write_tone_wav(directory, hz, seconds=10)
    return directory


def run_peers(lab: NatLab, ws_url: str, tones: Path, connect_timeout: float
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the two aiortc peers (h1 sends 440 Hz, h2 880 Hz); return their JSON reports."""
    room = secrets.token_urlsafe(16)  # 22 base64url characters, as the protocol wants
    python = sys.executable

    def start(host: str, name: str, send_hz: int, expect_hz: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["ip", "netns", "exec", lab.ns(host), python, str(PEER_SCRIPT), ws_url, room, name,
             str(tones / f"tone{send_hz}.wav"), str(expect_hz),
             "--connect-timeout", str(connect_timeout)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    first = start("h1", "first", 440, 880)
    second: subprocess.Popen[str] | None = None
    try:
        assert first.stderr is not None
        for line in first.stderr:  # the second must join after the first, so that it offers
            if line.strip() == "joined":
                break
        else:
            raise AssertionError("first peer never joined")
        second = start("h2", "second", 880, 440)
        out_second, err_second = second.communicate(timeout=connect_timeout * 3 + 30)
        out_first, _ = first.communicate(timeout=connect_timeout * 3 + 30)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert out_second.strip(), f"second peer printed nothing:\n{err_second[-2000:]}"
    assert out_first.strip(), "first peer printed nothing"
    return json.loads(out_first), json.loads(out_second)


@dataclass
class LabServers:
    """coturn and `xes serve` running on the lab's public router."""

    coturn: Coturn
    ws_url: str


@pytest.fixture
def lab_servers(
    tmp_path: Path, start_xes_server: Callable[..., Any]
) -> Iterator[Callable[[NatLab, bool], LabServers]]:
    """Factory: coturn (as STUN and TURN) and `xes serve` on the public router of a lab."""
    running: list[tuple[Coturn, Any]] = []

    def start(lab: NatLab, with_turn: bool) -> LabServers:
        coturn = start_coturn(tmp_path / "coturn", host=PUBLIC_IP, netns=lab.ns("pub"),
                              port=3478, port_range=(49152, 49351), extra_lines=LAB_OVERLAY)
        args = ["--stun-url", f"stun:{PUBLIC_IP}:3478"]
        if with_turn:
            secret_file = tmp_path / "turn-secret"
            secret_file.write_text(coturn.secret + "\n")
            args += ["--turn-url", f"turn:{PUBLIC_IP}:3478?transport=udp",
                     "--turn-secret-file", str(secret_file)]
        try:
            server = start_xes_server(args=args, host=PUBLIC_IP,
                                      wrapper=["ip", "netns", "exec", lab.ns("pub")])
        except BaseException:
            coturn.stop()
            raise
        running.append((coturn, server))
        return LabServers(coturn, server.ws_url)

    yield start
    for coturn, server in running:
        coturn.stop()
        server.stop()
        # The server fixture leaves its output pipe to the garbage collector, which then warns
        # (an error under filterwarnings=error) in whichever test runs next.
        if server.process.stdout is not None:
            server.process.stdout.close()


def test_symmetric_nat_stun_only_cannot_connect(
    nat_lab: Callable[[str], NatLab], lab_servers: Callable[[NatLab, bool], LabServers],
    tones: Path,
) -> None:
    """Behind symmetric NATs with only STUN, no candidate pair works: no call at all."""
    lab = nat_lab("symmetric")
    servers = lab_servers(lab, False)
    first, second = run_peers(lab, servers.ws_url, tones, connect_timeout=15)
    for report in (first, second):
        assert report["ice_urls"] == [f"stun:{PUBLIC_IP}:3478"]
        # STUN did work (a server-reflexive candidate exists): it is the NAT that blocks.
        assert "srflx" in report["local_candidate_types"], report
        assert "relay" not in report["local_candidate_types"], report
        assert report["connected"] is False, report
        assert report["heard_hz"] is None


def test_symmetric_nat_falls_back_to_turn_without_the_setting(
    nat_lab: Callable[[str], NatLab], lab_servers: Callable[[NatLab, bool], LabServers],
    tones: Path,
) -> None:
    """Same NATs, TURN added, policy `all` as the server recommends: both hear each other
    through the relay, found by ICE on its own."""
    lab = nat_lab("symmetric")
    servers = lab_servers(lab, True)
    started = time.monotonic()
    first, second = run_peers(lab, servers.ws_url, tones, connect_timeout=20)
    elapsed = time.monotonic() - started
    log = servers.coturn.log_text()
    print(f"\nNAT fallback: first {json.dumps(first)}\nsecond {json.dumps(second)}\n"
          f"both peers done in {elapsed:.1f} s")
    for report in (first, second):
        assert report["ice_policy"] == "all"  # nobody asked for relay-only
        assert {"host", "srflx", "relay"} <= set(report["local_candidate_types"]), report
        assert report["connected"] is True, report
        assert report["pair"] is not None, report
    assert abs(first["heard_hz"] - 880) <= 15 and abs(second["heard_hz"] - 440) <= 15
    # At least one side's nominated pair runs through coturn ...
    assert "relay" in (first["pair"] + second["pair"])
    # The production hardening held: coturn refused to relay to the peers' private host
    # candidates (a failed send to one would otherwise have closed the allocation: see LAB_OVERLAY).
    assert "A peer IP 10.2.0.2 denied in the range: 10.0.0.0-10.255.255.255" in log or (
        "A peer IP 10.1.0.2 denied in the range: 10.0.0.0-10.255.255.255" in log), log[-2000:]
