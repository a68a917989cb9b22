"""TURN credentials are renewed before they expire, for new and for existing links."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS, join, open_new_room
from tests.conftest import XesServerProcess

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

TTL_SECONDS = 60  # the shortest xes serve allows; the page refreshes at 80 %: after 48 s
# Nothing listens here: TURN is configured but unreachable, which a direct call must not mind.
UNREACHABLE_TURN = "turn:127.0.0.1:9?transport=udp"

USERNAMES_JS = "[...window.xes.pcs().values()].map((pc) => pc.getConfiguration().iceServers[0].username)"


def test_credentials_are_refreshed_and_applied_to_open_links(
    start_xes_server: Any, launch_browser: Any, tmp_path: Path
) -> None:
    """With a one-minute credential lifetime the page asks for fresh ones before expiry and hands them
    to its open RTCPeerConnection; the unreachable relay raises no alarm on a working direct call."""
    secret = tmp_path / "turn-secret"
    secret.write_text("not-a-real-secret\n")
    server: XesServerProcess = start_xes_server(args=[
        "--turn-url", UNREACHABLE_TURN, "--turn-secret-file", str(secret),
        "--turn-ttl", str(TTL_SECONDS),
    ])
    browser = launch_browser()
    ada, bob = browser.new_context().new_page(), browser.new_context().new_page()
    room_url = open_new_room(ada, server)
    join(ada, room_url, "Ada")
    join(bob, room_url, "Bob")
    expect(bob.get_by_role("list", name="Participants").get_by_text("Direct", exact=True)) \
        .to_have_count(1, timeout=CONNECT_TIMEOUT_MS)

    first_expiry = bob.evaluate("window.xes.iceExpiresAt")
    [first_username] = bob.evaluate(USERNAMES_JS)
    assert first_username.startswith(f"{first_expiry}:")

    bob.wait_for_function(
        "(before) => window.xes.iceExpiresAt > before", arg=first_expiry,
        timeout=TTL_SECONDS * 2 * 1000,
    )
    new_expiry = bob.evaluate("window.xes.iceExpiresAt")
    [new_username] = bob.evaluate(USERNAMES_JS)
    assert new_username.startswith(f"{new_expiry}:")
    assert bob.evaluate("window.xes.peers()[0].connectionState") == "connected"
    expect(bob.get_by_text("relay could not be used")).to_have_count(0)
