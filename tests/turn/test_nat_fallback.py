"""Automatic TURN fallback: two peers behind symmetric NATs connect only through coturn.

The lab (tests/support/netlab.py) puts each aiortc peer in its own namespace behind its own
symmetric NAT; the XES server and coturn sit on the lab's "internet" between them. Nobody
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
from tests.support.netlab import LAB_TURN_OVERLAY, RELAY4, WEB4, NetLab

from .coturn import Coturn, start_coturn

PEER_SCRIPT = Path(__file__).with_name("nat_peer.py")


@pytest.fixture
def nat_lab() -> Iterator[Callable[[str], NetLab]]:
    """Factory: a lab (tests/support/netlab.py) with hosts h1 and h2 behind NATs of one mode
    ("symmetric" or "cone"); always torn down (namespaces, processes)."""
    labs: list[NetLab] = []

    def up(mode: str) -> NetLab:
        lab = NetLab.up(f"xesnat{os.getpid() % 100000}")
        labs.append(lab)
        lab.add_host("h1", mode)
        lab.add_host("h2", mode)
        return lab

    yield up
    for lab in labs:
        lab.down()


@pytest.fixture
def tones(tmp_path: Path) -> Path:
    """A directory with tone440.wav and tone880.wav."""
    directory = tmp_path / "tones"
    for hz in (440, 880):
        write_tone_wav(directory, hz, seconds=10)
    return directory


def run_peers(lab: NetLab, ws_url: str, tones: Path, connect_timeout: float
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the two aiortc peers (h1 sends 440 Hz, h2 880 Hz); return their JSON reports."""
    room = secrets.token_urlsafe(16)  # 22 base64url characters, as the protocol wants
    python = sys.executable

    def start(host: str, name: str, send_hz: int, expect_hz: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            lab.command(host, python, str(PEER_SCRIPT), ws_url, room, name,
                        str(tones / f"tone{send_hz}.wav"), str(expect_hz),
                        "--connect-timeout", str(connect_timeout)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    first = start("h1", "first", 440, 880)
    second: subprocess.Popen[str] | None = None
    try:
        assert first.stderr is not None
        said: list[str] = []
        for line in first.stderr:  # the second must join after the first, so that it offers
            if line.strip() == "joined":
                break
            said.append(line)
        else:
            raise AssertionError("first peer never joined:\n" + "".join(said)[-3000:])
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
    """coturn and `xes serve` running on the lab's internet."""

    coturn: Coturn
    ws_url: str


@pytest.fixture
def lab_servers(
    tmp_path: Path, start_xes_server: Callable[..., Any]
) -> Iterator[Callable[[NetLab, bool], LabServers]]:
    """Factory: coturn (as STUN and TURN) on the lab's relay host, `xes serve` on its web
    server."""
    running: list[tuple[Coturn, Any]] = []

    def start(lab: NetLab, with_turn: bool) -> LabServers:
        coturn = start_coturn(tmp_path / "coturn", host=RELAY4, netns=lab.ns("relay"),
                              port=3478, port_range=(49152, 49351), extra_lines=LAB_TURN_OVERLAY)
        args = ["--stun-url", f"stun:{RELAY4}:3478"]
        if with_turn:
            secret_file = tmp_path / "turn-secret"
            secret_file.write_text(coturn.secret + "\n")
            args += ["--turn-url", f"turn:{RELAY4}:3478?transport=udp",
                     "--turn-secret-file", str(secret_file)]
        try:
            server = start_xes_server(args=args, host=WEB4, wrapper=lab.command("pub"))
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
    nat_lab: Callable[[str], NetLab], lab_servers: Callable[[NetLab, bool], LabServers],
    tones: Path,
) -> None:
    """Behind symmetric NATs with only STUN, no candidate pair works: no call at all."""
    lab = nat_lab("symmetric")
    servers = lab_servers(lab, False)
    first, second = run_peers(lab, servers.ws_url, tones, connect_timeout=15)
    for report in (first, second):
        assert report["ice_urls"] == [f"stun:{RELAY4}:3478"]
        # STUN did work (a server-reflexive candidate exists): it is the NAT that blocks.
        assert "srflx" in report["local_candidate_types"], report
        assert "relay" not in report["local_candidate_types"], report
        assert report["connected"] is False, report
        assert report["heard_hz"] is None


def test_symmetric_nat_falls_back_to_turn_without_the_setting(
    nat_lab: Callable[[str], NetLab], lab_servers: Callable[[NetLab, bool], LabServers],
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
    assert any(f"A peer IP {lab.hosts[host].local_address} denied in the range: "
               "10.0.0.0-10.255.255.255" in log for host in ("h1", "h2")), log[-2000:]
