"""Real Chromium behind hostile networks, and a call that survives a network change.

The lab (tests/support/netlab.py) gives each browser its own network namespace: behind a cone or
a symmetric NAT, a double NAT, a firewall that lets out only TCP to 443, on IPv6 only, or on an
open network. coturn (configured by `xes turn-config`, dual-stack, UDP/TCP 3478 and TLS on 443)
and `xes serve` (on 443 too, as the firewall only lets 443 out) run on the "internet" (relay and
web server each a namespace of its own),
and the server hands out exactly what production does with ``--turn-host``: turn: over UDP and
TCP and turns: on 443, plus the relay's IPv6 address. Nobody ticks "Hide my IP" except in the
scenario about it: ICE finds each path by itself, with policy `all`.

Each scenario is one call between two browsers, each sending its own tone (an oscillator
microphone per browser context) and checking it hears the other's. Every test asserts that the
path each page shows ("Direct" / "Relayed (encrypted)") is what getStats selected and what the
issue's table expects, and prints the time from pressing Join to the first tone.

The lab is built once per module, and a browser runs per namespace (the namespace is the
process's network), reused by every scenario on the same host and closed when its last
scenario is done.

The TURN/TLS certificate: Chromium validates it (tests/turn/test_browser_turn_tcp_tls.py), so the
relay gets a throwaway certificate for its address that the lab's browsers trust by its key pin.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from tests.conftest import XesServerProcess, launch_xes_server
from tests.support.browser import (
    oscillator_microphone_script,
    start_tone_monitor,
    write_tone_wav,
)
from tests.support.netlab import (
    LAB_TURN_OVERLAY,
    RELAY4,
    RELAY6,
    WEB4,
    WEB6,
    NetLab,
    launch_chromium_in,
)

from .coturn import Coturn, start_coturn
from .test_browser_relay import DIRECT, RELAYED, join, stop_server
from .test_browser_turn_tcp_tls import write_relay_certificate

pytestmark = pytest.mark.browser

WEB_PORT = 443  # the firewall lets out TCP to 443 only: the page and its WebSocket live there
TONES = (440.0, 880.0)  # first joiner, newcomer
CONNECT_TIMEOUT_MS = 45_000  # waits, not measurements: the machine is shared
TONE_TIMEOUT_S = 45.0
TONE_RUN = 5  # consecutive readings (~20 ms apart) that make "the tone is heard"
GAP_BOUND_S = 3.0  # the target for the audio gap of a network change
PACKET_MS = 20.0  # one Opus packet per 20 ms, as browsers send them

# The hosts of the lab, by name, and their kind of network (tests/support/netlab.py). "a" is
# everybody's partner and also has a standby uplink to another ISP, for the network change; "j"
# runs the Python peer, with a standby uplink too; the others' browsers are closed after their
# one scenario.
HOSTS: dict[str, str] = {
    "a": "cone", "b": "cone", "c": "symmetric", "d": "symmetric", "e": "double", "f": "double",
    "g": "firewall", "h": "ipv6", "i": "open", "j": "cone",
}
MOVABLE = ("a", "j")


@dataclass
class Lab:
    """The running lab: namespaces, relay, server, and the browsers launched so far."""

    net: NetLab
    coturn: Coturn
    server: XesServerProcess
    playwright: Playwright
    scratch: Path
    pin: str
    browsers: dict[str, Browser] = field(default_factory=dict)

    def web_url(self, host: str) -> str:
        """The server as `host` reaches it (over IPv6 from the IPv6-only host)."""
        return f"http://[{WEB6}]:{WEB_PORT}" if HOSTS[host] == "ipv6" else (
            f"http://{WEB4}:{WEB_PORT}")

    def browser(self, host: str) -> Browser:
        """The Chromium running in `host`'s namespace (launched on first use)."""
        if host not in self.browsers:
            self.browsers[host] = launch_chromium_in(
                self.playwright, self.net, host, self.scratch / "wrappers",
                web_origins=[f"http://{WEB4}:{WEB_PORT}", f"http://[{WEB6}]:{WEB_PORT}"],
                relays=[RELAY4, RELAY6],
                extra_args=[f"--ignore-certificate-errors-spki-list={self.pin}"])
        return self.browsers[host]

    def close_browser(self, host: str) -> None:
        browser = self.browsers.pop(host, None)
        if browser is not None:
            browser.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The lab, its relay and server, and a Playwright driver, for the whole module."""
    scratch = tmp_path_factory.mktemp("netlab")
    net = NetLab.up(f"xnl{secrets.token_hex(3)}")
    coturn: Coturn | None = None
    server: XesServerProcess | None = None
    try:
        for name, kind in HOSTS.items():
            net.add_host(name, kind, second_isp=name in MOVABLE)
        cert, pin = write_relay_certificate(scratch, RELAY4)
        coturn = start_coturn(scratch / "coturn", host=RELAY4, more_addresses=(RELAY6,),
                              netns=net.ns("relay"), port=3478, tls_port=443,
                              port_range=(49152, 49651), cert=cert, extra_lines=LAB_TURN_OVERLAY)
        secret_file = scratch / "turn-secret"
        secret_file.write_text(coturn.secret + "\n")
        # Production's port plan (--turn-host: turn: UDP and TCP on 3478, turns: on 443), and
        # the relay's IPv6 address for the IPv6-only host (an AAAA record would do it in
        # production; the lab has no DNS).
        server = launch_xes_server(
            ["--port", str(WEB_PORT), "--turn-host", RELAY4,
             "--turn-url", f"turn:[{RELAY6}]:3478?transport=udp",
             "--turn-secret-file", str(secret_file)],
            host="", wrapper=net.command("pub"))
        with sync_playwright() as playwright:
            running = Lab(net, coturn, server, playwright, scratch, pin)
            try:
                yield running
            finally:
                for host in list(running.browsers):
                    running.close_browser(host)
    finally:
        if server is not None:
            stop_server(server)
        if coturn is not None:
            coturn.stop()
        net.down()


# Per peer connection: the selected pair (type, address, and for relays how the relay was reached)
# and everything the page knows of the other side (remote SDP, remote candidates).
_PATH_JS = """
async () => {
  const result = [];
  for (const [id, pc] of window.xes.pcs()) {
    const stats = await pc.getStats();
    let pairId = null;
    const remoteCandidates = [];
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
      if (s.type === 'remote-candidate') {
        remoteCandidates.push({type: s.candidateType, address: s.address});
      }
    });
    const pair = pairId ? stats.get(pairId) : null;
    const describe = (c) => c ? {type: c.candidateType, address: c.address,
                                 relayProtocol: c.relayProtocol ?? null} : null;
    result.push({
      id,
      state: pc.connectionState,
      local: pair ? describe(stats.get(pair.localCandidateId)) : null,
      remote: pair ? describe(stats.get(pair.remoteCandidateId)) : null,
      remoteCandidates,
      remoteSdp: pc.remoteDescription ? pc.remoteDescription.sdp : '',
    });
  }
  return result;
}
"""


# For a failure message: each link's states and the candidates it gathered and received.
_DIAGNOSIS_JS = """
async () => {
  const result = [];
  for (const pc of window.xes.pcs().values()) {
    const stats = await pc.getStats();
    const candidates = [];
    stats.forEach((s) => {
      if (s.type.endsWith('candidate')) {
        candidates.push(`${s.type} ${s.candidateType} ${s.protocol} ${s.address}:${s.port} `
                        + `${s.relayProtocol ?? ''}`);
      }
      if (s.type === 'candidate-pair') candidates.push(`pair ${s.state} ${s.nominated}`);
      if (s.type === 'inbound-rtp') candidates.push(`received ${s.kind} ${s.packetsReceived}`);
    });
    result.push({connection: pc.connectionState, ice: pc.iceConnectionState,
                 gathering: pc.iceGatheringState, candidates});
  }
  return JSON.stringify(result);
}
"""


@dataclass
class Side:
    """One participant of a lab call."""

    host: str
    context: BrowserContext
    page: Page
    hears: float
    joined_at: float = 0.0  # time.time() when Join was pressed

    def path(self, other: Side) -> dict[str, Any]:
        """What getStats says about this page's link to `other` (by its peer id)."""
        paths: list[dict[str, Any]] = self.page.evaluate(_PATH_JS)
        other_id = other.page.evaluate("window.xes.me.id")
        return next(path for path in paths if path["id"] == other_id)

    def shown(self) -> str:
        """The path the participant list shows for the other person."""
        listing = self.page.get_by_role("list", name="Participants")
        for label in (DIRECT, RELAYED):
            if listing.get_by_text(label, exact=True).count() > 0:
                return label
        return "(none)"


