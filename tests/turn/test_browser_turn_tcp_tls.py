"""TURN over TCP and over TLS, the way browsers behind a UDP-blocking firewall reach the relay.

A firewall that drops all UDP and lets only TCP (443) through leaves a browser one way out: a
TCP or TLS connection to the relay (``turn:…?transport=tcp`` or ``turns:…?transport=tcp``),
from which coturn relays UDP onwards. These tests hand the browsers *only* that URL and turn on
"Hide my IP (always relay)" (iceTransportPolicy "relay"), so no UDP path to the relay exists
for them; then two real Chromium pages must hear each other's tones through a real coturn
configured by `xes turn-config`, and each page's selected local candidate must be a relay
candidate allocated over the expected protocol (getStats ``relayProtocol``).

Chromium validates a TURN/TLS server's certificate as it does an HTTPS site's: with a
self-signed certificate it refuses the relay (icecandidateerror 701 "Failed to establish
connection", no relay candidate; `test_untrusted_turns_certificate_is_refused` below). So the TLS
case uses a throwaway certificate for the relay's address (IP SAN 127.0.0.1) that this one
Chromium is told to trust by its key (``--ignore-certificate-errors-spki-list``, which stands in
for a certificate authority here); production needs a publicly trusted certificate whose name
is the relay's host name (docs/deploy.md).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from playwright.sync_api import Browser, Playwright, expect, sync_playwright

from tests.conftest import XesServerProcess, launch_xes_server
from tests.support.browser import detect_tones, launch_chromium, write_tone_wav

from .coturn import start_coturn
from .test_browser_relay import (
    CONNECT_TIMEOUT_MS,
    RELAYED,
    TONE_TIMEOUT_S,
    TONES,
    join,
    new_room_url,
    stop_server,
)

pytestmark = pytest.mark.browser

# The selected pair's local candidate: its type, how it reached the relay, and which URL.
_SELECTED_LOCAL_JS = """
async () => {
  const result = [];
  for (const pc of window.xes.pcs().values()) {
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    const pair = pairId ? stats.get(pairId) : null;
    const local = pair ? stats.get(pair.localCandidateId) : null;
    result.push(local ? {type: local.candidateType, relayProtocol: local.relayProtocol,
                         url: local.url} : null);
  }
  return result;
}
"""


def write_relay_certificate(directory: Path, address: str = "127.0.0.1"
                            ) -> tuple[tuple[Path, Path], str]:
    """A throwaway certificate naming the relay's `address`, and its key's SPKI pin.

    Returns:
        ((certificate path, key path), base64 SHA-256 of the SubjectPublicKeyInfo), the form
        Chromium's --ignore-certificate-errors-spki-list takes.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay-cert.pem", directory / "relay-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return (cert_path, key_path), base64.b64encode(hashlib.sha256(spki).digest()).decode()


# One relay-only gathering on a bare RTCPeerConnection: its relay candidates and ICE errors.
_GATHER_JS = """
async ([url, username, credential]) => {
  const pc = new RTCPeerConnection({iceServers: [{urls: url, username, credential}],
                                    iceTransportPolicy: 'relay'});
  const relays = [];
  const errors = [];
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.type === 'relay') relays.push(e.candidate.candidate);
  };
  pc.onicecandidateerror = (e) => errors.push(e.errorCode);
  pc.addTransceiver('audio');
  await pc.setLocalDescription();
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') resolve();
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === 'complete') resolve(); };
  });
  pc.close();
  return {relays, errors};
}
"""


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """One Playwright driver for this module (module scope: see test_browser_relay)."""
    with sync_playwright() as driver:
        yield driver


@pytest.mark.parametrize("protocol", ["tcp", "tls"])
def test_relayed_call_over_turn_tcp_or_tls_only(
    playwright: Playwright, tmp_path: Path, protocol: str
) -> None:
    """Both pages get only a TCP (or TLS) TURN URL and always relay: they hear each other's
    tones, and both selected local candidates are relay candidates over `protocol`."""
    cert, pin = write_relay_certificate(tmp_path)
    coturn = start_coturn(tmp_path / "coturn", cert=cert)
    server: XesServerProcess | None = None
    browsers: list[Browser] = []
    try:
        assert coturn.tls_port is not None
        url = (coturn.url("tcp") if protocol == "tcp"
               else f"turns:{coturn.host}:{coturn.tls_port}?transport=tcp")
        secret_file = tmp_path / "turn-secret"
        secret_file.write_text(coturn.secret + "\n")
        server = launch_xes_server(["--turn-url", url, "--turn-secret-file", str(secret_file)])
        pages = {}
        for name, frequency in TONES.items():
            browser = launch_chromium(
                playwright, fake_audio=write_tone_wav(tmp_path / "tones", frequency),
                extra_args=[f"--ignore-certificate-errors-spki-list={pin}"])
            browsers.append(browser)
            pages[name] = browser.new_page()
        room = new_room_url(server)
        join(pages["Ada"], room, "Ada", relay=True)
        expect(pages["Ada"].get_by_role("list", name="Participants")).to_be_visible(
            timeout=CONNECT_TIMEOUT_MS)
        join(pages["Bob"], room, "Bob", relay=True)
        heard_by_bob = detect_tones(pages["Bob"], [TONES["Ada"]], timeout=TONE_TIMEOUT_S)
        heard_by_ada = detect_tones(pages["Ada"], [TONES["Bob"]], timeout=TONE_TIMEOUT_S)
        assert list(heard_by_bob.values()) == [[TONES["Ada"]]]
        assert list(heard_by_ada.values()) == [[TONES["Bob"]]]
        for name, page in pages.items():
            expect(page.get_by_role("list", name="Participants").get_by_text(
                RELAYED, exact=True)).to_be_visible(timeout=CONNECT_TIMEOUT_MS)
            locals_: list[dict[str, Any] | None] = page.evaluate(_SELECTED_LOCAL_JS)
            print(f"\n{protocol}: {name}'s selected local candidates {locals_}")
            assert locals_ == [{"type": "relay", "relayProtocol": protocol, "url": url}], name
    finally:
        for browser in browsers:
            browser.close()
        if server is not None:
            stop_server(server)
        coturn.stop()


def test_untrusted_turns_certificate_is_refused(playwright: Playwright, tmp_path: Path) -> None:
    """Chromium checks the TURN/TLS certificate: the same relay and certificate give a relay
    candidate when Chromium trusts the key, and none (error 701) when it does not. This is why
    docs/deploy.md asks for a real certificate for the relay's name."""
    cert, pin = write_relay_certificate(tmp_path)
    coturn = start_coturn(tmp_path / "coturn", cert=cert)
    browsers: list[Browser] = []
    try:
        url = f"turns:{coturn.host}:{coturn.tls_port}?transport=tcp"
        username, credential = coturn.credentials("probe")
        results = {}
        for trusted in (True, False):
            browser = launch_chromium(playwright, extra_args=(
                [f"--ignore-certificate-errors-spki-list={pin}"] if trusted else []))
            browsers.append(browser)
            page = browser.new_page()
            results[trusted] = page.evaluate(_GATHER_JS, [url, username, credential])
        print(f"\nturns: gathering, trusted vs untrusted certificate: {results}")
        assert len(results[True]["relays"]) == 1 and results[True]["errors"] == []
        assert results[False]["relays"] == [] and 701 in results[False]["errors"]
    finally:
        for browser in browsers:
            browser.close()
        coturn.stop()
