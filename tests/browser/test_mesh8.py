"""The largest room: eight browsers in a full mesh (28 direct links), each hearing all seven others.

Heavy (two cores at their limit for a few minutes; see README, "Heavy tests"): run by
scripts/test-heavy.sh, never beside other browser tests.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS, join, open_new_room
from tests.conftest import XesServerProcess
from tests.support.browser import detect_tones, selected_pair_types

pytestmark = [pytest.mark.browser, pytest.mark.heavy, pytest.mark.timeout(300)]

TONES = (440.0, 620.0, 830.0, 1070.0, 1310.0, 1550.0, 1790.0, 2030.0)



def test_eight_people_full_mesh(xes_server: XesServerProcess, launch_tone_browser: Any,
                                launch_browser: Any) -> None:
    # Eight people are eight browsers: one Chromium process each (its own network and audio
    # services, as on eight computers), each fake microphone playing its own tone.
    pages: list[Page] = [launch_tone_browser(tone).new_page() for tone in TONES]
    room_url = open_new_room(pages[0], xes_server)
    names = [f"P{n}" for n in range(len(TONES))]
    # People arrive one after another, as in life: each newcomer's links settle before the next
    # arrives, so two cores are never asked to set up 28 DTLS handshakes in the same second.
    for count, (page, name) in enumerate(zip(pages, names, strict=True)):
        join(page, room_url, name)
        expect(page.get_by_role("list", name="Participants").get_by_text("Direct", exact=True)
               ).to_have_count(count, timeout=90_000)
    for page in pages:
        expect(page.get_by_role("list", name="Participants").get_by_text("Direct", exact=True)
               ).to_have_count(7, timeout=90_000)
    for index, page in enumerate(pages):
        others = [t for i, t in enumerate(TONES) if i != index]
        heard = detect_tones(page, others, timeout=60)
        assert sorted(t for tones in heard.values() for t in tones) == others, (index, heard)
        assert all(pair == ("host", "host") for pair in selected_pair_types(page).values())
    # A ninth is refused, visibly.
    ninth = launch_browser().new_page()
    ninth.goto(room_url)
    ninth.get_by_label("Display name").fill("Ninth")
    ninth.get_by_role("button", name="Join").click()
    expect(ninth.get_by_role("alert")).to_contain_text("full", timeout=CONNECT_TIMEOUT_MS)