def tone_start(side: Side, after_ms: float) -> float | None:
    """Date.now() of the first reading of the first run of TONE_RUN heard readings on one
    remote stream after `after_ms`, or None if there is none yet."""
    readings: list[dict[str, Any]] = side.page.evaluate("window.__xesToneMonitor.readings")
    runs: dict[str, tuple[float, int]] = {}
    for reading in readings:
        at, peer = float(reading["t"]), str(reading["peer"])
        if at < after_ms:
            continue
        if not reading["heard"]:
            runs[peer] = (0.0, 0)
            continue
        start, run = runs.get(peer, (0.0, 0))
        runs[peer] = (at if run == 0 else start, run + 1)
        if run + 1 >= TONE_RUN:
            return runs[peer][0]
    return None


def first_tone_at(side: Side, after_ms: float, timeout: float) -> float:
    """`tone_start`, waited for; fails the test at `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started = tone_start(side, after_ms)
        if started is not None:
            return started
        time.sleep(0.1)
    raise AssertionError(f"{side.host} never heard {side.hears} Hz; its links: "
                         f"{side.page.evaluate(_DIAGNOSIS_JS)}")


@dataclass
class Call:
    """Two pages in one room, hearing each other."""

    first: Side
    second: Side
    join_to_tone_ms: dict[str, float]

    def sides(self) -> tuple[Side, Side]:
        return self.first, self.second

    def hang_up(self) -> None:
        for side in self.sides():
            side.context.close()


def open_side(lab: Lab, host: str, sends: float, hears: float) -> Side:
    context = lab.browser(host).new_context()
    context.add_init_script(oscillator_microphone_script(sends))
    page = context.new_page()
    return Side(host, context, page, hears)


def start_call(lab: Lab, first_host: str, second_host: str, *, hide_first: bool = False) -> Call:
    """`first_host` joins a new room, then `second_host` (the newcomer, who offers); both must
    hear each other. Join-to-first-tone is measured from each one's own Join."""
    room = secrets.token_urlsafe(16)
    first = open_side(lab, first_host, TONES[0], TONES[1])
    second = open_side(lab, second_host, TONES[1], TONES[0])
    for side in (first, second):
        side.page.goto(f"{lab.web_url(side.host)}/r/{room}")
        start_tone_monitor(side.page, side.hears)
    first.joined_at = time.time()
    join(first.page, first.page.url, f"Host {first_host}", relay=hide_first)
    expect(first.page.get_by_role("list", name="Participants")).to_be_visible(
        timeout=CONNECT_TIMEOUT_MS)
    second.joined_at = time.time()
    join(second.page, second.page.url, f"Host {second_host}", relay=False)
    join_to_tone = {}
    for side in (second, first):
        heard_at = first_tone_at(side, side.joined_at * 1000, TONE_TIMEOUT_S)
        join_to_tone[side.host] = heard_at - side.joined_at * 1000
    return Call(first, second, join_to_tone)


