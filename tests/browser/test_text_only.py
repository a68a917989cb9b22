""""Text only" on the landing page, in real Chromium (docs/protocol.md, "Text only").

People without a microphone tick "Text only": the page never asks for one (getUserMedia is never
called), the stranger call is a chat over the link's data channel with no audio on the link, and
the page says it is a text chat. A voice user meets them only after ticking "Accept text chats".

One Chromium for the module, one context per person. The module's server has no relay, so each
person also ticks "Allow a direct connection with strangers", as the page asks them to.
"""

from __future__ import annotations

import secrets
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS
from tests.browser.test_call_ux import axe_violations
from tests.conftest import XesServerProcess
from tests.support.browser import oscillator_microphone_script, wait_channels_open

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

# Counts every call of getUserMedia, whoever makes it, from before the page's own scripts run.
COUNT_MICROPHONE_REQUESTS = """
(() => {
  window.__microphoneRequests = 0;
  const devices = navigator.mediaDevices;
  const original = devices.getUserMedia.bind(devices);
  devices.getUserMedia = (...args) => {
    window.__microphoneRequests += 1;
    return original(...args);
  };
})();
"""

# What each link carries: transceivers, senders with a track, and m-lines of both descriptions.
LINK_MEDIA = """
() => [...window.xes.pcs().values()].map((pc) => ({
  transceivers: pc.getTransceivers().length,
  sendingTracks: pc.getSenders().filter((sender) => sender.track).length,
  audioLines: [pc.localDescription, pc.remoteDescription]
    .map((d) => (d?.sdp ?? '').split('\\r\\n').filter((line) => line.startsWith('m=audio')).length),
  applicationLines: (pc.localDescription?.sdp ?? '').split('\\r\\n')
    .filter((line) => line.startsWith('m=application')).length,
  state: pc.connectionState,
}))
"""


def person(browser: Browser, *, microphone_hz: float | None = None) -> Page:
    """A fresh context; with `microphone_hz`, its microphone plays that tone."""
    context: BrowserContext = browser.new_context()
    if microphone_hz is not None:
        context.add_init_script(oscillator_microphone_script(microphone_hz))
    context.add_init_script(COUNT_MICROPHONE_REQUESTS)  # last: it wraps whatever came before
    context.set_default_timeout(CONNECT_TIMEOUT_MS)
    return context.new_page()


def ask_for_someone(page: Page, server: XesServerProcess, name: str, *,
                    text_only: bool = False, accept_text: bool = False) -> None:
    page.goto(server.http_url + "/")
    area = page.get_by_role("region", name="Talk to someone")
    area.get_by_label("Allow a direct connection with strangers").check()
    area.get_by_label("Text only").set_checked(text_only)
    if not text_only:  # a text-only user meets text chats anyway: the page disables the box
        area.get_by_label("Accept text chats").set_checked(accept_text)
    area.get_by_label("Display name").fill(name)
    area.get_by_role("button", name="Talk to someone").click()


def participants(page: Page) -> Any:
    return page.get_by_role("list", name="Participants")


def send(page: Page, text: str) -> None:
    wait_channels_open(page)
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def history(page: Page) -> Any:
    return page.get_by_role("list", name="Chat history")


def test_two_text_only_people_chat_and_no_microphone_is_ever_asked_for(
    chromium: Browser, server: XesServerProcess
) -> None:
    ada, bob = person(chromium), person(chromium)
    ask_for_someone(ada, server, "Ada", text_only=True)
    expect(ada.get_by_text("Looking for someone to chat with in text")).to_be_visible()
    ask_for_someone(bob, server, "Bob", text_only=True)
    for page, other in ((ada, "Bob"), (bob, "Ada")):
        expect(participants(page)).to_contain_text(other)
        expect(participants(page).get_by_text("Connected", exact=True)).to_have_count(1)
        expect(page.get_by_text("This is a text chat: no audio goes either way.")).to_be_visible()
        expect(page.locator("#match-status")).to_contain_text("Text chat with a stranger")
        expect(page.get_by_role("button", name="Mute")).to_be_hidden()
        expect(page.get_by_role("button", name="Hold to talk")).to_be_hidden()
    greeting, answer = f"hi {secrets.token_hex(8)}", f"hello {secrets.token_hex(8)}"
    send(ada, greeting)
    expect(history(bob).get_by_text(greeting)).to_be_visible()
    send(bob, answer)
    expect(history(ada).get_by_text(answer)).to_be_visible()
    for page in (ada, bob):
        assert page.evaluate("window.__microphoneRequests") == 0
        assert page.evaluate("window.xes.localStream()") is None
        assert page.evaluate(LINK_MEDIA) == [{
            "transceivers": 0, "sendingTracks": 0, "audioLines": [0, 0], "applicationLines": 1,
            "state": "connected",
        }]
    # The landing page with a text chat in progress stays clean for axe-core.
    assert axe_violations(ada) == []
    ada.get_by_role("button", name="Stop").click()
    expect(participants(bob)).not_to_contain_text("Ada")
    assert ada.evaluate("window.__microphoneRequests") == 0
    ada.context.close()
    bob.context.close()


def test_a_voice_user_meets_a_text_only_one_only_after_accepting_text_chats(
    chromium: Browser, server: XesServerProcess
) -> None:
    """Cy (text only) waits; Eve (voice, did not accept text) comes next and is not paired with
    her; Dan (voice, "Accept text chats") comes last and is: a text chat, his microphone open but
    not sent. Eve is still looking."""
    cy = person(chromium)
    eve, dan = person(chromium, microphone_hz=660.0), person(chromium, microphone_hz=880.0)
    ask_for_someone(cy, server, "Cy", text_only=True)
    expect(cy.get_by_text("Looking for someone to chat with in text")).to_be_visible()
    ask_for_someone(eve, server, "Eve")
    expect(eve.get_by_text("Looking for someone to talk to")).to_be_visible()
    ask_for_someone(dan, server, "Dan", accept_text=True)
    expect(participants(dan)).to_contain_text("Cy")
    expect(participants(dan)).to_contain_text("Text only")
    expect(dan.locator("#match-status")).to_contain_text(
        "Cy has no microphone, so your microphone is not sent.")
    expect(dan.get_by_text("This is a text chat: no audio goes either way.")).to_be_visible()
    expect(participants(cy)).to_contain_text("Dan")
    expect(participants(dan).get_by_text("Connected", exact=True)).to_have_count(1)
    words = f"typed {secrets.token_hex(8)}"
    send(dan, words)
    expect(history(cy).get_by_text(words)).to_be_visible()
    # Eve was never paired with Cy, though both waited together before Dan came.
    expect(eve.get_by_text("Looking for someone to talk to")).to_be_visible()
    assert eve.evaluate("window.xes.phase") == "queued"
    assert cy.evaluate("window.__microphoneRequests") == 0
    assert dan.evaluate("window.__microphoneRequests") == 1  # Dan talks to voice users too
    for page in (cy, dan):
        media = page.evaluate(LINK_MEDIA)
        assert [(link["transceivers"], link["sendingTracks"], link["audioLines"]) for link in media] == [
            (0, 0, [0, 0])]
    for page in (cy, eve, dan):
        page.context.close()
