"""Two real browsers with "Hide my IP (always relay)" on, through a real coturn.

One relayed call is set up for the whole module (it is the expensive part) while tshark records
everything that crosses coturn's ports; each test then proves one promise from what the
browsers, the signalling and the capture show:

- audio flows both ways, and both ends' selected ICE pair is relay <-> relay;
- neither browser is ever told the other's host or server-reflexive address;
- the relay carries only STUN, the DTLS handshake and SRTP/SRTCP, whose payload is ciphertext,
  and the keys never pass through it (DTLS-SRTP, fingerprints in the signalling, no SDES);
- the relay cannot tell who is speaking: no audio-level header extension is negotiated or sent.

A last test uses a server whose TURN secret is not coturn's: the page must say the relay
could not be used instead of hanging silently.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.conftest import XesServerProcess, launch_xes_server
from tests.support.browser import (
    detect_tones,
    launch_chromium,
    launch_with_tone,
    selected_pair_types,
)

from .coturn import Coturn, start_coturn
from .relaywire import AUDIO_LEVEL_URI, RelayView, first_byte_entropy, read_pcap, view_relay

pytestmark = pytest.mark.browser

RELAY_CHECKBOX = "Hide my IP (always relay)"
RELAYED = "Relayed (encrypted)"
DIRECT = "Direct"
TONES = {"Ada": 440.0, "Bob": 880.0}
CONNECT_TIMEOUT_MS = 45_000  # waits, not measurements: the machine is shared
TONE_TIMEOUT_S = 45.0
CAPTURE_AFTER_TONE_S = 6.0  # ~50 packets/s each way: well over 200 unique SRTP packets


def new_room_url(server: XesServerProcess) -> str:
    """A fresh room link (22 base64url characters, as docs/protocol.md requires)."""
    return f"{server.http_url}/r/{secrets.token_urlsafe(16)}"


def stop_server(server: XesServerProcess) -> None:
    """Stop `xes serve` and close its output pipe (else it warns when garbage-collected)."""
    server.stop()
    if server.process.stdout is not None:
        server.process.stdout.close()


def record_signals(page: Page, received: list[dict[str, Any]], sent: list[dict[str, Any]]) -> None:
    """Keep every `signal` message this page receives and sends over its WebSocket."""

    def keep(into: list[dict[str, Any]]) -> Callable[[str | bytes], None]:
        def on_frame(payload: str | bytes) -> None:
            message = json.loads(payload)
            if isinstance(message, dict) and message.get("type") == "signal":
                into.append(message)
        return on_frame

    def on_websocket(ws: Any) -> None:
        ws.on("framereceived", keep(received))
        ws.on("framesent", keep(sent))

    page.on("websocket", on_websocket)


def join(page: Page, room_url: str, name: str, *, relay: bool) -> None:
    """Open the room (unless already there), set "always relay", enter a name, press Join."""
    if page.url != room_url:
        page.goto(room_url)
    checkbox = page.get_by_role("checkbox", name=RELAY_CHECKBOX)
    if relay:
        checkbox.check()
    else:
        checkbox.uncheck()
    page.get_by_label("Display name").fill(name)
    page.get_by_role("button", name="Join").click()


# Records when the page's first peer connection reaches "connected", from the moment it runs.
_WATCH_CONNECTED_JS = """
() => {
  window.__joinAt = performance.now();
  window.__connectedMs = null;
  const timer = setInterval(() => {
    for (const pc of window.xes.pcs().values()) {
      if (pc.connectionState === 'connected') {
        window.__connectedMs = performance.now() - window.__joinAt;
        clearInterval(timer);
      }
    }
  }, 5);
}
"""

# Everything each peer connection knows about the other side: the remote description it
# applied, and every remote candidate ICE learned (from the SDP, trickled, or peer-reflexive).
_REMOTE_VIEW_JS = """
async () => {
  const result = [];
  for (const [id, pc] of window.xes.pcs()) {
    const stats = await pc.getStats();
    const remote = [];
    const local = [];
    stats.forEach((s) => {
      if (s.type === 'remote-candidate') remote.push({type: s.candidateType, address: s.address});
      if (s.type === 'local-candidate') local.push({type: s.candidateType, address: s.address});
    });
    result.push({id, remoteSdp: pc.remoteDescription ? pc.remoteDescription.sdp : null,
                 remote, local});
  }
  return result;
}
"""


class Capture:
    """tshark recording coturn's listening and relay ports on loopback."""

    def __init__(self, coturn: Coturn, path: Path) -> None:
        self.path = path
        bpf = (f"udp and (port {coturn.port} or "
               f"portrange {coturn.min_port}-{coturn.max_port})")
        self.process = subprocess.Popen(
            ["tshark", "-q", "-i", "lo", "-f", bpf, "-F", "pcap", "-w", str(path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        deadline = time.monotonic() + 30
        for line in self.process.stderr:  # tshark says so once the capture runs
            if "Capturing on" in line:
                break
            if time.monotonic() > deadline:
                break
        else:
            raise RuntimeError("tshark did not start capturing")

    def stop(self) -> None:
        """Stop and flush the capture (SIGINT lets tshark finish the file)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()


@dataclass
class RelayedCall:
    """What one relayed call between Ada and Bob showed, collected while it ran."""

    coturn: Coturn
    pages: dict[str, Page]
    heard: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    pairs: dict[str, dict[str, tuple[str, str] | None]] = field(default_factory=dict)
    remote_views: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sent: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    relay: RelayView = field(default_factory=RelayView)
    figures: dict[str, float | None] = field(default_factory=dict)

    def descriptions(self) -> list[dict[str, str]]:
        """Every session description that crossed the signalling, both ways."""
        messages = [m for name in self.pages for m in self.received[name] + self.sent[name]]
        return [m["data"]["description"] for m in messages if "description" in m["data"]]


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """One Playwright driver for this module, stopped when the module ends.

    Module scope, not session: while a sync Playwright lives, its event loop counts as running
    in the main thread, and every asyncio test after it would fail.
    """
    with sync_playwright() as driver:
        yield driver


@contextmanager
def two_browser_call(
    playwright: Playwright, tmp: Path, *, relay: bool, capture_once_connected: bool = False
) -> Iterator[RelayedCall]:
    """Ada joins, then Bob (the newcomer, who offers), with "always relay" set to `relay`,
    through a server that hands out TURN credentials for a fresh coturn. tshark records the
    relay's ports from before Bob joins, or only once both hear each other and show their
    link label if `capture_once_connected`. Everything started is stopped on exit, also on
    failure."""
    coturn = start_coturn(tmp / "coturn")
    server: XesServerProcess | None = None
    capture: Capture | None = None
    browsers: list[Browser] = []
    try:
        secret_file = tmp / "turn-secret"
        secret_file.write_text(coturn.secret + "\n")
        server = launch_xes_server(["--turn-url", coturn.url("udp"),
                                    "--turn-secret-file", str(secret_file)])
        call = RelayedCall(coturn=coturn, pages={})
        for name, frequency in TONES.items():
            browser = launch_with_tone(playwright, tmp / "tones", frequency)
            browsers.append(browser)
            page = browser.new_page()
            call.pages[name] = page
            call.received[name], call.sent[name] = [], []
            record_signals(page, call.received[name], call.sent[name])
        if not capture_once_connected:
            capture = Capture(coturn, tmp / "relay.pcap")
        room = new_room_url(server)
        ada, bob = call.pages["Ada"], call.pages["Bob"]
        join(ada, room, "Ada", relay=relay)
        expect(ada.get_by_role("list", name="Participants")).to_be_visible(
            timeout=CONNECT_TIMEOUT_MS)
        bob.goto(room)
        bob.evaluate(_WATCH_CONNECTED_JS)
        join_at = time.monotonic()
        join(bob, room, "Bob", relay=relay)
        call.heard["Bob"] = detect_tones(bob, [TONES["Ada"]], timeout=TONE_TIMEOUT_S)
        call.figures["bob_join_to_tone_ms"] = round((time.monotonic() - join_at) * 1000)
        call.heard["Ada"] = detect_tones(ada, [TONES["Bob"]], timeout=TONE_TIMEOUT_S)
        call.figures["bob_join_to_connected_ms"] = bob.evaluate("window.__connectedMs")
        for page in call.pages.values():
            expect(page.get_by_role("list", name="Participants").get_by_text(
                RELAYED if relay else DIRECT, exact=True)).to_be_visible(
                    timeout=CONNECT_TIMEOUT_MS)
        if capture is None:
            capture = Capture(coturn, tmp / "relay.pcap")
        time.sleep(CAPTURE_AFTER_TONE_S)
        for name, page in call.pages.items():
            call.pairs[name] = selected_pair_types(page)
            call.remote_views[name] = page.evaluate(_REMOTE_VIEW_JS)
        capture.stop()
        call.relay = view_relay(read_pcap(capture.path), [coturn.port], coturn.relay_ports())
        print(f"\n{'relayed' if relay else 'direct'} call figures: {call.figures}, "
              f"relay saw {dict(call.relay.count())} "
              f"inner packets and {call.relay.turn_control} TURN control messages")
        yield call
    finally:
        if capture is not None:
            capture.stop()
        for browser in browsers:
            browser.close()
        if server is not None:
            stop_server(server)
        coturn.stop()


@pytest.fixture(scope="module")
def relayed_call(
    playwright: Playwright, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RelayedCall]:
    """One call between two browsers, both with "Hide my IP (always relay)" on."""
    with two_browser_call(playwright, tmp_path_factory.mktemp("relayed"), relay=True) as call:
        yield call


def test_relayed_audio_flows_both_ways_on_relay_pairs(relayed_call: RelayedCall) -> None:
    """Each browser hears the other's tone, and both selected pairs are relay <-> relay."""
    assert list(relayed_call.heard["Bob"].values()) == [[TONES["Ada"]]]
    assert list(relayed_call.heard["Ada"].values()) == [[TONES["Bob"]]]
    for name, pairs in relayed_call.pairs.items():
        assert list(pairs.values()) == [("relay", "relay")], (name, pairs)


def test_relay_mode_hides_each_ip_from_the_other_peer(relayed_call: RelayedCall) -> None:
    """No host or server-reflexive candidate of the other side reaches a browser: not in the
    descriptions, not trickled, and none learned by ICE itself."""
    for name, messages in relayed_call.received.items():
        candidates = []
        for message in messages:
            data = message["data"]
            if "description" in data:
                candidates += re.findall(r"^a=candidate:.*$", data["description"]["sdp"], re.M)
            elif data.get("candidate"):
                candidates.append(data["candidate"]["candidate"])
        assert candidates, f"{name} received no candidates at all"
        types = {re.search(r" typ (\w+)", c).group(1) for c in candidates}  # type: ignore[union-attr]
        assert types == {"relay"}, (name, candidates)
    for name, views in relayed_call.remote_views.items():
        for view in views:
            assert view["remote"], name
            assert {c["type"] for c in view["remote"]} == {"relay"}, (name, view["remote"])
            assert {c["type"] for c in view["local"]} == {"relay"}, (name, view["local"])
            assert " typ host" not in view["remoteSdp"] and " typ srflx" not in view["remoteSdp"]


def test_relay_sees_only_dtls_handshake_and_srtp(relayed_call: RelayedCall) -> None:
    """RFC 7983 classes of everything unwrapped from the relay: STUN, DTLS, SRTP, SRTCP only;
    a DTLS handshake took place; SRTP payloads are ciphertext (first-byte entropy > 6 bits
    over >= 200 unique packets); keys come only from DTLS, authenticated by the fingerprints
    in the signalling, never SDES (`a=crypto`)."""
    relay = relayed_call.relay
    kinds = relay.count()
    assert set(kinds) <= {"stun", "dtls", "rtp", "rtcp"}, kinds
    assert kinds["dtls"] > 0 and kinds["rtp"] > 0 and kinds["rtcp"] > 0, kinds
    # Content type 22 is a handshake record (RFC 6347 section 4.1); DTLS 1.3 encrypts the rest.
    assert any(p.kind == "dtls" and p.data[0] == 22 for p in relay.inner)
    payloads = [packet[header.payload_offset:] for header, packet in relay.rtp()]
    entropy, count = first_byte_entropy(payloads)
    print(f"\nSRTP on the relay: {count} unique packets, first payload byte entropy "
          f"{entropy:.2f} bits, {len({p[0] for p in payloads if p})} distinct values; "
          f"all inner kinds {dict(kinds)}")
    assert count >= 200
    assert entropy > 6.0
    descriptions = relayed_call.descriptions()
    assert {d["type"] for d in descriptions} == {"offer", "answer"}
    for description in descriptions:
        sdp = description["sdp"]
        assert "UDP/TLS/RTP/SAVPF" in sdp
        assert re.search(r"^a=fingerprint:sha-256 [0-9A-F:]{95}\r?$", sdp, re.M)
        assert "a=crypto:" not in sdp
    # The fingerprints (and SDP at all) only ever went through the signalling server.
    wire = b"".join(p.data for p in relay.inner)
    for description in descriptions:
        fingerprint = re.search(r"^a=fingerprint:sha-256 (\S+)", description["sdp"], re.M)
        assert fingerprint is not None
        assert fingerprint.group(1).encode() not in wire
    assert b"a=fingerprint" not in wire and b"v=0\r\n" not in wire


def test_relay_cannot_tell_who_is_speaking(relayed_call: RelayedCall) -> None:
    """The audio-level header extension is in no SDP, and no SRTP packet on the relay carries
    a header extension element negotiated as anything but a known, harmless URI."""
    negotiated: dict[int, str] = {}
    for description in relayed_call.descriptions():
        assert AUDIO_LEVEL_URI not in description["sdp"]
        for number, uri in re.findall(r"^a=extmap:(\d+)(?:/\w+)? (\S+)", description["sdp"],
                                      re.M):
            negotiated[int(number)] = uri
    for views in relayed_call.remote_views.values():
        for view in views:
            assert AUDIO_LEVEL_URI not in view["remoteSdp"]
    ids_on_wire: set[int] = set()
    for header, _packet in relayed_call.relay.rtp():
        ids_on_wire.update(header.extension_ids)
    print(f"\nRTP header extension ids on the relay: {sorted(ids_on_wire)} -> "
          f"{ {i: negotiated.get(i) for i in sorted(ids_on_wire)} }")
    assert ids_on_wire <= set(negotiated), (ids_on_wire, negotiated)
    assert AUDIO_LEVEL_URI not in {negotiated[i] for i in ids_on_wire}


def test_wrong_turn_secret_is_refused_and_the_page_says_so(
    playwright: Playwright, tmp_path: Path
) -> None:
    """An XES server whose secret is not coturn's: coturn refuses the credentials (401 in its
    log) and, with "always relay" on, the page shows an alert that the relay could not be used."""
    coturn = start_coturn(tmp_path / "coturn")
    server: XesServerProcess | None = None
    browser: Browser | None = None
    try:
        secret_file = tmp_path / "wrong-secret"
        secret_file.write_text("not-" + coturn.secret + "\n")
        server = launch_xes_server(["--turn-url", coturn.url("udp"),
                                    "--turn-secret-file", str(secret_file)])
        browser = launch_chromium(playwright)
        room = new_room_url(server)
        ada = browser.new_context().new_page()
        bob = browser.new_context().new_page()
        join(ada, room, "Ada", relay=True)
        expect(ada.get_by_role("list", name="Participants")).to_be_visible(
            timeout=CONNECT_TIMEOUT_MS)
        join(bob, room, "Bob", relay=True)
        for page in (ada, bob):
            expect(page.get_by_role("alert")).to_contain_text(
                "relay could not be used", timeout=CONNECT_TIMEOUT_MS)
            states = page.evaluate(
                "[...window.xes.pcs().values()].map((pc) => pc.connectionState)")
            assert "connected" not in states
        # coturn's word for a credential whose HMAC does not match under its secret (it answers
        # 401 Unauthorized; Chromium reports that as an icecandidateerror).
        log = coturn.log_text()
        assert "check_stun_auth: Cannot find credentials of user" in log, log[-2000:]
    finally:
        if browser is not None:
            browser.close()
        if server is not None:
            stop_server(server)
        coturn.stop()


def test_without_the_setting_loopback_peers_go_direct_and_skip_the_relay(
    playwright: Playwright, tmp_path: Path
) -> None:
    """The control: TURN offered, setting off, both on one machine. ICE picks the direct
    host pair ("Direct"), and once the call runs no media crosses the relay (at most ICE
    checks and TURN refreshes). Before that, while ICE still tries pairs, Chromium may send
    its first few (encrypted) packets over a relay pair that answered first, then switch."""
    with two_browser_call(playwright, tmp_path, relay=False, capture_once_connected=True) as call:
        assert list(call.heard["Bob"].values()) == [[TONES["Ada"]]]
        assert list(call.heard["Ada"].values()) == [[TONES["Bob"]]]
        for name, pairs in call.pairs.items():
            assert list(pairs.values()) == [("host", "host")], (name, pairs)
        kinds = call.relay.count()
        assert kinds["rtp"] == 0 and kinds["rtcp"] == 0 and kinds["dtls"] == 0, kinds
