"""The largest room: eight people in a full mesh (28 direct links), each hearing all seven others,
and a ninth told the room is full.

Eight people are eight contexts of one Chromium: each context has its own storage, its own page and
its own peer connections, and its own microphone (an oscillator at that person's frequency, put in
place of getUserMedia). Eight browser *processes* would starve a 2-core machine; eight contexts
share one network and one audio service and do not, so this runs in the main suite on every CI run.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS, join, open_new_room
from tests.conftest import XesServerProcess
from tests.support.browser import (
    SIGNAL_TRACE_JS,
    oscillator_microphone_script,
    start_tone_listener,
    tones_heard,
    wait_for_selected_pairs,
)
from tests.support.waiting import wait_for

# Measured on 2 cores: 89 s from the first Join to the eighth person hearing everyone before the
# level meters asked for 'playback' latency, about 30 s after it (with other work running beside).
# The bound leaves room for a busy machine; it only costs time on failure.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

# The uplink budget of a full room (src/xes/web/quality.js, README "Call quality"): our voice to
# 7 others in at most 250 kbit/s, counted as getStats counts it (RTP payload + RTP headers).
UPLINK_BUDGET_KBPS = 250.0
# How long the outbound byte counters are watched for the bitrate.
BITRATE_WINDOW_S = 5.0
# The Opus cap per link in a room of eight (quality.js: the budget shared by 7 links, less headers).
EIGHT_PEOPLE_OPUS_BPS = 24_000

# 180 Hz or more apart: far beyond the tone listener's 2-bin (47 Hz) tolerance.
TONES = (440.0, 620.0, 830.0, 1070.0, 1310.0, 1550.0, 1790.0, 2030.0)
NAMES = tuple(f"P{n}" for n in range(1, len(TONES) + 1))
TONE_OF = dict(zip(NAMES, TONES, strict=True))
# How long one newcomer may take until everyone present hears everyone. The seventh and eighth
# (six and seven new links while all others keep talking) are the slow ones: 5 s and 15 s measured
# (14 s and 31 s before the meters' 'playback' latency). On CI's starved two cores the eighth once
# took 120 s, one link on its third attempt, so the wait is longer than that: it waits, it does not
# measure (bench/ does).
SETTLE_TIMEOUT_S = 240.0

# Each page's console warnings and errors (a link whose set-up failed says why there), by page.
_CONSOLE: dict[Page, list[str]] = {}


# Each peer connection's state changes (connection, ICE, signalling), with when, in
# `pc.__xesStates`: how a link that names no pair got there.
_STATE_TRACE_JS = """
(() => {
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Original {
    constructor(...args) {
      super(...args);
      this.__xesStates = [];
      for (const [event, field] of [['connectionstatechange', 'connectionState'],
          ['iceconnectionstatechange', 'iceConnectionState'],
          ['signalingstatechange', 'signalingState']]) {
        this.addEventListener(event, () => this.__xesStates.push(
          `${Math.round(performance.now())} ${field} ${this[field]}`));
      }
    }
  };
})();
"""

# Both ends of a link: ICE candidates, candidate pairs, the ufrags of each description.
_LINK_DETAIL_JS = """
async (peerId) => {
  const pc = window.xes.pcs().get(peerId);
  if (!pc) return 'no link';
  const stats = await pc.getStats();
  const lines = [];
  const ufrag = (sdp) => /a=ice-ufrag:(\\S+)/.exec(sdp ?? '')?.[1];
  lines.push(`local ufrag ${ufrag(pc.localDescription?.sdp)}, remote ufrag`
    + ` ${ufrag(pc.remoteDescription?.sdp)}, gathering ${pc.iceGatheringState}`);
  // The media sections and BUNDLE group of each description: a section left out of the
  // group gets a transport of its own, with its own ICE state.
  const shape = (d) => `${d?.type}: ` + (d?.sdp ?? '').split('\\r\\n')
    .filter((l) => /^(m=|a=group:|a=mid:|a=ice-ufrag:|a=setup:)/.test(l)).join(' | ');
  lines.push(`local ${shape(pc.localDescription)}`, `remote ${shape(pc.remoteDescription)}`);
  stats.forEach((r) => {
    if (r.type === 'local-candidate' || r.type === 'remote-candidate') {
      lines.push(`${r.type} ${r.candidateType} ${r.protocol} ${r.address}:${r.port} (${r.id})`);
    } else if (r.type === 'candidate-pair') {
      lines.push(`pair ${r.localCandidateId}->${r.remoteCandidateId} ${r.state}`
        + ` nominated=${r.nominated} requests ${r.requestsSent}/${r.requestsReceived}`
        + ` responses ${r.responsesSent}/${r.responsesReceived}`);
    } else if (r.type === 'transport') {
      lines.push(`transport ${r.id} ice ${r.iceState} dtls ${r.dtlsState} role ${r.iceRole}`
        + ` selected ${r.selectedCandidatePairId} bytes ${r.bytesSent}/${r.bytesReceived}`);
    } else if (r.type === 'inbound-rtp' || r.type === 'outbound-rtp') {
      lines.push(`${r.type} ${r.kind} bytes ${r.bytesReceived ?? r.bytesSent} (${r.transportId})`);
    }
  });
  lines.push(`states: ${(pc.__xesStates ?? []).join(', ')}`);
  const alerts = [...document.querySelectorAll('[role=alert]')].map((a) => a.textContent);
  return lines.join('\\n') + '\\nalerts: ' + JSON.stringify(alerts);
}
"""


def peer_ids(pages: dict[str, Page]) -> dict[str, str | None]:
    """Each person's peer id (None before they joined), by display name."""
    return {name: page.evaluate("window.xes?.me?.id") for name, page in pages.items()}