def assert_path(call: Call, scenario: str, expected: str | None) -> list[dict[str, Any]]:
    """Each page shows the path getStats selected (relayed when either end of the selected
    pair is a relay candidate), and it is `expected` (None: as ICE decides, recorded).
    Prints the scenario's line of the measured table."""
    paths = []
    for side, other in ((call.first, call.second), (call.second, call.first)):
        # The list updates about once a second from the same stats: wait for it to agree. ICE
        # may still move to a better pair meanwhile (double NAT: relay, then direct), so the
        # assertion compares one reading of each, never a later list with an earlier pair.
        deadline = time.monotonic() + 10
        while True:
            path = side.path(other)
            assert path["local"] is not None and path["remote"] is not None, path
            selected = RELAYED if "relay" in (path["local"]["type"], path["remote"]["type"]) else (
                DIRECT)
            shown = side.shown()
            if shown == selected or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert shown == selected, (side.host, shown, path)
        if expected is not None:
            assert selected == expected, (scenario, side.host, path)
        paths.append(path)
        print(f"\n{scenario}: {side.host} shows {side.shown()!r}, selected "
              f"{json.dumps({k: path[k] for k in ('local', 'remote')})}")
    print(f"\nTABLE | {scenario} | {call.first.shown()} | join to first tone: "
          + ", ".join(f"{host} {ms:.0f} ms" for host, ms in call.join_to_tone_ms.items()))
    return paths


