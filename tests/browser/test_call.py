"""The browser client in real Chromium against a real `xes serve`.

Each browser's fake microphone plays its own tone, so "every page hears the others" is proved by
frequency, and "peer to peer" by the selected ICE candidate pair (host on both ends: no relay and
no server in the audio path).
"""

from __future__ import annotations

import json
import re
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol

import pytest
from playwright.sync_api import Page, expect
from websockets.sync.client import connect

from tests.support.browser import detect_tones, selected_pair_types

pytestmark = pytest.mark.browser

TONES = (440.0, 660.0, 990.0)
NAMES = ("Ada", "Bob", "Cy")
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
ROOM_URL = re.compile(r"/r/[A-Za-z0-9_-]{22}$")
# Generous: the machine is shared and has 2 cores. These wait; they do not measure.
CONNECT_TIMEOUT_MS = 45_000
TONE_TIMEOUT_S = 45.0
SILENCE_PROOF_S = 5.0


class _Server(Protocol):
    http_url: str


def collect_errors(page: Page) -> list[str]:
    """A list that fills with the page's uncaught exceptions and console errors (CSP included)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


def open_new_room(page: Page, server: _Server) -> str:
    """Go to the landing page, press "New room", return the room link it leads to."""
    page.goto(server.http_url + "/")
    page.get_by_role("link", name="New room").click()
    page.wait_for_url(ROOM_URL)
    return page.url


def join(page: Page, room_url: str, name: str) -> None:
    """Open the room link, enter a display name, press Join and wait to be in the call."""
    if page.url != room_url:
        page.goto(room_url)
    page.get_by_label("Display name").fill(name)
    page.get_by_role("button", name="Join").click()
    expect(page.get_by_role("list", name="Participants")).to_be_visible(timeout=CONNECT_TIMEOUT_MS)


def tones_by_name(
    page: Page, expected: dict[str, float], timeout: float = TONE_TIMEOUT_S
) -> dict[str, list[float]]:
    """Which expected tones the page hears, keyed by the display name of the peer sending them.

    Returns as soon as all are heard, so `timeout` only costs time when one is missing.
    """
    heard = detect_tones(page, expected.values(), timeout=timeout)
    peers: list[dict[str, Any]] = page.evaluate("window.xes.peers()")
    names = {peer["id"]: peer["name"] for peer in peers}
    return {names.get(peer_id, peer_id): tones for peer_id, tones in heard.items()}


def test_three_browsers_hear_each_other_directly_and_one_leaves(
    xes_server: _Server, launch_tone_browser: Any, artifacts_dir: Path
) -> None:
    """Three Chromiums in one room: each hears the other two tones over host-to-host links, the
    list says "Direct"; after one leaves, the other two see it go and still hear each other."""
    pages = [launch_tone_browser(tone).new_page() for tone in TONES]
    page_errors = [collect_errors(page) for page in pages]
    room_url = open_new_room(pages[0], xes_server)
    for page, name in zip(pages, NAMES, strict=True):
        join(page, room_url, name)

    for page in pages:
        participants = page.get_by_role("list", name="Participants")
        for name in NAMES:
            expect(participants).to_contain_text(name, timeout=CONNECT_TIMEOUT_MS)
        expect(participants.get_by_text("Direct", exact=True)).to_have_count(
            2, timeout=CONNECT_TIMEOUT_MS
        )

    for page, own_name in zip(pages, NAMES, strict=True):
        others = {
            name: tone for name, tone in zip(NAMES, TONES, strict=True) if name != own_name
        }
        assert tones_by_name(page, others) == {name: [tone] for name, tone in others.items()}

    for page in pages:
        pairs = selected_pair_types(page)
        assert len(pairs) == 2
        assert set(pairs.values()) == {("host", "host")}, pairs

    # The audio-level RTP extension was negotiated on no link: SRTP leaves it in clear text, so it
    # would tell a relay how loudly each person speaks.
    for page in pages:
        descriptions: list[str] = page.evaluate(
            "[...window.xes.pcs().values()].flatMap("
            "(pc) => [pc.currentRemoteDescription.sdp, pc.currentLocalDescription.sdp])"
        )
        assert len(descriptions) == 4
        for sdp in descriptions:
            assert "a=fingerprint:" in sdp and "a=crypto:" not in sdp
        remote_sdps = descriptions[0::2]
        assert not any(AUDIO_LEVEL_URI in sdp for sdp in remote_sdps)

    pages[0].screenshot(path=str(artifacts_dir / "room-call.png"), full_page=True)

    pages[2].get_by_role("button", name="Leave").click()
    expect(pages[2].get_by_role("button", name="Join")).to_be_visible()
    for page in pages[:2]:
        participants = page.get_by_role("list", name="Participants")
        expect(participants).not_to_contain_text(NAMES[2], timeout=CONNECT_TIMEOUT_MS)
        expect(participants.get_by_role("listitem")).to_have_count(2)

    assert tones_by_name(pages[0], {NAMES[1]: TONES[1]}) == {NAMES[1]: [TONES[1]]}
    assert tones_by_name(pages[1], {NAMES[0]: TONES[0]}) == {NAMES[0]: [TONES[0]]}
    # No script error and no CSP violation anywhere along the way.
    assert page_errors == [[], [], []]


def test_denied_microphone_is_explained(xes_server: _Server, launch_browser: Any) -> None:
    """Without microphone permission, Join shows how to fix it instead of failing silently."""
    browser = launch_browser(auto_grant_media=False)
    context = browser.new_context()
    context.clear_permissions()
    page = context.new_page()
    room_url = open_new_room(page, xes_server)
    join_button = page.get_by_role("button", name="Join")
    page.get_by_label("Display name").fill("Ada")
    join_button.click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Microphone access was denied", timeout=CONNECT_TIMEOUT_MS)
    expect(alert).to_contain_text("allow the microphone")
    expect(join_button).to_be_enabled()
    assert page.url == room_url
    assert page.evaluate("window.xes.phase") == "idle"


def test_ninth_joiner_is_told_the_room_is_full(xes_server: _Server, launch_browser: Any) -> None:
    """Eight members (plain WebSocket clients: a full room needs no audio) leave no place for a
    ninth; the page says so and stays out of the call."""
    page = launch_browser().new_page()
    room_url = open_new_room(page, xes_server)
    room_id = room_url.rsplit("/", 1)[1]
    with ExitStack() as members:
        for number in range(8):
            member = members.enter_context(connect(xes_server.http_url.replace("http", "ws") + "/ws"))
            assert json.loads(member.recv(timeout=10))["type"] == "hello"
            member.send(json.dumps({"type": "join", "room": room_id, "name": f"M{number}"}))
            assert json.loads(member.recv(timeout=10))["type"] == "joined"
        page.get_by_label("Display name").fill("Ninth")
        page.get_by_role("button", name="Join").click()
        expect(page.get_by_role("alert")).to_contain_text(
            "This room is full", timeout=CONNECT_TIMEOUT_MS
        )
        expect(page.get_by_role("button", name="Join")).to_be_enabled()
        expect(page.get_by_role("list", name="Participants")).to_be_hidden()


def test_mute_silences_the_microphone_and_unmute_brings_it_back(
    xes_server: _Server, launch_tone_browser: Any
) -> None:
    """Mute is a toggle (aria-pressed) that stops the tone reaching the other side without
    renegotiating; the speaking indicators follow who is audible."""
    ada, bob = (launch_tone_browser(tone).new_page() for tone in TONES[:2])
    room_url = open_new_room(ada, xes_server)
    join(ada, room_url, "Ada")
    join(bob, room_url, "Bob")
    assert tones_by_name(bob, {"Ada": TONES[0]}) == {"Ada": [TONES[0]]}
    bob_list = bob.get_by_role("list", name="Participants")
    ada_on_bob = bob_list.get_by_role("listitem").filter(has_text="Ada")
    expect(ada_on_bob).to_have_class(re.compile(r"\bis-speaking\b"), timeout=CONNECT_TIMEOUT_MS)
    signalling_states = ada.evaluate("[...window.xes.pcs().values()].map((pc) => pc.signalingState)")

    mute = ada.get_by_role("button", name=re.compile(r"^Mute"))
    mute.click()
    unmute = ada.get_by_role("button", name=re.compile(r"^Unmute"))
    expect(unmute).to_have_attribute("aria-pressed", "true")
    expect(ada_on_bob).not_to_have_class(re.compile(r"\bis-speaking\b"), timeout=CONNECT_TIMEOUT_MS)
    # Listening for a tone that must not come: a few seconds of silence is the proof.
    assert tones_by_name(bob, {"Ada": TONES[0]}, timeout=SILENCE_PROOF_S) == {"Ada": []}
    # Ada still hears Bob: muting is one-way.
    assert tones_by_name(ada, {"Bob": TONES[1]}) == {"Bob": [TONES[1]]}

    unmute.click()
    expect(ada.get_by_role("button", name=re.compile(r"^Mute"))).to_have_attribute(
        "aria-pressed", "false"
    )
    assert tones_by_name(bob, {"Ada": TONES[0]}) == {"Ada": [TONES[0]]}
    assert ada.evaluate(
        "[...window.xes.pcs().values()].map((pc) => pc.signalingState)"
    ) == signalling_states == ["stable"]


def test_copy_link_puts_the_room_link_on_the_clipboard(
    xes_server: _Server, launch_browser: Any
) -> None:
    """The shareable link is shown and "Copy link" copies exactly it."""
    context = launch_browser().new_context(permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    room_url = open_new_room(page, xes_server)
    expect(page.get_by_label("Share this link to invite people")).to_have_value(room_url)
    page.get_by_role("button", name="Copy link").click()
    expect(page.get_by_text("Link copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == room_url


def test_display_name_and_hide_my_ip_are_remembered(
    xes_server: _Server, launch_browser: Any
) -> None:
    """Both settings survive a reload (localStorage). With the setting on and a server that has no
    TURN relay, the page says relay mode is unavailable instead of silently going direct."""
    page = launch_browser().new_page()
    room_url = open_new_room(page, xes_server)
    relay_only = page.get_by_label("Hide my IP (always relay)")
    relay_only.check()
    join(page, room_url, "Grace")
    expect(page.get_by_role("alert")).to_contain_text("Relay mode is unavailable")
    page.get_by_role("button", name="Leave").click()
    page.reload()
    expect(page.get_by_label("Display name")).to_have_value("Grace")
    expect(relay_only).to_be_checked()
    relay_only.uncheck()
    page.reload()
    expect(page.get_by_label("Hide my IP (always relay)")).not_to_be_checked()
