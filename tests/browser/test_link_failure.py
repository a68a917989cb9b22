"""When no path works at all, the page says why within a bounded time, not "Connecting…" forever.

Two real Chromium pages with "Hide my IP (always relay)" on, through a server whose TURN URLs
point at ports where nothing listens (the relay is down, or a firewall eats it): no candidate
can ever be gathered, and Chromium itself never reports "failed" for that. The page must still
tell each person, in the participant list and in an alert, that the link could not connect and
that the relay is what could not be reached. The bound (LINK_CONNECT_TIMEOUT_MS, 25 s) is what
the test's timeout allows for plus slack on a shared machine, not a timed assertion.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import XesServerProcess, launch_xes_server
from tests.turn.coturn import free_port

pytestmark = pytest.mark.browser

RELAY_CHECKBOX = "Hide my IP (always relay)"
FAILURE_TIMEOUT_MS = 60_000  # the 25 s bound, plus room for a busy machine
RELAY_UNREACHABLE = "the relay could not be reached"


def join(page: Page, room_url: str, name: str) -> None:
    """Open the room, turn on "always relay", enter a name, press Join."""
    page.goto(room_url)
    page.get_by_role("checkbox", name=RELAY_CHECKBOX).check()
    page.get_by_label("Display name").fill(name)
    page.get_by_role("button", name="Join").click()


def test_dead_relay_is_reported_in_plain_words(
    launch_browser: Callable[..., Browser], tmp_path: Path
) -> None:
    """TURN over UDP and TCP both point at a port nobody listens on: each page shows "Could not
    connect to <other>: no network path (the relay could not be reached)" as an alert and the
    reason in the participant list, and no link ever connects."""
    dead = free_port()
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(secrets.token_urlsafe(24) + "\n")
    server: XesServerProcess = launch_xes_server([
        "--turn-url", f"turn:127.0.0.1:{dead}?transport=udp",
        "--turn-url", f"turn:127.0.0.1:{dead}?transport=tcp",
        "--turn-secret-file", str(secret_file)])
    try:
        browser = launch_browser()
        room = f"{server.http_url}/r/{secrets.token_urlsafe(16)}"
        ada = browser.new_context().new_page()
        bob = browser.new_context().new_page()
        join(ada, room, "Ada")
        expect(ada.get_by_role("list", name="Participants")).to_be_visible(
            timeout=FAILURE_TIMEOUT_MS)
        join(bob, room, "Bob")
        for page, other in ((ada, "Bob"), (bob, "Ada")):
            expect(page.get_by_role("alert").filter(has_text=f"Could not connect to {other}")
                   ).to_contain_text(
                f"Could not connect to {other}: no network path ({RELAY_UNREACHABLE}).",
                timeout=FAILURE_TIMEOUT_MS)
            participants = page.get_by_role("list", name="Participants")
            expect(participants).to_contain_text(f"Could not connect: {RELAY_UNREACHABLE}")
            expect(participants).not_to_contain_text("Connecting…")
            states: list[Any] = page.evaluate(
                "[...window.xes.pcs().values()].map((pc) => pc.connectionState)")
            assert states and "connected" not in states, states
    finally:
        server.stop()
        if server.process.stdout is not None:
            server.process.stdout.close()


def test_failure_reasons_follow_what_ice_saw(
    launch_browser: Callable[..., Browser], xes_server: XesServerProcess
) -> None:
    """The reason is the relay's fault only when no relay candidate came: a refused
    credential, an unreachable relay, and a relay that worked but no pair did ("no path")."""
    page = launch_browser().new_page()
    page.goto(xes_server.http_url + "/")
    reasons = page.evaluate("""async () => {
      const n = await import('/static/negotiation.js');
      const reason = (relayOnly, gotRelayCandidate, codes, hasTurn) =>
        n.linkFailureReason({relayOnly, gotRelayCandidate, turnErrorCodes: new Set(codes), hasTurn});
      return {
        refused: reason(true, false, [401], true),
        unreachableRelayOnly: reason(true, false, [], true),
        unreachableErrors: reason(false, false, [701], true),
        relayWorkedNoPair: reason(true, true, [701], true),
        noTurnAtAll: reason(false, false, [], false),
        directOnlyNoErrors: reason(false, false, [], true),
      };
    }""")
    assert reasons == {
        "refused": "the relay refused our credentials",
        "unreachableRelayOnly": RELAY_UNREACHABLE,
        "unreachableErrors": RELAY_UNREACHABLE,
        "relayWorkedNoPair": "no network path between you (firewalls may block it)",
        "noTurnAtAll": "no network path between you (firewalls may block it)",
        "directOnlyNoErrors": "no network path between you (firewalls may block it)",
    }