def test_both_behind_cone_nat_talk_directly(lab: Lab) -> None:
    """Endpoint-independent NATs on both sides: the hole is punched, audio goes direct, each
    reaching the other at its NAT's public (server-reflexive) address."""
    call = start_call(lab, "a", "b")
    try:
        paths = assert_path(call, "both behind endpoint-independent NAT", DIRECT)
        for path, other in zip(paths, ("b", "a"), strict=True):
            assert path["remote"]["type"] in ("srflx", "prflx"), path
            assert path["remote"]["address"] == lab.net.hosts[other].public_address, path
    finally:
        call.hang_up()


def test_both_behind_symmetric_nat_relay_over_udp(lab: Lab) -> None:
    """Symmetric NATs on both sides: no hole can be punched, the call goes through TURN, over
    UDP wherever a page's own relay end is used."""
    call = start_call(lab, "c", "d")
    try:
        paths = assert_path(call, "both behind symmetric NAT", RELAYED)
        # ICE may use one side's allocation only: the other side then sends from its NAT's
        # address (a peer-reflexive candidate) to that relay, which its permission lets in. A
        # page knows how it reaches its own relay (relayProtocol), not how the peer reaches its.
        # On a loaded machine the check through the relay's TCP allocation may answer first and
        # be selected for a moment; ICE then moves to the UDP one, of higher priority, once its
        # check answers too. What is asserted is where the call settles.
        deadline = time.monotonic() + 20
        while True:
            relay_ends = [end for p in paths for end in (p["local"], p["remote"])
                          if end["type"] == "relay"]
            own_relays = [p["local"] for p in paths if p["local"]["type"] == "relay"]
            if relay_ends and all(end["relayProtocol"] == "udp" for end in own_relays):
                break
            assert time.monotonic() < deadline, paths
            time.sleep(0.5)
            paths = [call.first.path(call.second), call.second.path(call.first)]
    finally:
        call.hang_up()
        lab.close_browser("c")
        lab.close_browser("d")


def test_double_nat_on_both_sides_as_ice_decides(lab: Lab) -> None:
    """A NAT behind a carrier's NAT on both sides: whatever ICE picks, the page says what it is
    (recorded in the printed table)."""
    call = start_call(lab, "e", "f")
    try:
        assert_path(call, "double NAT on both sides", None)
    finally:
        call.hang_up()
        lab.close_browser("e")
        lab.close_browser("f")