def names_by_id(pages: dict[str, Page]) -> dict[str | None, str]:
    """Each person's display name, by peer id."""
    return {peer: name for name, peer in peer_ids(pages).items()}


def explain_link(pages: dict[str, Page], name: str, other: str) -> str:
    """What both ends of the link between `name` and `other` know, and the signals between them."""
    ids = peer_ids(pages)
    parts = []
    for a, b in ((name, other), (other, name)):
        parts.append(f"--- {a} toward {b}:\n" + str(pages[a].evaluate(_LINK_DETAIL_JS, ids[b])))
        trace = pages[a].evaluate("window.__xesSignalTrace")
        parts.append("\n".join(str(entry) for entry in trace if entry[2] == ids[b]))
    return "\n".join(parts)


def signal_summary(pages: dict[str, Page], name: str) -> str:
    """Per other person, what `name` sent and got: offers, answers and candidates per ICE ufrag
    (a second ufrag is an ICE restart; a repeated offer shows as a count above one)."""
    names = names_by_id(pages)
    counts: dict[str, dict[tuple[str, str, str], int]] = {}
    for _, direction, peer, what, ufrag, _, state in pages[name].evaluate("window.__xesSignalTrace"):
        # An answer also shows the offer it answers and our link's state when it came.
        key = (direction, what, f"{ufrag}{' ' + state if what == 'answer' else ''}")
        per_peer = counts.setdefault(names.get(peer, peer), {})
        per_peer[key] = per_peer.get(key, 0) + 1
    return "\n".join(
        [f"  {name}/{other}: " + ", ".join(f"{d} {w}[{u}]×{c}" for (d, w, u), c in sorted(seen.items()))
         for other, seen in sorted(counts.items())]
        + [f"  {n} console: {line}" for n, page in pages.items() for line in _CONSOLE.get(page, [])])


def person(browser: Browser, frequency: float) -> Page:
    """A new person: a fresh context of the shared Chromium whose microphone plays `frequency`."""
    context = browser.new_context()
    context.add_init_script(oscillator_microphone_script(frequency))
    context.add_init_script(SIGNAL_TRACE_JS)
    context.add_init_script(_STATE_TRACE_JS)
    # Generous: eight people share two cores. These wait; they do not measure.
    context.set_default_timeout(CONNECT_TIMEOUT_MS)
    page = context.new_page()
    lines = _CONSOLE.setdefault(page, [])
    page.on("console", lambda message: lines.append(f"{message.type}: {message.text}")
            if message.type in ("warning", "error") else None)
    return page


def heard_by_name(page: Page) -> dict[str, list[float]]:
    """The tones this page hears, keyed by the display name of the person sending each stream."""
    heard = tones_heard(page)
    peers: list[dict[str, Any]] = page.evaluate("window.xes.peers()")
    names = {peer["id"]: peer["name"] for peer in peers}
    return {names.get(peer_id, peer_id): tones for peer_id, tones in heard.items()}


