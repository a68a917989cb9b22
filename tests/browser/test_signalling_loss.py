"""Losing the signalling server does not end a call, and the page comes back when it returns.

Audio goes browser to browser, so stopping `xes serve` mid-call must leave the audio playing while
the page says, visibly, that the server connection is being restored. When a server that does not
know the old sessions listens on the same port again, the pages' resume is refused
(`session-gone`), so they fall back to joining the room afresh.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS, join, open_new_room, tones_by_name
from tests.conftest import XesServerProcess

pytestmark = pytest.mark.browser

LOST = "The connection to the server is being restored"


def test_call_survives_server_loss_and_rejoins_when_it_returns(
    start_xes_server: Callable[..., XesServerProcess], launch_tone_browser: Any
) -> None:
    """Stop the server mid-call: both pages show the loss and still hear each other; start it
    again on the same port: the alert goes, both rejoin and hear each other over new links."""
    server = start_xes_server()
    ada, bob = (launch_tone_browser(tone).new_page() for tone in (440.0, 660.0))
    room_url = open_new_room(ada, server)
    join(ada, room_url, "Ada")
    join(bob, room_url, "Bob")
    for page in (ada, bob):
        expect(page.get_by_role("list", name="Participants")).to_contain_text(
            "Direct", timeout=CONNECT_TIMEOUT_MS
        )
    first_links = ada.evaluate("[...window.xes.pcs().keys()]")

    server.stop()
    for page in (ada, bob):
        expect(page.get_by_role("alert")).to_contain_text(LOST, timeout=CONNECT_TIMEOUT_MS)
    # Still in the call, still hearing each other, with the server gone.
    assert tones_by_name(ada, {"Bob": 660.0}) == {"Bob": [660.0]}
    assert tones_by_name(bob, {"Ada": 440.0}) == {"Ada": [440.0]}

    start_xes_server(args=["--port", str(server.port)])
    for page in (ada, bob):
        expect(page.get_by_text(LOST)).to_have_count(0, timeout=CONNECT_TIMEOUT_MS)
        participants = page.get_by_role("list", name="Participants")
        expect(participants.get_by_text("Direct", exact=True)).to_have_count(
            1, timeout=CONNECT_TIMEOUT_MS
        )
    # New peer ids after the rejoin, so new links; and audio on them.
    assert ada.evaluate("[...window.xes.pcs().keys()]") != first_links
    assert tones_by_name(ada, {"Bob": 660.0}) == {"Bob": [660.0]}
    assert tones_by_name(bob, {"Ada": 440.0}) == {"Ada": [440.0]}
