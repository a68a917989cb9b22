"""The client's pure modules, run in Chromium as the page loads them (no build step, no Node).

Checks the parts that mirror docs/protocol.md: a human sentence for every error code in the
contract, validation of server messages, and the SDP filter that keeps speech levels off the wire.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page

from tests.conftest import XesServerProcess

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
ROOM = "R" * 22
PEER = "P" * 22


@pytest.fixture
def page(xes_server: XesServerProcess, launch_browser: Any) -> Page:
    """The landing page, loaded (so its modules resolve exactly as in production)."""
    page: Page = launch_browser().new_page()
    page.goto(xes_server.http_url + "/")
    return page


def contract_error_codes() -> list[str]:
    """The codes in the "Error codes" table of docs/protocol.md."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text.split("## Error codes", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z-]+)` \|", section, flags=re.MULTILINE)


def test_every_contract_error_code_has_its_own_sentence(page: Page) -> None:
    """No protocol error reaches the user as a bare code."""
    codes = contract_error_codes()
    assert len(codes) >= 16
    sentences: dict[str, str] = page.evaluate(
        """async (codes) => {
          const protocol = await import('/static/protocol.js');
          return Object.fromEntries(codes.map((code) => [code, protocol.describeError({code})]));
        }""",
        codes,
    )
    for code, sentence in sentences.items():
        assert f"({code})" not in sentence, (code, sentence)  # not the generic fallback
        assert sentence.endswith("."), (code, sentence)
    assert sentences["room-full"].startswith("This room is full")


def test_server_messages_are_validated(page: Page) -> None:
    """Well-formed messages pass; broken ones raise ProtocolError instead of reaching the app."""
    joined = {
        "type": "joined", "room": ROOM, "you": PEER, "host": PEER,
        "peers": [{"id": "Q" * 22, "name": "Ada", "polite": True}],
        "rules": {"locked": False, "lobby": False, "password": False, "max_peers": 8},
        "ice_servers": [], "ice_expires_at": None, "ice_transport_policy": "all",
        "match": False, "a_field_from_the_future": 1,
    }
    broken = [
        "not json",
        "[1, 2]",
        '{"no": "type"}',
        '{"type": "no-such-type"}',
        '{"type": "hello", "protocol": 1, "peer": "short"}',
        '{"type": "signal", "from": "' + PEER + '", "data": "a string"}',
        '{"type": "peer-joined", "peer": {"id": "' + PEER + '", "name": "Bo"}}',
    ]
    result: dict[str, Any] = page.evaluate(
        """async ({joined, broken}) => {
          const protocol = await import('/static/protocol.js');
          const verdict = (text) => {
            try { protocol.parseServerMessage(text); return 'ok'; }
            catch (error) { return error.name; }
          };
          return {joined: verdict(JSON.stringify(joined)), broken: broken.map(verdict)};
        }""",
        {"joined": joined, "broken": broken},
    )
    assert result == {"joined": "ok", "broken": ["ProtocolError"] * len(broken)}


def test_audio_level_extension_is_stripped_and_nothing_else(page: Page) -> None:
    """Only the ssrc-audio-level extmap line goes; other extensions and lines stay."""
    sdp = "\r\n".join([
        "v=0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time",
        "a=fingerprint:sha-256 AA:BB",
        "",
    ])
    stripped: str = page.evaluate(
        """async (sdp) => (await import('/static/negotiation.js')).stripAudioLevel(sdp)""", sdp
    )
    assert stripped == sdp.replace(
        "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n", ""
    )


def test_display_names_follow_the_contract_limits(page: Page) -> None:
    """1-64 characters after trimming, no control characters."""
    verdicts: list[Any] = page.evaluate(
        """async (names) => {
          const protocol = await import('/static/protocol.js');
          return names.map((name) => protocol.checkName(name));
        }""",
        ["  Ada  ", "", "   ", "x" * 64, "x" * 65, "A\u0007da", "Zoë 🎧"],
    )
    assert [v["ok"] for v in verdicts] == [True, False, False, True, False, False, True]
    assert verdicts[0]["name"] == "Ada"