def link_states(page: Page) -> dict[str, str]:
    """Each link's connection, ICE and signalling states, keyed by the other person's display
    name, and the state and clock of the page's microphone (for failure messages)."""
    states: dict[str, str] = page.evaluate(
        "({...Object.fromEntries(window.xes.peers().map((peer) => [peer.name,"
        " ((pc) => pc ? `${pc.connectionState} (ICE ${pc.iceConnectionState}, signalling"
        " ${pc.signalingState})` : 'no link')(window.xes.pcs().get(peer.id))])),"
        " microphone: `${window.__xesTestAudio?.state} at ${window.__xesTestAudio?.currentTime}`})")
    return states


def outbound_audio_bytes(page: Page) -> dict[str, tuple[int, float]]:
    """Per link (other person's id), audio bytes sent so far (RTP payload plus RTP headers) and
    the time of that count, in ms, on the clock of the stats themselves."""
    sent: dict[str, tuple[int, float]] = page.evaluate(
        """async () => {
          const result = {};
          for (const [id, pc] of window.xes.pcs()) {
            let bytes = 0;
            let at = 0;
            (await pc.getStats()).forEach((report) => {
              if (report.type === 'outbound-rtp' && report.kind === 'audio') {
                bytes += report.bytesSent + (report.headerBytesSent ?? 0);
                at = report.timestamp;
              }
            });
            result[id] = [bytes, at];
          }
          return result;
        }""")
    return sent


def outbound_kbps(pages: dict[str, Page], seconds: float) -> dict[str, dict[str, float]]:
    """Each person's outbound audio bitrate per link over about `seconds`, in kbit/s.

    Each link's rate is its own byte count over its own stats' clock: the pages are read one
    after another, so one window timed around all of them would credit the first page read with
    seconds it did not have (a link at its cap then reads above it)."""
    before = {name: outbound_audio_bytes(page) for name, page in pages.items()}
    time.sleep(seconds)
    after = {name: outbound_audio_bytes(page) for name, page in pages.items()}
    rates: dict[str, dict[str, float]] = {}
    for name in pages:
        rates[name] = {}
        for peer, (bytes_after, at_after) in after[name].items():
            bytes_before, at_before = before[name].get(peer, (0, at_after - seconds * 1000))
            # Bits per millisecond are kbit/s.
            rates[name][peer] = (bytes_after - bytes_before) * 8 / (at_after - at_before)
    return rates


def audio_caps(page: Page) -> dict[str, list[int | None]]:
    """Each link's audio sender caps (`maxBitrate` of each encoding, None where unset), keyed by
    the other person's display name; [] for a link with no negotiated audio encoding yet."""
    caps: dict[str, list[int | None]] = page.evaluate(
        """() => Object.fromEntries(window.xes.peers().map((peer) => {
             const pc = window.xes.pcs().get(peer.id);
             const senders = pc ? pc.getSenders().filter((s) => s.track?.kind === 'audio') : [];
             return [peer.name, senders.flatMap((sender) => sender.getParameters().encodings
               .map((encoding) => encoding.maxBitrate ?? null))];
           }))""")
    return caps


def all_capped(caps: dict[str, list[int | None]], bitrate: int) -> bool:
    """Whether every link of `audio_caps` sends its audio with exactly this cap."""
    return len(caps) == 7 and all(
        link and all(cap == bitrate for cap in link) for link in caps.values())


def expected_heard(name: str, present: list[str]) -> dict[str, list[float]]:
    """Each other person present, with exactly their own tone."""
    return {other: [TONE_OF[other]] for other in present if other != name}


