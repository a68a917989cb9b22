"""The landing page's promises are honest: the encryption claim says what it cannot promise yet."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import XesServerProcess

pytestmark = pytest.mark.browser


def test_the_encryption_claim_says_what_a_compromised_server_could_do(
    xes_server: XesServerProcess, launch_browser: Any
) -> None:
    """Right after "end-to-end encrypted" the page says that a compromised server could slip into
    the key exchange and listen, unnoticed unless people compare the safety code ("Verify"), as
    docs/privacy.md promise 12 says."""
    page = launch_browser().new_page()
    page.goto(xes_server.http_url + "/")
    claim = page.get_by_text("end-to-end encrypted")
    expect(claim).to_be_visible()
    caveat = page.get_by_text("compromised server")
    expect(caveat).to_be_visible()
    for words in ("safety code", "in the middle", "listen in", "without either of you noticing",
                  "Verify"):
        expect(caveat).to_contain_text(words)
    # Next to the claim: the paragraph that follows it, not a footnote elsewhere.
    follows = claim.evaluate("(p) => p.nextElementSibling && p.nextElementSibling.textContent")
    assert "compromised server" in follows
