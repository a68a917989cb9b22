"""A deploy nobody notices: `xes serve` restarted with SIGTERM in the middle of a browser call.

The server writes its snapshot and closes every socket with 1012; a new process on the same port
and data directory reads it, and the pages resume their sessions: same peer ids, same room, same
host, the same RTCPeerConnections, and the tones never stop.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.browser import test_rules_ui as rules_ui
from tests.browser.test_call import CONNECT_TIMEOUT_MS, join, open_new_room, tones_by_name
from tests.conftest import XesServerProcess
from tests.support.browser import read_tone_monitor, start_tone_monitor

pytestmark = pytest.mark.browser

LOST = "The connection to the server is being restored"
# docs: the bound for what a listener may notice across a restart.
MAX_GAP_S = 1.0


def longest_gap(readings: list[tuple[float, bool]], since_ms: float, until_ms: float) -> float:
    """The longest time (s) between two readings that heard the tone, within the window."""
    heard = [t for t, tone in readings if tone and since_ms <= t <= until_ms]
    assert heard, "the tone was never heard in the window"
    edges = [since_ms, *heard, until_ms]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False)) / 1000


def test_sigterm_restart_mid_call_is_not_heard_and_nobody_leaves(
    start_xes_server: Callable[..., XesServerProcess], launch_tone_browser: Any, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    server = start_xes_server(args=["--data-dir", str(data_dir)])
    ada, bob = (launch_tone_browser(tone).new_page() for tone in (440.0, 660.0))
    room_url = open_new_room(ada, server)
    join(ada, room_url, "Ada")
    join(bob, room_url, "Bob")
    for page in (ada, bob):
        expect(page.get_by_role("list", name="Participants")).to_contain_text(
            "Direct", timeout=CONNECT_TIMEOUT_MS)
    assert tones_by_name(ada, {"Bob": 660.0}) == {"Bob": [660.0]}
    assert tones_by_name(bob, {"Ada": 440.0}) == {"Ada": [440.0]}
    ids = {page: page.evaluate("window.xes.peers().map((p) => p.id)") for page in (ada, bob)}
    for page in (ada, bob):  # marks the RTCPeerConnections: a new one would not carry it
        page.evaluate("for (const pc of window.xes.pcs().values()) pc.__beforeRestart = true")
    start_tone_monitor(ada, 660.0)
    start_tone_monitor(bob, 440.0)
    host_badge = ada.get_by_role("list", name="Participants").get_by_text("host", exact=True)

    before_ms = time.time() * 1000
    assert server.stop() == 0  # SIGTERM: snapshot, 1012 to both pages, exit
    start_xes_server(args=["--port", str(server.port), "--data-dir", str(data_dir)])
    for page in (ada, bob):
        expect(page.get_by_text(LOST)).to_have_count(0, timeout=CONNECT_TIMEOUT_MS)
    time.sleep(2.0)  # listen on after the resume too
    after_ms = time.time() * 1000

    for page, other in ((ada, "Bob"), (bob, "Ada")):
        assert page.evaluate("window.xes.peers().map((p) => p.id)") == ids[page]
        assert page.evaluate(
            "[...window.xes.pcs().values()].every((pc) => pc.__beforeRestart === true)")
        assert page.get_by_role("list", name="Participants").get_by_text(other, exact=True).count() == 1
    expect(host_badge).to_have_count(1)  # nobody else became host meanwhile
    gaps = {name: longest_gap(read_tone_monitor(page), before_ms, after_ms)
            for name, page in (("Ada", ada), ("Bob", bob))}
    print(f"longest silence across the restart: {gaps}")
    assert all(gap < MAX_GAP_S for gap in gaps.values()), gaps


def test_sigkill_the_room_comes_back_with_its_password_and_its_host(
    start_xes_server: Callable[..., XesServerProcess], launch_browser: Callable[..., Browser],
    tmp_path: Path,
) -> None:
    """A crash saves no session: the pages join afresh. The host's page proves itself with the
    host key it kept, so the role is its own again, and the password still holds."""
    data_dir = tmp_path / "data"
    server = start_xes_server(args=["--data-dir", str(data_dir)])
    room_url = f"{server.http_url}/r/{secrets.token_urlsafe(16)}"
    browser = launch_browser()
    ada, bob, cy = (browser.new_context().new_page() for _ in range(3))
    for page in (ada, bob, cy):
        page.set_default_timeout(CONNECT_TIMEOUT_MS)
    rules_ui.join(ada, room_url, "Ada")
    rules_ui.settings(ada).get_by_label("Room password").fill("open sesame")
    rules_ui.settings(ada).get_by_role("button", name="Set password").click()
    expect(rules_ui.rules(ada)).to_contain_text("Password set")
    rules_ui.press_join(bob, room_url, "Bob")
    expect(bob.get_by_role("alert")).to_contain_text("This room has a password")
    rules_ui.join(bob, room_url, "Bob", password="open sesame")

    server.process.kill()
    server.process.wait(10)
    start_xes_server(args=["--port", str(server.port), "--data-dir", str(data_dir)])
    for page in (ada, bob):
        expect(page.get_by_text(LOST)).to_have_count(0)
        expect(rules_ui.rules(page)).to_contain_text("Password set")
        expect(rules_ui.entry(page, "Ada")).to_contain_text("host")
        expect(rules_ui.entry(page, "Bob")).not_to_contain_text("host")
    rules_ui.press_join(cy, room_url, "Cy")
    expect(cy.get_by_role("alert")).to_contain_text("This room has a password")
