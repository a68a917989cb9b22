"""Talking to a stranger from the landing page: "Talk to someone", then "Next" and "Stop"."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS, tones_by_name
from tests.conftest import XesServerProcess

pytestmark = pytest.mark.browser


def ask_for_someone(page: Page, server: XesServerProcess, name: str) -> None:
    """Open the landing page and queue for a stranger under `name`."""
    page.goto(server.http_url + "/")
    area = page.get_by_role("region", name="Talk to someone")
    area.get_by_label("Display name").fill(name)
    area.get_by_label("Interests").fill("chess, music")
    area.get_by_role("button", name="Talk to someone").click()


def test_two_strangers_meet_hear_each_other_then_next_and_stop(
    xes_server: XesServerProcess, launch_tone_browser: Any
) -> None:
    """Two people asking to talk are paired and hear each other; "Next" ends it for both and
    queues the one who pressed it again; "Stop" leaves the queue."""
    ada, bob = (launch_tone_browser(tone).new_page() for tone in (440.0, 660.0))
    ask_for_someone(ada, xes_server, "Ada")
    expect(ada.get_by_text("Looking for someone to talk to")).to_be_visible(
        timeout=CONNECT_TIMEOUT_MS
    )
    ask_for_someone(bob, xes_server, "Bob")

    for page, other in ((ada, "Bob"), (bob, "Ada")):
        participants = page.get_by_role("list", name="Participants")
        expect(participants).to_contain_text(other, timeout=CONNECT_TIMEOUT_MS)
        expect(participants.get_by_text("Direct", exact=True)).to_have_count(
            1, timeout=CONNECT_TIMEOUT_MS
        )
    assert tones_by_name(ada, {"Bob": 660.0}) == {"Bob": [660.0]}
    assert tones_by_name(bob, {"Ada": 440.0}) == {"Ada": [440.0]}

    bob.get_by_role("button", name="Next").click()
    expect(bob.get_by_text("Looking for someone to talk to")).to_be_visible()
    expect(ada.get_by_role("list", name="Participants")).not_to_contain_text(
        "Bob", timeout=CONNECT_TIMEOUT_MS
    )
    expect(ada.get_by_text("The other person left")).to_be_visible()

    bob.get_by_role("button", name="Stop").click()
    expect(bob.get_by_role("button", name="Talk to someone")).to_be_enabled(
        timeout=CONNECT_TIMEOUT_MS
    )
    expect(bob.get_by_role("button", name="Stop")).to_be_disabled()


def test_next_matches_with_a_third_person(
    xes_server: XesServerProcess, launch_tone_browser: Any
) -> None:
    """Ada and Bob meet; Bob presses "Next" and is paired with Cy, the next to ask; Bob and Cy hear
    each other, and Ada, who did not ask again, is left alone and never paired with Bob again."""
    ada, bob, cy = (launch_tone_browser(tone).new_page() for tone in (440.0, 660.0, 990.0))
    ask_for_someone(ada, xes_server, "Ada")
    expect(ada.get_by_text("Looking for someone to talk to")).to_be_visible(
        timeout=CONNECT_TIMEOUT_MS
    )
    ask_for_someone(bob, xes_server, "Bob")
    expect(bob.get_by_role("list", name="Participants")).to_contain_text(
        "Ada", timeout=CONNECT_TIMEOUT_MS
    )
    assert tones_by_name(bob, {"Ada": 440.0}) == {"Ada": [440.0]}

    bob.get_by_role("button", name="Next").click()
    expect(bob.get_by_text("Looking for someone to talk to")).to_be_visible(
        timeout=CONNECT_TIMEOUT_MS
    )
    ask_for_someone(cy, xes_server, "Cy")
    for page, other in ((bob, "Cy"), (cy, "Bob")):
        participants = page.get_by_role("list", name="Participants")
        expect(participants).to_contain_text(other, timeout=CONNECT_TIMEOUT_MS)
    assert tones_by_name(bob, {"Cy": 990.0}) == {"Cy": [990.0]}
    assert tones_by_name(cy, {"Bob": 660.0}) == {"Bob": [660.0]}
    expect(ada.get_by_role("list", name="Participants")).not_to_contain_text("Bob")