def test_udp_blocking_firewall_relays_over_tls_on_443(lab: Lab) -> None:
    """One side's firewall drops all UDP and lets out TCP to 443 only: that side reaches the
    relay over TURN/TLS on 443 (the only thing that gets out), and the call is relayed."""
    call = start_call(lab, "g", "a")
    try:
        paths = assert_path(call, "firewall: no UDP, TCP 443 only", RELAYED)
        firewalled = paths[0]["local"]
        assert firewalled["type"] == "relay" and firewalled["relayProtocol"] in ("tls", "tcp"), (
            paths[0])
        print(f"\nthe firewalled side reached the relay over {firewalled['relayProtocol']}")
    finally:
        call.hang_up()
        lab.close_browser("g")


def test_ipv6_only_meets_ipv4_only_through_the_dual_stack_relay(lab: Lab) -> None:
    """One side has IPv6 only, the other IPv4 only: no direct path exists, the dual-stack relay
    joins them."""
    call = start_call(lab, "h", "a")
    try:
        paths = assert_path(call, "IPv6 only <-> IPv4 only, relay dual-stack", RELAYED)
        assert ":" not in paths[1]["remote"]["address"], paths[1]  # the v4 side saw no IPv6
    finally:
        call.hang_up()
        lab.close_browser("h")


def test_hide_my_ip_on_an_open_network_shows_only_the_relay(lab: Lab) -> None:
    """"Hide my IP" on a host with a public address and no NAT: the call is relayed, and the
    other side never learns a host or server-reflexive candidate of it, nor its address."""
    call = start_call(lab, "i", "a", hide_first=True)
    try:
        paths = assert_path(call, "Hide my IP on an open network", RELAYED)
        assert paths[0]["local"]["type"] == "relay", paths[0]
        hidden = lab.net.hosts["i"].public_address
        other_view = paths[1]
        candidate_lines = [line for line in other_view["remoteSdp"].splitlines()
                           if line.startswith("a=candidate:")]
        assert all(" typ relay" in line for line in candidate_lines), candidate_lines
        assert hidden not in other_view["remoteSdp"]
        assert other_view["remoteCandidates"], other_view
        for candidate in other_view["remoteCandidates"]:
            assert candidate["type"] not in ("host", "srflx"), other_view["remoteCandidates"]
            assert candidate["address"] != hidden, other_view["remoteCandidates"]
    finally:
        call.hang_up()
        lab.close_browser("i")


# Audio packets each link of the page has received so far (getStats inbound-rtp).
_PACKETS_JS = """
async () => {
  const result = {};
  for (const [id, pc] of window.xes.pcs()) {
    const stats = await pc.getStats();
    stats.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.packetsReceived > 0) {
        result[`${id} ${s.ssrc}`] = [s.packetsReceived, s.lastPacketReceivedTimestamp];
      }
    });
  }
  return result;
}
"""


