"""The call people expect, in real Chromium: chat over the peers' own data channels, mute that the
others see, announcements for screen readers, a microphone switched mid-call, a poor link
pointed out, keyboard-only use, axe-core, a phone-sized layout, and the README's screenshots.

One Chromium, one context per person (each with its own oscillator microphone, as in the 8-person
test), and one room of three shared by the tests of this module: setting up calls is the
expensive part, so it happens once.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS, TONE_TIMEOUT_S, join, open_new_room
from tests.browser.test_no_media import every_channel_open, server_tcp_bytes
from tests.conftest import XesServerProcess
from tests.support.browser import detect_tones, oscillator_microphone_script

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "a11y" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / "docs" / "screenshots"
TONES = {"Ada": 440.0, "Bob": 660.0, "Cy": 990.0}
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 860}


def person(browser: Browser, frequency: float, viewport: dict[str, int] | None = None) -> Page:
    """A fresh context of the shared Chromium whose microphone plays `frequency`."""
    context: BrowserContext = browser.new_context(viewport=viewport or DESKTOP)  # type: ignore[arg-type]
    context.add_init_script(oscillator_microphone_script(frequency))
    context.set_default_timeout(CONNECT_TIMEOUT_MS)
    return context.new_page()


@pytest.fixture(scope="module")
def room(chromium: Browser, server: XesServerProcess) -> dict[str, Any]:
    """Ada (host), Bob and Cy in one call, each hearing both others; Cy on a phone-sized screen."""
    pages = {name: person(chromium, tone, PHONE if name == "Cy" else None) for name, tone in TONES.items()}
    url = open_new_room(pages["Ada"], server)
    for name, page in pages.items():
        join(page, url, name)
    for name, page in pages.items():
        others = [tone for other, tone in TONES.items() if other != name]
        heard = detect_tones(page, others, timeout=TONE_TIMEOUT_S)
        assert sorted(t for tones in heard.values() for t in tones) == sorted(others), (name, heard)
        expect(page.get_by_role("list", name="Participants").get_by_text("Connected")).to_have_count(2)
    return {"pages": pages, "url": url}


def participant(page: Page, name: str) -> Any:
    return page.get_by_role("list", name="Participants").get_by_role("listitem").filter(
        has=page.locator(".participant__label", has_text=name))


def axe_violations(page: Page) -> list[str]:
    """axe-core's violations on the page as it is now, one line each."""
    assert AXE.exists(), f"{AXE} is missing: scripts/test.sh installs it (npm ci in tests/a11y)"
    # Evaluated, not added as a <script>: the page's Content-Security-Policy rightly refuses that.
    page.evaluate(AXE.read_text())
    result: list[dict[str, Any]] = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [f"{v['id']}: {v['help']} — {[n['target'] for n in v['nodes']]}" for v in result]


# --- chat -------------------------------------------------------------------------------------------


