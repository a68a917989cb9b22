"""Talking to a stranger from the landing page: "Talk to someone", then "Next" and "Stop".

The default test server has no relay, so these strangers tick "Allow a direct connection with
strangers" first, as the page asks them to; what happens when they do not is tested here too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS, tones_by_name
from tests.conftest import XesServerProcess

pytestmark = pytest.mark.browser


ALLOW_DIRECT = "Allow a direct connection with strangers"
NO_RELAY_NOTICE = "This server has no relay"


def ask_for_someone(page: Page, server: XesServerProcess, name: str, *,
                    allow_direct: bool = False) -> None:
    """Open the landing page and queue for a stranger under `name` (ticking the direct-connection
    consent first if `allow_direct`; otherwise leaving it as this browser remembers it)."""
    page.goto(server.http_url + "/")
    area = page.get_by_role("region", name="Talk to someone")
    if allow_direct:
        area.get_by_label(ALLOW_DIRECT).check()
    area.get_by_label("Display name").fill(name)
    area.get_by_label("Interests").fill("chess, music")
    area.get_by_role("button", name="Talk to someone").click()


def record_frames(page: Page) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every message the page sends and receives on its WebSocket, from now on."""
    sent: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []

    def keep(into: list[dict[str, Any]]) -> Callable[[str | bytes], None]:
        return lambda payload: into.append(json.loads(payload))

    def on_websocket(ws: Any) -> None:
        ws.on("framesent", keep(sent))
        ws.on("framereceived", keep(received))

    page.on("websocket", on_websocket)
    return sent, received


def test_two_strangers_meet_hear_each_other_then_next_and_stop(
    xes_server: XesServerProcess, launch_tone_browser: Any
) -> None:
    """Two people asking to talk are paired and hear each other; "Next" ends it for both and
    queues the one who pressed it again; "Stop" leaves the queue."""
    ada, bob = (launch_tone_browser(tone).new_page() for tone in (440.0, 660.0))
    ask_for_someone(ada, xes_server, "Ada", allow_direct=True)
    expect(ada.get_by_text("Looking for someone to talk to")).to_be_visible(
        timeout=CONNECT_TIMEOUT_MS
    )
    ask_for_someone(bob, xes_server, "Bob", allow_direct=True)

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
    ask_for_someone(ada, xes_server, "Ada", allow_direct=True)
    expect(ada.get_by_text("Looking for someone to talk to")).to_be_visible(
        timeout=CONNECT_TIMEOUT_MS
    )
    ask_for_someone(bob, xes_server, "Bob", allow_direct=True)
    expect(bob.get_by_role("list", name="Participants")).to_contain_text(
        "Ada", timeout=CONNECT_TIMEOUT_MS
    )
    assert tones_by_name(bob, {"Ada": 440.0}) == {"Ada": [440.0]}

    bob.get_by_role("button", name="Next").click()
    expect(bob.get_by_text("Looking for someone to talk to")).to_be_visible(
        timeout=CONNECT_TIMEOUT_MS
    )
    ask_for_someone(cy, xes_server, "Cy", allow_direct=True)
    for page, other in ((bob, "Cy"), (cy, "Bob")):
        participants = page.get_by_role("list", name="Participants")
        expect(participants).to_contain_text(other, timeout=CONNECT_TIMEOUT_MS)
    assert tones_by_name(bob, {"Cy": 990.0}) == {"Cy": [990.0]}
    assert tones_by_name(cy, {"Bob": 660.0}) == {"Bob": [660.0]}
    expect(ada.get_by_role("list", name="Participants")).not_to_contain_text("Bob")