def audio_gaps_s(sides: tuple[Side, ...], change: Callable[[], float], timeout: float
                 ) -> dict[str, float]:
    """Make a network `change` (it returns its time.time()) one second into a flowing call; for
    each side, the longest time without a received audio packet from half a second before the
    change on: from the last packet before to the first after, as seen by polling the packet
    counters about every 100 ms. Waits until packets have flowed for 0.5 s after that gap and
    the tone is heard again after it. Packets, not what the page plays: while packets are
    missing the jitter buffer conceals the loss by carrying a steady tone on for a second or
    more, which a tone detector would take for the call going on."""
    # Per side: the latest packet arrival seen (ms, the clock of Date.now()), the longest gap
    # after `since`, when packets came back after it, and each link's last packet count.
    last_arrival: dict[str, float] = {}
    longest: dict[str, tuple[float, float]] = {}
    counts: dict[str, dict[str, int]] = {side.host: {} for side in sides}
    gaps: dict[str, float] = {}
    started = time.time()
    since: float | None = None
    deadline = time.monotonic() + timeout
    while len(gaps) < len(sides):
        if since is None and time.time() > started + 1.0:
            since = (change() - 0.5) * 1000
        for side in sides:
            if side.host in gaps:
                continue
            links: dict[str, list[float]] = side.page.evaluate(_PACKETS_JS)
            newest = last_arrival.get(side.host)
            for key, (packets, last_at) in links.items():
                fresh = int(packets) - counts[side.host].get(key, 0)
                counts[side.host][key] = int(packets)
                if fresh <= 0:
                    continue
                # Packets come every 20 ms: the first of the fresh ones came that much earlier.
                first_at = last_at - (fresh - 1) * PACKET_MS
                previous = last_arrival.get(side.host)
                if previous is not None and since is not None and previous >= since:
                    gap = first_at - previous
                    if gap > longest.get(side.host, (0.0, 0.0))[0]:
                        longest[side.host] = (gap, first_at)
                newest = max(newest or last_at, last_at)
            if newest is not None:
                last_arrival[side.host] = newest
            if since is None or side.host not in longest:
                continue
            gap, back_at = longest[side.host]
            now = time.time() * 1000
            flowing = now > since + 3000 and newest is not None and newest - back_at > 500
            if flowing and tone_start(side, back_at) is not None:
                gaps[side.host] = gap / 1000
        if time.monotonic() > deadline:
            raise AssertionError(f"not every side heard again within {timeout} s: {longest}; "
                                 + "; ".join(f"{side.host}: {side.page.evaluate(_DIAGNOSIS_JS)}"
                                             for side in sides if side.host not in gaps))
        time.sleep(0.05)
    return gaps


# Records every participant entry that leaves the list, from now on (a MutationObserver sees
# a removal however briefly it lasts, where polling could miss a leave and a quick rejoin), and
# counts the signalling sockets the page opens from now on.
_WATCH_LEAVES_JS = """
() => {
  window.__xesSocketsOpened = 0;
  const NativeWebSocket = window.WebSocket;
  window.WebSocket = class extends NativeWebSocket {
    constructor(...args) {
      super(...args);
      window.__xesSocketsOpened += 1;
    }
  };
  window.__xesLeftList = [];
  new MutationObserver((mutations) => {
    for (const mutation of mutations) {
      for (const node of mutation.removedNodes) {
        if (node.dataset && node.dataset.peer) window.__xesLeftList.push(node.dataset.peer);
      }
    }
  }).observe(document.getElementById('participants'), {childList: true});
}
"""


def test_network_change_mid_call_recovers_by_itself(lab: Lab) -> None:
    """Mid-call, host a's uplink moves to another ISP (a new address behind another NAT, as a
    phone moving from Wi-Fi to mobile data). Nobody touches anything: a resumes its signalling
    session on a new socket (same peer id: b never sees a leave), the link restarts ICE and
    audio comes back both ways within GAP_BOUND_S, over the new address."""
    call = start_call(lab, "a", "b")
    try:
        assert_path(call, "network change: before", DIRECT)
        mover_id = call.first.page.evaluate("window.xes.me.id")
        for side in call.sides():
            watch_leaves(side)
        # Some audio before the move, so the gap is measured from a flowing call.
        gaps = audio_gaps_s(call.sides(), lambda: lab.net.switch_isp("a"), 40.0)
        print("\nTABLE | network change (a: Wi-Fi to mobile data) | audio gap: "
              + ", ".join(f"{host} hears again after {gap:.2f} s" for host, gap in gaps.items()))
        paths = assert_path(call, "network change: after", None)
        b_view = paths[1]
        assert b_view["remote"]["address"] == lab.net.hosts["a"].public_address, b_view
        for host, gap in gaps.items():
            assert gap < GAP_BOUND_S, (host, gaps)
        # The session was resumed, not replaced by a new one: the same id, still the only
        # other member b knows, and no participant list ever dropped anyone.
        assert call.first.page.evaluate("window.__xesSocketsOpened") >= 1, "signalling renewed"
        assert call.first.page.evaluate("window.xes.signallingState") == "open"
        assert call.first.page.evaluate("window.xes.me.id") == mover_id
        assert [peer["id"] for peer in call.second.page.evaluate("window.xes.peers()")] == [
            mover_id]
        for side in call.sides():
            assert side.page.evaluate("window.__xesLeftList") == [], side.host
    finally:
        call.hang_up()