def test_chat_goes_peer_to_peer_to_everyone_and_never_through_the_server(
    room: dict[str, Any], server: XesServerProcess
) -> None:
    pages = room["pages"]
    text = secrets.token_hex(1024)  # 2 KB that appear nowhere else
    every_channel_open(list(pages.values()))  # the server's signalling is over
    before, _ = server_tcp_bytes(server.port)
    ada = pages["Ada"]
    ada.get_by_label("Message").fill(text)
    ada.get_by_role("button", name="Send").click()
    for name in ("Bob", "Cy"):
        messages = pages[name].get_by_role("list", name="Chat history")
        expect(messages.get_by_text(text)).to_be_visible()
        # The sender's name and a time are shown with it, and it was announced.
        expect(messages.get_by_role("listitem").last.locator(".chat__name")).to_have_text("Ada")
        expect(messages.get_by_role("listitem").last.locator("time")).to_have_attribute(
            "datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))
        # Announced: the history sits in a polite live region (role=log), and only there, so the
        # text is on the page once.
        expect(pages[name].get_by_role("log").get_by_text(text)).to_be_visible()
        expect(pages[name].get_by_text(text)).to_have_count(1)
    expect(ada.get_by_role("list", name="Chat history").get_by_text(text)).to_be_visible()
    after, _ = server_tcp_bytes(server.port)
    assert after - before < len(text), f"the server moved {after - before} bytes during the chat"
    assert text not in server.log
    assert text[:32] not in server.log


# --- mute is seen by the others, joins and leaves are announced by name ---------------------------

def test_mute_is_shown_to_the_others_and_announced(room: dict[str, Any]) -> None:
    pages = room["pages"]
    bob = pages["Bob"]
    bob.get_by_role("button", name="Mute").click()
    for name in ("Ada", "Cy"):
        expect(participant(pages[name], "Bob")).to_contain_text("Muted")
        expect(pages[name].locator("#announcer")).to_contain_text("Bob muted their microphone.")
    bob.get_by_role("button", name="Unmute").click()
    for name in ("Ada", "Cy"):
        expect(participant(pages[name], "Bob")).not_to_contain_text("Muted")


def test_joins_and_leaves_are_announced_by_name(room: dict[str, Any], chromium: Browser) -> None:
    pages = room["pages"]
    dee = person(chromium, 1310.0)
    join(dee, room["url"], "Dee")
    expect(dee.locator("#call-title")).to_be_focused()  # not the page body
    for page in pages.values():
        expect(page.locator("#announcer")).to_contain_text("Dee joined.")
    dee.get_by_role("button", name="Leave").click()
    for page in pages.values():
        expect(page.locator("#announcer")).to_contain_text("Dee left.")
    dee.context.close()


# --- devices ----------------------------------------------------------------------------------------

def test_microphone_switch_mid_call_keeps_the_link_and_the_others_hear_the_new_one(
    room: dict[str, Any],
) -> None:
    pages = room["pages"]
    ada, bob = pages["Ada"], pages["Bob"]
    new_tone = 1550.0
    ada.evaluate(TWO_MICROPHONES_JS, new_tone)
    # Every link object marked, so "the same link" is checked by identity afterwards.
    ada.evaluate("() => { for (const pc of window.xes.pcs().values()) pc.__xesMark = true; }")
    links_before = ada.evaluate("() => window.xes.pcs().size")
    ada.get_by_text("Audio settings").click()
    expect(ada.get_by_label("Speaker")).to_be_visible()
    microphone = ada.get_by_label("Microphone")
    expect(microphone.get_by_role("option", name="Test microphone B")).to_have_count(1)
    microphone.select_option(label="Test microphone B")
    heard = detect_tones(bob, [new_tone], timeout=TONE_TIMEOUT_S)
    assert [new_tone] in heard.values(), heard
    links = ada.evaluate(
        """() => [...window.xes.pcs().values()].map((pc) => [pc.__xesMark === true, pc.signalingState,
                 pc.connectionState])""")
    assert len(links) == links_before
    assert all(mark and state == "stable" and conn == "connected" for mark, state, conn in links), links
    expect(microphone).to_have_value("mic-b")


# Two microphones for a page already in a call: "Test microphone B" plays `frequency`; the
# page's own switch (the "Microphone" select) asks getUserMedia for it by deviceId.
TWO_MICROPHONES_JS = """
(frequency) => {
  const original = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.enumerateDevices = async () => [
    {kind: 'audioinput', deviceId: 'mic-a', label: 'Test microphone A', groupId: 'a'},
    {kind: 'audioinput', deviceId: 'mic-b', label: 'Test microphone B', groupId: 'b'},
    {kind: 'audiooutput', deviceId: 'default', label: 'Default speaker', groupId: 'c'},
  ];
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (constraints?.audio?.deviceId?.exact !== 'mic-b') return original(constraints);
    const context = window.__xesTestAudio;
    const oscillator = context.createOscillator();
    oscillator.frequency.value = frequency;
    oscillator.start();
    const gain = context.createGain();
    gain.gain.value = 0.5;
    const destination = context.createMediaStreamDestination();
    oscillator.connect(gain).connect(destination);
    return destination.stream;
  };
  navigator.mediaDevices.dispatchEvent(new Event('devicechange'));
}
"""


# --- quality ------------------------------------------------------------------------------------------

def test_a_lossy_link_shows_a_plain_words_warning_that_clears(room: dict[str, Any]) -> None:
    """Loss induced through a test hook on getStats (the page's own stats code reads it)."""
    ada = room["pages"]["Ada"]
    ada.evaluate(
        """() => {
          const original = RTCPeerConnection.prototype.getStats;
          window.__xesLoss = {on: true, extra: 0};
          RTCPeerConnection.prototype.getStats = async function (...args) {
            const report = await original.apply(this, args);
            if (!window.__xesLoss.on) return report;
            const copy = new Map();
            report.forEach((value, key) => {
              if (value.type === 'inbound-rtp' && value.kind === 'audio') {
                // Each poll adds as many lost packets as received ones: 50% loss.
                window.__xesLoss.extra += 60;
                copy.set(key, {...value, packetsLost: value.packetsLost + window.__xesLoss.extra});
              } else copy.set(key, value);
            });
            return copy;
          };
        }""")
    bob = participant(ada, "Bob")
    expect(bob.get_by_text("Poor connection")).to_be_visible(timeout=15_000)
    expect(bob).to_contain_text("of the audio is lost", timeout=15_000)
    bob.get_by_text("Connection details").click()
    expect(bob.locator(".participant__numbers")).to_contain_text("Round trip")
    expect(bob.locator(".participant__numbers")).to_contain_text("Loss")
    ada.evaluate("() => { window.__xesLoss.on = false; }")
    # The loss warning clears. (On a starved machine real jitter or delay may still be past their
    # thresholds, which is a true warning of its own, so it is the loss words that must go.)
    expect(bob).not_to_contain_text("of the audio is lost", timeout=15_000)


# --- accessibility, phones, screenshots ------------------------------------------------------------

def test_axe_finds_nothing_on_landing_room_and_call(
    room: dict[str, Any], chromium: Browser, server: XesServerProcess
) -> None:
    landing = person(chromium, 1790.0)
    landing.goto(server.http_url + "/")
    problems = {"landing": axe_violations(landing)}
    landing.goto(room["url"])
    expect(landing.get_by_role("button", name="Join")).to_be_enabled()
    problems["room before joining"] = axe_violations(landing)
    problems["call in progress"] = axe_violations(room["pages"]["Ada"])
    landing.context.close()
    assert problems == {k: [] for k in problems}


def test_the_layout_fits_a_phone(room: dict[str, Any], chromium: Browser, server: XesServerProcess) -> None:
    phone = person(chromium, 2030.0, PHONE)
    phone.goto(server.http_url + "/")
    widths = {"landing": phone.evaluate("document.documentElement.scrollWidth")}
    widths["call"] = room["pages"]["Cy"].evaluate("document.documentElement.scrollWidth")
    phone.context.close()
    assert widths == {"landing": PHONE["width"], "call": PHONE["width"]}


def test_screenshots_for_the_readme(
        room: dict[str, Any], chromium: Browser, server: XesServerProcess) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = person(chromium, 2270.0, viewport)
        page.goto(server.http_url + "/")
        page.screenshot(path=str(SCREENSHOTS / f"landing-{label}.png"), full_page=label == "desktop")
        page.context.close()
    pages = room["pages"]
    pages["Ada"].get_by_label("Message").fill("Hello both, can you hear me?")
    pages["Ada"].get_by_role("button", name="Send").click()
    pages["Ada"].locator("#call").screenshot(path=str(SCREENSHOTS / "call-desktop.png"))
    cy = pages["Cy"]
    cy_history = cy.get_by_role("list", name="Chat history")
    expect(cy_history.get_by_text("Hello both, can you hear me?")).to_be_visible()
    cy.locator("#call").scroll_into_view_if_needed()
    cy.screenshot(path=str(SCREENSHOTS / "call-phone.png"))
    for name in ("landing-desktop", "landing-phone", "call-desktop", "call-phone"):
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000


# --- keyboard only ---------------------------------------------------------------------------------

def test_keyboard_only_join_mute_chat_leave(room: dict[str, Any], chromium: Browser) -> None:
    """Everything through the keyboard, focus visible at each step."""
    pages = room["pages"]
    eve = person(chromium, 1790.0)
    eve.goto(room["url"])
    eve.get_by_label("Display name").focus()
    eve.keyboard.type("Eve")
    eve.keyboard.press("Enter")  # submits the join form
    expect(eve.locator("#call-title")).to_be_focused()
    eve.keyboard.press("m")
    expect(eve.get_by_role("button", name="Unmute")).to_have_attribute("aria-pressed", "true")
    # Told over the data channel once the link is up: the link may take a while on a busy machine.
    expect(participant(pages["Ada"], "Eve")).to_contain_text("Muted", timeout=CONNECT_TIMEOUT_MS)
    until_focused(eve, "#chat-message")
    eve.keyboard.type("typed, not clicked")
    eve.keyboard.press("Enter")
    bob_messages = pages["Bob"].get_by_role("list", name="Chat history")
    expect(bob_messages.get_by_text("typed, not clicked")).to_be_visible()
    until_focused(eve, "#leave", backwards=True)
    outline = eve.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid", "focus must be visible"
    eve.keyboard.press("Enter")
    expect(eve.get_by_role("button", name="Join")).to_be_focused()
    expect(pages["Ada"].locator("#announcer")).to_contain_text("Eve left.", timeout=CONNECT_TIMEOUT_MS)
    eve.context.close()


def until_focused(page: Page, selector: str, backwards: bool = False, limit: int = 60) -> None:
    """Press Tab (or Shift+Tab) until `selector` has focus."""
    for _ in range(limit):
        if page.evaluate("(s) => document.activeElement === document.querySelector(s)", selector):
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"{selector} never got focus with {'Shift+' if backwards else ''}Tab")
