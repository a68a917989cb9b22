"""The Python peer and the real browser client (Chromium) in one room hear each other.

The browser's fake microphone plays one tone, the Python peer sends another from a file; the
Python side finds the browser's frequency by FFT, the page finds the Python peer's with an
AnalyserNode (tests/support/browser.py). Both join orders are covered, because they exercise
different sides of the aiortc rules: when Python joins second it makes the offer; when the
browser joins second, the browser offers to a peer that cannot roll back.

Playwright's async API is used so the Python peer can run in the same event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.peer.test_mesh import new_room_id, wait_connected
from tests.peer.tones import wait_for_tone
from tests.support import browser as browser_support
from xes.peer import Peer, RemotePeer, Route, open_file_source

pytestmark = pytest.mark.browser

BROWSER_TONE = 440.0
PYTHON_TONE = 660.0


@pytest.fixture
async def chromium(tmp_path: Path) -> AsyncIterator[Browser]:
    """One headless Chromium whose microphone plays BROWSER_TONE."""
    tone = browser_support.write_tone_wav(tmp_path / "browser-tone", BROWSER_TONE)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=browser_support.CHROMIUM_PATH, headless=True,
            args=browser_support.chromium_args(fake_audio=tone))
        try:
            yield browser
        finally:
            await browser.close()


async def browser_join(page: Page, room_url: str, name: str) -> None:
    await page.goto(room_url)
    await page.get_by_label("Display name").fill(name)
    await page.get_by_role("button", name="Join").click()


async def browser_hears(page: Page, frequency: float, timeout: float = 30) -> list[float]:
    """Frequencies among [frequency] that the page hears on any remote stream."""
    result: dict[str, list[float]] = await page.evaluate(
        browser_support._DETECT_TONES_JS,
        {"expected": [frequency], "timeoutMs": timeout * 1000, "binTolerance": 2,
         "minDb": -90.0, "minProminenceDb": 15.0, "minHits": 5, "streams": "remoteStreams"})
    return sorted({f for heard in result.values() for f in heard})


async def browser_pair_types(page: Page) -> list[tuple[str, str] | None]:
    raw: dict[str, Any] = await page.evaluate(browser_support._SELECTED_PAIRS_JS)
    return [tuple(types) if types else None for types in raw.values()]  # type: ignore[misc]


async def only_member(peer: Peer, timeout: float = 30) -> RemotePeer:
    async with asyncio.timeout(timeout):
        while not peer.members:
            await asyncio.sleep(0.01)
    return next(iter(peer.members.values()))


async def test_python_joins_a_browser(
    xes_server: Any, chromium: Browser, tones: Callable[[float], Path], capsys: Any
) -> None:
    """Browser first, Python second (Python offers): both hear each other, directly."""
    room = new_room_id()
    page = await chromium.new_page()
    await browser_join(page, f"{xes_server.http_url}/r/{room}", "Ada")
    await page.get_by_role("list", name="Participants").wait_for(timeout=30_000)
    async with Peer(xes_server.http_url, name="Py",
                    audio=open_file_source(tones(PYTHON_TONE), loop=True)) as peer:
        joined_at = time.monotonic()
        ada = (await peer.join(room)).peers[0]
        heard_at = await wait_for_tone(ada.listen(), BROWSER_TONE, timeout=30)
        await wait_connected(peer, 1)
        assert await browser_hears(page, PYTHON_TONE) == [PYTHON_TONE]
        assert ada.route is Route.DIRECT
        assert await browser_pair_types(page) == [("host", "host")]
        assert ada.connected_at is not None
        with capsys.disabled():
            print(f"\n[browser first, python joins] python join->connected "
                  f"{(ada.connected_at - joined_at) * 1000:.0f} ms, join->first tone heard "
                  f"by python {(heard_at - joined_at) * 1000:.0f} ms")


async def test_browser_joins_a_python_peer(
    xes_server: Any, chromium: Browser, tones: Callable[[float], Path], capsys: Any
) -> None:
    """Python first, browser second (the browser offers to a peer that cannot roll back):
    both hear each other, directly, and the page shows the Python peer by name."""
    room = new_room_id()
    async with Peer(xes_server.http_url, name="Py",
                    audio=open_file_source(tones(PYTHON_TONE), loop=True)) as peer:
        await peer.join(room)
        page = await chromium.new_page()
        await page.goto(f"{xes_server.http_url}/r/{room}")
        await page.get_by_label("Display name").fill("Ada")
        clicked_at = time.monotonic()
        await page.get_by_role("button", name="Join").click()
        ada = await only_member(peer)
        heard_at = await wait_for_tone(ada.listen(), BROWSER_TONE, timeout=30)
        await wait_connected(peer, 1)
        hear_started = time.monotonic()
        assert await browser_hears(page, PYTHON_TONE) == [PYTHON_TONE]
        browser_heard_within = time.monotonic() - clicked_at
        assert ada.route is Route.DIRECT
        assert await browser_pair_types(page) == [("host", "host")]
        participants = page.get_by_role("list", name="Participants")
        assert "Py" in (await participants.inner_text())
        assert ada.connected_at is not None
        with capsys.disabled():
            print(f"\n[python first, browser joins] from the Join click: python side connected "
                  f"{(ada.connected_at - clicked_at) * 1000:.0f} ms, python hears the browser "
                  f"{(heard_at - clicked_at) * 1000:.0f} ms; the page confirmed the python tone "
                  f"by {browser_heard_within * 1000:.0f} ms (detector started at "
                  f"{(hear_started - clicked_at) * 1000:.0f} ms)")