def test_eight_people_full_mesh_and_a_ninth_is_refused(
    xes_server: XesServerProcess, launch_browser: Any
) -> None:
    browser: Browser = launch_browser()
    pages = {name: person(browser, TONE_OF[name]) for name in NAMES}
    room_url = open_new_room(pages[NAMES[0]], xes_server)

    # People arrive one after another, as in life; each newcomer's links settle (everyone present
    # hears everyone) before the next arrives, so two cores never set up 28 DTLS handshakes at once.
    present: list[str] = []
    settle_times: dict[str, float] = {}
    started = time.monotonic()
    for name, page in pages.items():
        arrived = time.monotonic()
        join(page, room_url, name)
        start_tone_listener(page, TONES)
        present.append(name)
        deadline = arrived + SETTLE_TIMEOUT_S
        waiting = list(present)
        while waiting and time.monotonic() < deadline:
            waiting = [n for n in waiting if heard_by_name(pages[n]) != expected_heard(n, present)]
            if waiting:
                time.sleep(0.5)
        settle_times[name] = time.monotonic() - arrived
        print(f"{name} ({len(present)} present): everyone hears everyone after "
              f"{settle_times[name]:.1f} s")
        if settle_times[name] > 15:  # slow: say which links needed what
            print(signal_summary(pages, name))
        if waiting:  # every signal of each link that never carried its voice
            for n in waiting:
                for other, tones in expected_heard(n, present).items():
                    if heard_by_name(pages[n]).get(other) != tones:
                        print(explain_link(pages, n, other))
        assert not waiting, "\n".join(
            f"{n} hears {heard_by_name(pages[n])}, expected {expected_heard(n, present)};"
            f" links {link_states(pages[n])}"
            for n in waiting)
    print(f"eight people, 56 directed tones heard: {time.monotonic() - started:.1f} s in all")

    # All 56 directed tones, each on the stream of the person who sends it.
    for name, page in pages.items():
        assert heard_by_name(page) == expected_heard(name, list(NAMES))
    # All 28 links direct, host to host: by getStats on both ends, and in the page's own words.
    # On starved cores a link that carried its voice can lose its pair for a while (consent
    # checks unanswered, then an ICE restart), and the tone check cannot see it: what the
    # listener heard adds up. CI once saw a link name no pair for 45 s after all 56 tones, so
    # each page is waited for as a newcomer is.
    waited = time.monotonic()
    for name, page in pages.items():
        pairs = wait_for_selected_pairs(page, links=7, timeout_s=SETTLE_TIMEOUT_S)
        unpaired = [peer for peer, pair in pairs.items() if pair is None]
        names = names_by_id(pages) if unpaired else {}
        for peer in unpaired:  # both ends of a link that names no pair, for the failure
            print(explain_link(pages, name, names.get(peer, peer)))
        assert len(pairs) == 7 and set(pairs.values()) == {("host", "host")}, (
            name, pairs, link_states(page))
        expect(page.get_by_role("list", name="Participants").get_by_text("Direct", exact=True)
               ).to_have_count(7, timeout=CONNECT_TIMEOUT_MS)
    print(f"28 links direct, host to host, on both ends: read in {time.monotonic() - waited:.1f} s")

    # Each link's outbound audio bitrate: Opus at 24 kbit/s per link for 8 people (plus RTP
    # headers), so 7 links stay within the uplink budget. The tones never pause, so DTX never
    # lowers it: this is the worst case.
    # Measured once every sender carries its cap: a link's cap follows its set-up (and a
    # renegotiation) by up to a few seconds on a starved machine, and a window that straddles
    # that moment would judge the link's earlier, larger share.
    waited = time.monotonic()
    for name, page in pages.items():
        def capped(page: Page = page) -> bool:
            return all_capped(audio_caps(page), EIGHT_PEOPLE_OPUS_BPS)

        def caps_and_links(name: str = name, page: Page = page) -> str:
            return f"{name}'s caps {audio_caps(page)}; links {link_states(page)}"

        wait_for(capped, caps_and_links, timeout=SETTLE_TIMEOUT_S)
    print(f"every sender carries its cap: read in {time.monotonic() - waited:.1f} s")
    rates = outbound_kbps(pages, BITRATE_WINDOW_S)
    for name, links in rates.items():
        print(f"{name} sends " + ", ".join(f"{kbps:.1f}" for kbps in links.values())
              + f" kbit/s per link, {sum(links.values()):.1f} kbit/s in all")
    for name, links in rates.items():
        assert len(links) == 7, (name, links)
        assert all(kbps <= UPLINK_BUDGET_KBPS / 7 for kbps in links.values()), (name, links)
        assert sum(links.values()) <= UPLINK_BUDGET_KBPS, (name, links)
        assert all(kbps > 8 for kbps in links.values()), ("every link carries voice", name, links)

    # A ninth is refused, visibly, and the eight are undisturbed.
    ninth = person(browser, 2270.0)
    ninth.goto(room_url)
    ninth.get_by_label("Display name").fill("Ninth")
    ninth.get_by_role("button", name="Join").click()
    expect(ninth.get_by_role("alert")).to_contain_text("full", timeout=CONNECT_TIMEOUT_MS)
    for name, page in pages.items():
        peers: list[dict[str, Any]] = page.evaluate("window.xes.peers()")
        assert sorted(peer["name"] for peer in peers) == sorted(set(NAMES) - {name})
