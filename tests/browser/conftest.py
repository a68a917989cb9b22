"""Fixtures for the real-browser tests: one Playwright per session, Chromium per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.browser.test_call import CONNECT_TIMEOUT_MS
from tests.conftest import XesServerProcess, launch_xes_server
from tests.support.browser import launch_chromium, launch_with_tone, oscillator_microphone_script

ROOT = Path(__file__).resolve().parents[2]

# Counts every RTCPeerConnection the page constructs for a link (the links use the global
# constructor): one that is given a description. The page's warm-up at load makes one that it
# closes at once, unused, which is not a link.
COUNT_PEER_CONNECTIONS_JS = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native) return;
  window.__xesPcsConstructed = 0;
  const counted = new WeakSet();
  const count = (pc) => {
    if (counted.has(pc)) return;
    counted.add(pc);
    window.__xesPcsConstructed += 1;
  };
  window.RTCPeerConnection = class extends Native {
    setLocalDescription(...args) {
      count(this);
      return super.setLocalDescription(...args);
    }
    setRemoteDescription(...args) {
      count(this);
      return super.setRemoteDescription(...args);
    }
  };
})();
"""


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """The Playwright driver, shared by the tests of one module.

    Not session-wide: sync Playwright keeps an event loop running while it lives, and every
    asyncio test collected after it (server, peer, turn) would then fail to start its own.
    """
    with sync_playwright() as driver:
        yield driver


@pytest.fixture
def launch_tone_browser(
    playwright: Playwright, tmp_path: Path
) -> Iterator[Callable[[float], Browser]]:
    """Factory: a Chromium whose microphone plays a sine at the given frequency; all closed after."""
    browsers: list[Browser] = []

    def launch(frequency: float) -> Browser:
        browser = launch_with_tone(playwright, tmp_path / "tones", frequency)
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        browser.close()


@pytest.fixture
def launch_browser(playwright: Playwright) -> Iterator[Callable[..., Browser]]:
    """Factory: a Chromium with `launch_chromium`'s keyword arguments; all closed after."""
    browsers: list[Browser] = []

    def launch(**kwargs: object) -> Browser:
        browser = launch_chromium(playwright, **kwargs)  # type: ignore[arg-type]
        browsers.append(browser)
        return browser

    yield launch
    for browser in browsers:
        browser.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """test-artifacts/ at the repository root (gitignored): screenshots for humans to look at."""
    path = ROOT / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="module")
def server() -> Iterator[XesServerProcess]:
    """One `xes serve` for a whole module (the default grace and settings)."""
    process = launch_xes_server()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def chromium(playwright: Playwright) -> Iterator[Browser]:
    """One Chromium for a whole module: each person is a context of their own."""
    browser = launch_chromium(playwright)
    yield browser
    browser.close()


@pytest.fixture
def tone_person(chromium: Browser) -> Iterator[Callable[[float], Page]]:
    """Factory: a new context of the module's Chromium whose microphone plays `frequency`
    (each person its own storage, page, links and tone); the contexts are closed after the test.
    Each page counts the RTCPeerConnections it makes for links in `window.__xesPcsConstructed`."""
    contexts = []

    def make(frequency: float) -> Page:
        context = chromium.new_context()
        context.add_init_script(oscillator_microphone_script(frequency))
        context.add_init_script(COUNT_PEER_CONNECTIONS_JS)
        context.set_default_timeout(CONNECT_TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()
