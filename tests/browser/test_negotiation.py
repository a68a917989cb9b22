"""Perfect negotiation under glare: both sides renegotiate at once and the call survives.

Joining never glares (the newcomer offers, the others wait), so the polite/impolite roles only
matter for later renegotiation. Here both pages restart ICE at the same moment, and their offers
are held back in the page's WebSocket until both have been sent, so they are sure to cross: the
polite page must roll back its own offer and answer, the impolite one must ignore the incoming
offer, and afterwards both are stable, connected on new ICE credentials and still hear each other.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.sync_api import Page, WebSocketRoute, expect

from tests.browser.test_call import (
    CONNECT_TIMEOUT_MS,
    collect_errors,
    join,
    open_new_room,
    tones_by_name,
)
from tests.conftest import XesServerProcess

pytestmark = pytest.mark.browser

STATE_JS = """() => [...window.xes.pcs().values()].map((pc) => ({
  signaling: pc.signalingState,
  connection: pc.connectionState,
  remoteUfrag: (/a=ice-ufrag:(\\S+)/.exec(pc.currentRemoteDescription.sdp) || [])[1],
}))"""


# Test-side recorder (on window, not on the app's read-only debug object).
RECORD_STATES_JS = """() => {
  window.signalingStates = [];
  for (const pc of window.xes.pcs().values()) {
    pc.addEventListener('signalingstatechange', () => window.signalingStates.push(pc.signalingState));
  }
}"""


class OfferGate:
    """Holds each page's outgoing offers once armed, and lets them all go when every page has
    sent one, so the offers are guaranteed to cross in the server."""

    def __init__(self, pages: int) -> None:
        self.pages = pages
        self.armed = False
        self.held: list[tuple[WebSocketRoute, str | bytes]] = []
        self.crossed = False

    def install(self, page: Page) -> None:
        """Route the page's signalling socket through the gate (before the page opens it)."""
        page.route_web_socket(re.compile(r"/ws$"), self._route)

    def _route(self, socket: WebSocketRoute) -> None:
        server = socket.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if self.armed and _is_offer(message):
                self.held.append((server, message))
                if len(self.held) == self.pages:
                    self.armed = False
                    self.crossed = True
                    for held_server, held_message in self.held:
                        held_server.send(held_message)
                return
            server.send(message)

        socket.on_message(from_page)


def _is_offer(message: str | bytes) -> bool:
    if isinstance(message, bytes):
        return False
    parsed = json.loads(message)
    description = parsed.get("data", {}).get("description") if parsed.get("type") == "signal" else None
    return isinstance(description, dict) and description.get("type") == "offer"


def test_crossing_renegotiation_offers_resolve_and_audio_continues(
    xes_server: XesServerProcess, launch_tone_browser: Any
) -> None:
    """Simultaneous ICE restarts on both ends: offers cross, roles resolve them, audio goes on."""
    gate = OfferGate(pages=2)
    ada, bob = (launch_tone_browser(tone).new_page() for tone in (440.0, 660.0))
    errors = [collect_errors(page) for page in (ada, bob)]
    for page in (ada, bob):
        gate.install(page)
    room_url = open_new_room(ada, xes_server)
    join(ada, room_url, "Ada")
    join(bob, room_url, "Bob")
    for page in (ada, bob):
        expect(page.get_by_role("list", name="Participants").get_by_text("Direct", exact=True)) \
            .to_have_count(1, timeout=CONNECT_TIMEOUT_MS)
    # Ada was there first, so she is the polite one toward Bob (docs/protocol.md).
    assert ada.evaluate("window.xes.peers()[0].polite") is True
    assert bob.evaluate("window.xes.peers()[0].polite") is False
    before = {name: page.evaluate(STATE_JS)[0] for name, page in (("ada", ada), ("bob", bob))}

    for page in (ada, bob):
        page.evaluate(RECORD_STATES_JS)
    gate.armed = True
    for page in (ada, bob):
        page.evaluate("() => { for (const pc of window.xes.pcs().values()) pc.restartIce(); }")
    # Route callbacks run while Playwright waits, so wait in small steps until the gate opens.
    deadline_ms = CONNECT_TIMEOUT_MS
    while not gate.crossed and deadline_ms > 0:
        ada.wait_for_timeout(100)
        deadline_ms -= 100
    assert gate.crossed, "both pages should have sent a renegotiation offer"

    for name, page in (("ada", ada), ("bob", bob)):
        page.wait_for_function(
            """(old) => [...window.xes.pcs().values()].every((pc) =>
                 pc.signalingState === 'stable' && pc.connectionState === 'connected' &&
                 !pc.currentRemoteDescription.sdp.includes('a=ice-ufrag:' + old + '\\r'))""",
            arg=before[name]["remoteUfrag"],
            timeout=CONNECT_TIMEOUT_MS,
        )
    # The polite side rolled back its offer (have-local-offer -> stable) and answered Bob's;
    # the impolite side never took Ada's offer (no have-remote-offer) and got its answer.
    ada_states = ada.evaluate("window.signalingStates")
    bob_states = bob.evaluate("window.signalingStates")
    assert ada_states[:3] == ["have-local-offer", "stable", "have-remote-offer"], ada_states
    assert bob_states[:2] == ["have-local-offer", "stable"], bob_states
    assert "have-remote-offer" not in bob_states[:2]
    assert tones_by_name(ada, {"Bob": 660.0}) == {"Bob": [660.0]}
    assert tones_by_name(bob, {"Ada": 440.0}) == {"Ada": [440.0]}
    assert errors == [[], []]
