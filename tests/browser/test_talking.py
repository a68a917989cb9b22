"""Talking controls and per-person volume in real Chromium, three pages with distinct tones.

Push-to-talk (Space, or the "Hold to talk" button) opens a muted microphone only while held; M
toggles mute except while typing; "You are muted" shows when a muted microphone hears speech
(the fake microphone always plays its tone). "Volume for <name>" changes one voice for one
listener, measured after the volume (`window.xes.heardStreams()`), where the speakers get it.
"""

from __future__ import annotations

import re
import time
from typing import Any, Protocol

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS, SILENCE_PROOF_S, TONE_TIMEOUT_S, join, open_new_room
from tests.support.browser import detect_tones, read_tone_monitor, start_tone_monitor

pytestmark = pytest.mark.browser

TONES = {"Ada": 440.0, "Bob": 660.0, "Cy": 990.0}
# The bound: once Space is released the others hear silence within this.
RELEASE_SILENCE_MS = 500.0
# How long after the release the receiver keeps listening, to see the silence last.
OBSERVE_AFTER_RELEASE_MS = 2000.0


class _Server(Protocol):
    http_url: str


def three_in_a_room(xes_server: _Server, launch_tone_browser: Any) -> dict[str, Page]:
    """Ada (the host), Bob and Cy in one room, each hearing both others' tones."""
    pages = {name: launch_tone_browser(tone).new_page() for name, tone in TONES.items()}
    room_url = open_new_room(pages["Ada"], xes_server)
    for name, page in pages.items():
        join(page, room_url, name)
    for name, page in pages.items():
        others = [tone for other, tone in TONES.items() if other != name]
        heard = detect_tones(page, others, timeout=TONE_TIMEOUT_S, streams="heardStreams")
        assert sorted(t for tones in heard.values() for t in tones) == sorted(others), (name, heard)
    return pages


def peer_id(page: Page, name: str) -> str:
    """The id under which `page` knows the participant called `name`."""
    peers: list[dict[str, Any]] = page.evaluate("window.xes.peers()")
    (found,) = [peer["id"] for peer in peers if peer["name"] == name]
    return str(found)


def hears(page: Page, name: str, timeout: float = TONE_TIMEOUT_S) -> bool:
    """Whether `page` plays `name`'s tone to its speakers (after the per-person volume)."""
    heard = detect_tones(page, [TONES[name]], timeout=timeout, streams="heardStreams")
    return heard.get(peer_id(page, name)) == [TONES[name]]


SPEAKING = re.compile(r"\bis-speaking\b")


def ring(page: Page, name: str) -> Locator:
    """`name`'s row in the participant list, which has class is-speaking while they talk."""
    return page.get_by_role("list", name="Participants").get_by_role("listitem").filter(has_text=name)


def mute_button(page: Page) -> Locator:
    return page.get_by_role("button", name=re.compile(r"^(Mute|Unmute)$"))


def wait_for_reading(page: Page, peer: str, heard: bool, after_ms: float, timeout_s: float) -> None:
    """Poll the page's tone monitor until a reading of `peer` later than `after_ms` says `heard`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(t > after_ms and value == heard for t, value in read_tone_monitor(page, peer)):
            return
        time.sleep(0.05)
    raise AssertionError(f"no reading with heard={heard} within {timeout_s} s")


def assert_silent_soon_after_release(
    listener: Page, peer: str, release_ms: float
) -> float:
    """After a release at `release_ms`, the listener's readings of `peer` go silent within the
    bound and stay silent; returns the delay (ms) from release to the last reading with tone."""
    end = release_ms + OBSERVE_AFTER_RELEASE_MS
    wait_for_reading(listener, peer, heard=False, after_ms=end, timeout_s=TONE_TIMEOUT_S)
    after = [(t, heard) for t, heard in read_tone_monitor(listener, peer) if release_ms <= t <= end]
    assert len(after) >= 20, f"too few readings to judge: {len(after)}"
    last_heard = max((t for t, heard in after if heard), default=release_ms)
    delay = last_heard - release_ms
    assert delay <= RELEASE_SILENCE_MS, f"tone still heard {delay:.0f} ms after release"
    # And the silence is real silence, not a gap: readings after the bound are all silent.
    assert not any(heard for t, heard in after if t > release_ms + RELEASE_SILENCE_MS)
    return delay


def test_push_to_talk_opens_a_muted_microphone_only_while_held(
    xes_server: _Server, launch_tone_browser: Any
) -> None:
    """Muted Ada holds Space: Bob and Cy hear her; she lets go: silence within 500 ms. The same
    with the "Hold to talk" button, under the mouse and with Enter. Mute stays on (aria-pressed)
    throughout."""
    pages = three_in_a_room(xes_server, launch_tone_browser)
    ada, bob, cy = pages["Ada"], pages["Bob"], pages["Cy"]
    mute_button(ada).click()
    expect(mute_button(ada)).to_have_attribute("aria-pressed", "true")
    ada_on_bob = peer_id(bob, "Ada")
    start_tone_monitor(bob, TONES["Ada"], streams="heardStreams")
    started_ms = time.time() * 1000
    wait_for_reading(bob, ada_on_bob, heard=False, after_ms=started_ms + 1000, timeout_s=TONE_TIMEOUT_S)
    assert not hears(cy, "Ada", timeout=SILENCE_PROOF_S)

    talk = ada.get_by_role("button", name="Hold to talk")
    talk.hover()
    for hold, release in (
        # Space anywhere (focus is on the Mute button, which Space must not press) ...
        (lambda: ada.keyboard.down("Space"), lambda: ada.keyboard.up("Space")),
        # ... the button under the mouse ...
        (ada.mouse.down, ada.mouse.up),
        # ... and Enter on the focused button.
        (lambda: (talk.focus(), ada.keyboard.down("Enter")), lambda: ada.keyboard.up("Enter")),
    ):
        pressed_ms = time.time() * 1000
        hold()
        wait_for_reading(bob, ada_on_bob, heard=True, after_ms=pressed_ms, timeout_s=TONE_TIMEOUT_S)
        assert hears(cy, "Ada")
        # Holding talks without unmuting: the Mute toggle still says muted.
        expect(mute_button(ada)).to_have_attribute("aria-pressed", "true")
        expect(ada.get_by_text("You are muted")).to_have_count(0)
        release_ms = time.time() * 1000
        release()
        assert_silent_soon_after_release(bob, ada_on_bob, release_ms)
        expect(mute_button(ada)).to_have_attribute("aria-pressed", "true")
    assert not hears(cy, "Ada", timeout=SILENCE_PROOF_S)


def test_m_toggles_mute_except_while_typing_and_muted_speech_is_pointed_out(
    xes_server: _Server, launch_tone_browser: Any
) -> None:
    """M mutes and unmutes (the others stop and start hearing); typing "m" in a text field does
    not. While muted, the microphone's tone makes the page say "You are muted"."""
    ada, bob = (launch_tone_browser(TONES[name]).new_page() for name in ("Ada", "Bob"))
    room_url = open_new_room(ada, xes_server)
    join(ada, room_url, "Ada")
    join(bob, room_url, "Bob")
    assert hears(bob, "Ada")
    notice = ada.get_by_role("status").filter(has_text="You are muted")
    expect(notice).to_have_count(0)

    # Audio already on its way when M is pressed still arrives: judge silence from the moment of
    # the key press with timestamped readings, as for push-to-talk's release.
    ada_on_bob = peer_id(bob, "Ada")
    start_tone_monitor(bob, TONES["Ada"], streams="heardStreams")
    pressed_ms = time.time() * 1000
    ada.keyboard.press("m")
    expect(mute_button(ada)).to_have_attribute("aria-pressed", "true")
    expect(mute_button(ada)).to_have_text("Unmute")
    expect(notice).to_be_visible(timeout=CONNECT_TIMEOUT_MS)
    assert_silent_soon_after_release(bob, ada_on_bob, pressed_ms)
    assert not hears(bob, "Ada", timeout=SILENCE_PROOF_S)

    # Ada is the host: the room password field is a text field she can type in during the call.
    password = ada.get_by_role("textbox", name="Room password")
    password.click()
    password.press_sequentially("mm m")
    expect(password).to_have_value("mm m")
    expect(mute_button(ada)).to_have_attribute("aria-pressed", "true")
    password.blur()

    ada.keyboard.press("m")
    expect(mute_button(ada)).to_have_attribute("aria-pressed", "false")
    expect(notice).to_have_count(0)
    assert hears(bob, "Ada")