def test_without_a_relay_strangers_must_both_consent_before_anything_is_queued(
    xes_server: XesServerProcess, launch_tone_browser: Any
) -> None:
    """On a server with no relay the page says, before queueing, that only strangers who also
    allow a direct connection can be met and that they will see your IP address; "Talk to
    someone" waits for that consent, and even a submitted form queues nothing without it. Once
    both consent they meet and hear each other."""
    ada, bob = (launch_tone_browser(tone).new_page() for tone in (440.0, 660.0))
    frames = {}
    for page, name in ((ada, "Ada"), (bob, "Bob")):
        frames[name] = record_frames(page)
        page.goto(xes_server.http_url + "/")
        area = page.get_by_role("region", name="Talk to someone")
        expect(area.get_by_text(NO_RELAY_NOTICE)).to_be_visible()
        expect(area.get_by_text(NO_RELAY_NOTICE)).to_contain_text("will see your IP address")
        expect(area.get_by_label(ALLOW_DIRECT)).not_to_be_checked()
        expect(area.get_by_role("button", name="Talk to someone")).to_be_disabled()
        area.get_by_label("Display name").fill(name)
        # A submit that gets past the button (a keyboard Enter, a script) queues nothing either.
        page.evaluate("document.getElementById('match-form').requestSubmit()")
    for page, name in ((ada, "Ada"), (bob, "Bob")):
        # Focus moves to the consent box once the submit was handled (microphone, socket).
        expect(page.get_by_label(ALLOW_DIRECT)).to_be_focused()
        sent, received = frames[name]
        assert [m for m in sent if m["type"] == "match"] == []
        # No joined, no signal: only the connection's own hello and identity.
        assert [m["type"] for m in received if m["type"] not in ("hello", "identified")] == []
        assert page.evaluate("window.xes.phase") == "idle"

    for page in (ada, bob):
        area = page.get_by_role("region", name="Talk to someone")
        area.get_by_label(ALLOW_DIRECT).check()
        area.get_by_role("button", name="Talk to someone").click()
    for page, other in ((ada, "Bob"), (bob, "Ada")):
        expect(page.get_by_role("list", name="Participants")).to_contain_text(
            other, timeout=CONNECT_TIMEOUT_MS)
    assert tones_by_name(ada, {"Bob": 660.0}) == {"Bob": [660.0]}
    assert tones_by_name(bob, {"Ada": 440.0}) == {"Ada": [440.0]}
    for name in ("Ada", "Bob"):
        [match] = [m for m in frames[name][0] if m["type"] == "match"]
        assert match["direct"] is True


def test_on_the_default_install_strangers_who_did_not_consent_never_see_each_others_address(
    start_xes_server: Callable[..., XesServerProcess], launch_tone_browser: Any
) -> None:
    """`xes serve` as installed (coturn present, no --turn-url) runs its own relay: two strangers
    who did not tick the direct-connection box meet through it, hear each other, and every
    candidate either receives is the relay's."""
    server = start_xes_server(builtin_relay=True)
    ada, bob = (launch_tone_browser(tone).new_page() for tone in (440.0, 660.0))
    frames = {"Ada": record_frames(ada), "Bob": record_frames(bob)}
    for page, name in ((ada, "Ada"), (bob, "Bob")):
        ask_for_someone(page, server, name)
    for page in (ada, bob):
        expect(page.get_by_text("they do not see your IP address")).to_be_visible(
            timeout=CONNECT_TIMEOUT_MS)
    assert tones_by_name(ada, {"Bob": 660.0}) == {"Bob": [660.0]}
    assert tones_by_name(bob, {"Ada": 440.0}) == {"Ada": [440.0]}
    for name, (_sent, received) in frames.items():
        candidates = []
        for message in received:
            data = message.get("data", {}) if message["type"] == "signal" else {}
            if "description" in data:
                candidates += re.findall(r"^a=candidate:.*$", data["description"]["sdp"], re.M)
            elif data.get("candidate"):
                candidates.append(data["candidate"]["candidate"])
        assert candidates, f"{name} received no candidates at all"
        assert {re.search(r" typ (\w+)", c)[1] for c in candidates} == {"relay"}, candidates  # type: ignore[index]
