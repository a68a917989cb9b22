"""A real man in the middle, and the safety codes that expose it.

The browsers load XES from a malicious signalling proxy in front of `xes serve`
(tests/support/mitm.py). For the link between Ada and Bob it rewrites the offers and answers so
that each browser does DTLS with an aiortc media relay of the proxy's, which forwards the audio
both ways and even forges the attestations. The call works and both hear each other (the attack
is invisible without the code), but the two browsers show different codes. In a three-person room
where only that link is intercepted, Ada and Bob show different room codes and Cy, who hears
both ends' honest attestations over untouched links, raises an alert.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_call import join, open_new_room
from tests.browser.test_verify import CODE_TIMEOUT_S, person, verification
from tests.conftest import XesServerProcess
from tests.support.browser import start_tone_listener, tones_heard
from tests.support.mitm import MitmProxy
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.timeout(360)]

TONE = {"Ada": 440.0, "Bob": 660.0, "Cy": 990.0}
TONE_TIMEOUT_S = 120.0


def ids(page: Page) -> dict[str, str]:
    names = {peer["name"]: peer["id"] for peer in page.evaluate("window.xes.peers()")}
    me: dict[str, str] = page.evaluate("window.xes.me")
    return names | {me["name"]: me["id"]}


def everyone_hears_everyone(pages: dict[str, Page]) -> None:
    """Each page hears every other person's own frequency, on that person's stream."""
    missing: list[str] = []

    def heard() -> bool:
        missing.clear()
        for name, page in pages.items():
            by_id = tones_heard(page)
            for other, other_id in ids(page).items():
                if other != name and TONE[other] not in by_id.get(other_id, []):
                    missing.append(f"{name} does not hear {other}")
        return not missing

    # Waits, does not measure: the middleman decodes and re-encodes in Python on a busy machine.
    wait_for(heard, lambda: f"everyone hears everyone's tone; still: {missing}; links: "
             f"{ {name: link_report(page) for name, page in pages.items()} }",
             timeout=TONE_TIMEOUT_S)


def link_report(page: Page) -> dict[str, list[object]]:
    """Per peer id: the connection state and the audio packets received so far (diagnostics)."""
    report: dict[str, list[object]] = page.evaluate(
        """async () => {
          const out = {};
          for (const [id, pc] of window.xes.pcs()) {
            let packets = 0;
            (await pc.getStats()).forEach((r) => {
              if (r.type === 'inbound-rtp' && r.kind === 'audio') packets += r.packetsReceived;
            });
            out[id] = [pc.connectionState, packets];
          }
          return out;
        }""")
    return report


def sdp_fingerprint(sdp: str) -> str:
    return next(line for line in sdp.splitlines() if line.startswith("a=fingerprint:"))


def test_an_intercepted_link_shows_different_codes_at_its_two_ends(
    server: XesServerProcess, chromium: Browser
) -> None:
    with MitmProxy(server.http_url, intercept=("Ada", "Bob")) as proxy:
        pages = {name: person(chromium, TONE[name]) for name in ("Ada", "Bob")}
        room_url = open_new_room(pages["Ada"], proxy)
        for name, page in pages.items():
            join(page, room_url, name)
            # Listening from the start: the middleman's relay is the first thing a busy
            # machine starves, so catch the tones while they flow.
            start_tone_listener(page, TONE.values())
        # The call works, and both hear each other: through the middleman's relay.
        everyone_hears_everyone(pages)
        assert proxy.intercepted == 1 and proxy.errors == []
        # Each browser's DTLS peer is the middleman: the fingerprint it was given is not the
        # other browser's.
        descriptions = {name: page.evaluate(
            "(() => { const pc = [...window.xes.pcs().values()][0];"
            " return [pc.localDescription.sdp, pc.remoteDescription.sdp]; })()")
            for name, page in pages.items()}
        assert sdp_fingerprint(descriptions["Ada"][1]) != sdp_fingerprint(descriptions["Bob"][0])
        assert sdp_fingerprint(descriptions["Bob"][1]) != sdp_fingerprint(descriptions["Ada"][0])

        wait_for(lambda: all((verification(page) or {}).get("room") for page in pages.values()),
                 "both pages have a code", timeout=CODE_TIMEOUT_S)
        ada, bob = verification(pages["Ada"]), verification(pages["Bob"])
        [ada_link] = ada["links"].values()
        [bob_link] = bob["links"].values()
        assert ada_link["state"] == bob_link["state"] == "verified"  # nothing looks wrong ...
        assert ada_link["words"] != bob_link["words"]  # ... but the codes differ
        assert ada["room"] != bob["room"]
        print(f"\nintercepted link: Ada reads {' '.join(ada_link['words'])!r}, "
              f"Bob reads {' '.join(bob_link['words'])!r}")
        assert proxy.errors == []
        for page in pages.values():
            page.context.close()


def test_one_intercepted_link_in_three_changes_the_room_code_and_the_third_person_is_alerted(
    server: XesServerProcess, chromium: Browser
) -> None:
    with MitmProxy(server.http_url, intercept=("Ada", "Bob")) as proxy:
        pages = {name: person(chromium, TONE[name]) for name in ("Ada", "Bob", "Cy")}
        room_url = open_new_room(pages["Ada"], proxy)
        for name, page in pages.items():
            join(page, room_url, name)
            # Listening from the start: the middleman's relay is the first thing a busy
            # machine starves, so catch the tones while they flow.
            start_tone_listener(page, TONE.values())
        everyone_hears_everyone(pages)
        assert proxy.intercepted == 1 and proxy.errors == []

        # Cy hears Ada's and Bob's honest attestations of their link, and they disagree.
        expect(pages["Cy"].get_by_role("alert")).to_contain_text(
            "Safety check failed: Ada and Bob see different keys for their link",
            timeout=CODE_TIMEOUT_S * 1000)
        wait_for(lambda: all((verification(page) or {}).get("room") for page in pages.values()),
                 "every page has a room code", timeout=CODE_TIMEOUT_S)
        pages["Cy"].get_by_role("button", name="Verify").click()
        expect(pages["Cy"].locator("#room-code")).to_contain_text("mismatch found")
        state = {name: verification(page) for name, page in pages.items()}
        room = {name: tuple(s["room"]) for name, s in state.items()}
        assert len(set(room.values())) == 3, room  # one person reads it aloud: others differ
        # The forged attestations keep Ada and Bob from noticing on their own ...
        for name in ("Ada", "Bob"):
            assert state[name]["contradictions"] == []
            expect(pages[name].locator("#alerts")).to_be_empty()
        # ... their link's codes differ, and the untouched links' codes match at both ends.
        who = {name: ids(page) for name, page in pages.items()}
        assert (state["Ada"]["links"][who["Ada"]["Bob"]]["words"]
                != state["Bob"]["links"][who["Bob"]["Ada"]]["words"])
        for name in ("Ada", "Bob"):
            assert (state[name]["links"][who[name]["Cy"]]["words"]
                    == state["Cy"]["links"][who["Cy"][name]]["words"])
        shown = ", ".join(f"{name}: {' '.join(code)}" for name, code in room.items())
        print(f"\nroom codes with the Ada-Bob link intercepted: {shown}")
        assert proxy.errors == []
        for page in pages.values():
            page.context.close()