def test_volume_for_one_person_changes_only_what_this_listener_hears(
    xes_server: _Server, launch_tone_browser: Any
) -> None:
    """"Volume for Bob" at 0 on Ada's page: Ada no longer hears Bob, Cy still does, Ada still
    hears Cy. Back at 100 %, Ada hears Bob again; the setting survives leaving and rejoining.
    Bob's speaking ring on Ada's page says he talks at every volume: at 0 % and 200 % (played
    through Web Audio, measured there) as at 100 % and 30 % (played by its element, measured
    from the page's statistics with the element's volume divided out)."""
    pages = three_in_a_room(xes_server, launch_tone_browser)
    ada, cy = pages["Ada"], pages["Cy"]
    volume = ada.get_by_label("Volume for Bob")
    expect(volume).to_have_value("100")
    expect(cy.get_by_label("Volume for Bob")).to_have_value("100")

    volume.focus()
    volume.press("Home")
    expect(volume).to_have_value("0")
    expect(volume).to_have_attribute("aria-valuetext", "0%")
    assert hears(ada, "Cy")
    assert not hears(ada, "Bob", timeout=SILENCE_PROOF_S)
    assert hears(cy, "Bob")
    expect(cy.get_by_label("Volume for Bob")).to_have_value("100")
    expect(ring(ada, "Bob")).to_have_class(SPEAKING, timeout=CONNECT_TIMEOUT_MS)

    for _ in range(3):
        volume.press("ArrowRight")
    expect(volume).to_have_value("30")
    assert hears(ada, "Bob")
    expect(ring(ada, "Bob")).to_have_class(SPEAKING, timeout=CONNECT_TIMEOUT_MS)
    for _ in range(7):
        volume.press("ArrowRight")
    expect(volume).to_have_value("100")
    expect(volume).to_have_attribute("aria-valuetext", "100%")
    assert hears(ada, "Bob")
    expect(ring(ada, "Bob")).to_have_class(SPEAKING, timeout=CONNECT_TIMEOUT_MS)

    volume.press("End")
    expect(volume).to_have_value("200")
    # Remembered by name for the session: rejoining shows and applies it.
    ada.get_by_role("button", name="Leave").click()
    ada.get_by_role("button", name="Join").click()
    expect(ada.get_by_label("Volume for Bob")).to_have_value("200", timeout=CONNECT_TIMEOUT_MS)
    expect(ada.get_by_label("Volume for Bob")).to_have_attribute("aria-valuetext", "200%")
    assert hears(ada, "Bob")
    expect(ring(ada, "Bob")).to_have_class(SPEAKING, timeout=CONNECT_TIMEOUT_MS)
    # And the ring goes out when Bob stops talking: it follows his voice, not his volume.
    mute_button(pages["Bob"]).click()
    expect(ring(ada, "Bob")).not_to_have_class(SPEAKING, timeout=CONNECT_TIMEOUT_MS)