def dtls_fingerprint(sdp: str) -> str:
    return next(line for line in sdp.splitlines() if line.startswith("a=fingerprint:"))


def watch_leaves(side: Side) -> None:
    side.page.evaluate(_WATCH_LEAVES_JS)


def test_python_peer_network_change_makes_its_link_anew(lab: Lab, tmp_path: Path) -> None:
    """Mid-call, the Python peer's host (j) moves to another ISP. aiortc cannot restart ICE:
    the peer notices its addresses changed, resumes its signalling session on a new socket
    (same peer id) and makes its link anew, offering on a fresh RTCPeerConnection, which the
    browser takes as a new link from a member it already has. b hears it again within
    GAP_BOUND_S, over the new address, and never sees it leave."""
    room = secrets.token_urlsafe(16)
    side = open_side(lab, "b", TONES[0], TONES[1])
    tone = write_tone_wav(tmp_path, TONES[1])
    log_path = tmp_path / "python-peer.log"
    peer: subprocess.Popen[bytes] | None = None
    try:
        side.page.goto(f"{lab.web_url('b')}/r/{room}")
        start_tone_monitor(side.page, side.hears)
        join(side.page, side.page.url, "Host b", relay=False)
        expect(side.page.get_by_role("list", name="Participants")).to_be_visible(
            timeout=CONNECT_TIMEOUT_MS)
        xes = str(Path(sys.executable).with_name("xes"))
        with log_path.open("wb") as log:
            peer = subprocess.Popen(
                lab.net.command("j", xes, "call", "-v", f"{lab.web_url('j')}/r/{room}",
                                "--name", "Python j", "--play", str(tone), "--loop",
                                "--duration", "300"),
                stdout=log, stderr=subprocess.STDOUT)
        joined_at = time.time() * 1000
        heard_at = first_tone_at(side, joined_at, TONE_TIMEOUT_S)
        members = side.page.evaluate("window.xes.peers()")
        assert len(members) == 1, members
        python_id = members[0]["id"]
        path_before = next(p for p in side.page.evaluate(_PATH_JS) if p["id"] == python_id)
        watch_leaves(side)
        gaps = audio_gaps_s((side,), lambda: lab.net.switch_isp("j"), 40.0)
        gap = gaps["b"]
        print(f"\nTABLE | Python peer's network change (j) | join to first tone: b "
              f"{heard_at - joined_at:.0f} ms | audio gap: b hears j again after {gap:.2f} s")
        path_after = next(p for p in side.page.evaluate(_PATH_JS) if p["id"] == python_id)
        # A new link (another DTLS certificate), gathered on the new network: aiortc puts its
        # candidates in the offer, so its new public address is in the SDP b received.
        assert path_after["state"] == "connected", path_after
        assert (dtls_fingerprint(path_after["remoteSdp"])
                != dtls_fingerprint(path_before["remoteSdp"]))
        new_address = lab.net.hosts["j"].public_address
        assert new_address not in path_before["remoteSdp"]
        assert new_address in path_after["remoteSdp"], path_after["remoteSdp"]
        assert [member["id"] for member in side.page.evaluate("window.xes.peers()")] == [python_id]
        assert side.page.evaluate("window.__xesLeftList") == []
        assert gap < GAP_BOUND_S, gaps
    except AssertionError:
        print(log_path.read_text(errors="replace")[-6000:])
        raise
    finally:
        if peer is not None:
            peer.terminate()
            try:
                peer.wait(timeout=10)
            except subprocess.TimeoutExpired:
                peer.kill()
                peer.wait()
        side.context.close()
