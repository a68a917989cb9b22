"""Real Chromium for tests: launch flags, tone WAVs, tone detection and ICE pair inspection.

Everything here drives the Debian Chromium (`/usr/bin/chromium`) through plain Playwright, so the
fixtures that use it decide when browsers start and stop. The comment by each flag below says why
it is there.

Typical use::

    with sync_playwright() as playwright:
        browser = launch_with_tone(playwright, tmp_path, 440)
        page = browser.new_page()
        ...
        heard = detect_tones(page, [660, 990], timeout=30)
        pairs = selected_pair_types(page)

`detect_tones` and `selected_pair_types` read the page's debug object `window.xes`
(`remoteStreams()` and `pcs()`, both Maps keyed by peer id), which the XES web client exposes.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, Playwright

from tests.support.waiting import poll

__all__ = [
    "CHROMIUM_PATH",
    "BASE_ARGS",
    "chromium_args",
    "write_tone_wav",
    "launch_chromium",
    "launch_with_tone",
    "detect_tones",
    "oscillator_microphone_script",
    "start_tone_listener",
    "tone_listener_script",
    "TONE_LISTENER_HEARD_JS",
    "TONE_LISTENER_STOP_JS",
    "tones_heard",
    "start_tone_monitor",
    "read_tone_monitor",
    "read_monitored_tones",
    "longest_silence",
    "selected_pair_types",
]

CHROMIUM_PATH = "/usr/bin/chromium"

# Flags every test browser gets. No network beyond loopback: DNS is answered "not found" inside
# Chromium (127.0.0.1 and localhost excepted, else even IP-literal URLs fail), and the background
# services that phone home are off.
BASE_ARGS: tuple[str, ...] = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # Without it a loopback-only machine offers no host candidate at all.
    "--allow-loopback-in-peer-connection",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
)

# Grants the microphone without a prompt. It is also what makes Chromium expose raw host IPs
# instead of mDNS names, which direct loopback calls need (media permission is what unlocks them,
# even for a page that never calls getUserMedia).
FAKE_UI_ARG = "--use-fake-ui-for-media-stream"


def chromium_args(
    *,
    fake_audio: Path | None = None,
    auto_grant_media: bool = True,
    extra: Iterable[str] = (),
) -> list[str]:
    """Command-line flags for one test Chromium process.

    Args:
        fake_audio: WAV file the fake microphone plays (looped) instead of Chromium's beep.
        auto_grant_media: Grant microphone permission without a prompt. Turn off to test denial.
        extra: More flags, appended last.
    """
    args = list(BASE_ARGS)
    if auto_grant_media:
        args.append(FAKE_UI_ARG)
    if fake_audio is not None:
        args.append(f"--use-file-for-fake-audio-capture={fake_audio}")
    args.extend(extra)
    return args


def write_tone_wav(directory: Path, frequency: float, seconds: float = 30.0) -> Path:
    """Write a 48 kHz mono 16-bit sine WAV with sox and return its path.

    Chromium loops the file, so the length only has to exceed one period of the detector's
    window; a long file avoids the click at the loop point.

    Raises:
        RuntimeError: If sox is not installed (a test must fail, never skip, without it).
    """
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is required to make test tones (apt-get install sox)")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"tone{frequency:g}.wav"
    subprocess.run(
        [sox, "-n", "-r", "48000", "-c", "1", "-b", "16", str(path),
         "synth", f"{seconds:g}", "sine", f"{frequency:g}", "vol", "0.5"],
        check=True,
        capture_output=True,
    )
    return path


def launch_chromium(
    playwright: Playwright,
    *,
    fake_audio: Path | None = None,
    auto_grant_media: bool = True,
    extra_args: Sequence[str] = (),
) -> Browser:
    """Launch one headless Debian Chromium process with the test flags.

    The fake-microphone file applies to the whole process, so peers that must send different
    tones need one browser each.
    """
    return playwright.chromium.launch(
        executable_path=CHROMIUM_PATH,
        headless=True,
        args=chromium_args(
            fake_audio=fake_audio, auto_grant_media=auto_grant_media, extra=extra_args
        ),
    )


def launch_with_tone(playwright: Playwright, directory: Path, frequency: float) -> Browser:
    """Launch a Chromium whose microphone plays a steady sine at `frequency` Hz."""
    return launch_chromium(playwright, fake_audio=write_tone_wav(directory, frequency))


# Two JavaScript functions, spliced into each in-page detector below (at `/*LOUDEST_BIN*/`):
# `loudestBin`, the loudest bin of an analyser's spectrum above 100 Hz, or -1 unless it is loud
# enough (`minDb`) and well above the spectrum's median (`minProminenceDb`); and `newProbe`, an
# unsmoothed analyser listening to one stream.
_LOUDEST_BIN_JS = """
  const loudestBin = (analyser, bins, lowestBin, minDb, minProminenceDb) => {
    analyser.getFloatFrequencyData(bins);
    let best = -Infinity;
    let bestBin = -1;
    const finite = [];
    for (let i = lowestBin; i < bins.length; i++) {
      const v = bins[i];
      if (Number.isFinite(v)) finite.push(v);
      if (v > best) { best = v; bestBin = i; }
    }
    if (bestBin < 0 || !(best > minDb) || finite.length === 0) return -1;
    finite.sort((a, b) => a - b);
    return best - finite[Math.floor(finite.length / 2)] >= minProminenceDb ? bestBin : -1;
  };
  const newProbe = (context, stream, fftSize) => {
    const analyser = context.createAnalyser();
    analyser.fftSize = fftSize;
    analyser.smoothingTimeConstant = 0;
    const source = context.createMediaStreamSource(stream);
    source.connect(analyser);
    return {stream, source, analyser, bins: new Float32Array(analyser.frequencyBinCount)};
  };
"""


def _with_loudest_bin(script: str) -> str:
    return script.replace("/*LOUDEST_BIN*/", _LOUDEST_BIN_JS)


# Runs in the page. For every remote stream in window.xes.remoteStreams() (new ones are picked up
# as they appear) an AnalyserNode finds the loudest bin every ~20 ms. A stream "delivers" an
# expected frequency once the loudest bin sat within `binTolerance` bins of it, `minHits` times,
# loud enough and well above the spectrum's median. Level thresholds are deliberately loose: the
# sender keeps echo cancellation, noise suppression and AGC on, which makes a steady tone about
# 20 dB quieter after a few seconds, but its frequency stays put.
_DETECT_TONES_JS = """
async ({expected, timeoutMs, binTolerance, minDb, minProminenceDb, minHits,
        streams = 'remoteStreams'}) => {
/*LOUDEST_BIN*/
  const context = new AudioContext();
  await context.resume();
  const fftSize = 8192;
  const binHz = context.sampleRate / fftSize;
  const lowestBin = Math.floor(100 / binHz);
  const probes = new Map();
  const deadline = performance.now() + timeoutMs;
  const heardAll = () => expected.every(
    (f) => [...probes.values()].some((p) => p.heard.has(f)));
  try {
    while (performance.now() < deadline) {
      for (const [id, stream] of window.xes[streams]()) {
        if (probes.has(id) || stream.getAudioTracks().length === 0) continue;
        probes.set(id, {...newProbe(context, stream, fftSize), hits: new Map(), heard: new Set()});
      }
      for (const probe of probes.values()) {
        const bestBin = loudestBin(probe.analyser, probe.bins, lowestBin, minDb, minProminenceDb);
        if (bestBin < 0) continue;
        const peakHz = bestBin * binHz;
        for (const f of expected) {
          if (Math.abs(peakHz - f) <= binTolerance * binHz) {
            const hits = (probe.hits.get(f) || 0) + 1;
            probe.hits.set(f, hits);
            if (hits >= minHits) probe.heard.add(f);
          }
        }
      }
      if (heardAll()) break;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    for (const probe of probes.values()) probe.source.disconnect();
    await context.close();
  }
  const result = {};
  for (const [id, probe] of probes) result[id] = [...probe.heard].sort((a, b) => a - b);
  return result;
}
"""
_DETECT_TONES_JS = _with_loudest_bin(_DETECT_TONES_JS)


def detect_tones(
    page: Page,
    expected_freqs: Iterable[float],
    timeout: float = 30.0,
    *,
    min_db: float = -90.0,
    min_prominence_db: float = 15.0,
    min_hits: int = 5,
    streams: str = "remoteStreams",
) -> dict[str, list[float]]:
    """Listen to each remote stream in `page` and report which expected tones each one carries.

    `streams` names the `window.xes` method giving the streams: "remoteStreams" (as received)
    or "heardStreams" (after the listener's per-person volume, as sent to the speakers).

    Returns as soon as every expected frequency was heard on some stream, or at `timeout`
    (seconds) with whatever was heard by then; the caller asserts on the result.

    Returns:
        {remote peer id: sorted expected frequencies heard on that peer's stream}. A peer whose
        stream exists but carries none of them maps to [].
    """
    result: dict[str, list[float]] = page.evaluate(
        _DETECT_TONES_JS,
        {
            "expected": [float(f) for f in expected_freqs],
            "timeoutMs": timeout * 1000,
            "binTolerance": 2,
            "minDb": min_db,
            "minProminenceDb": min_prominence_db,
            "minHits": min_hits,
            "streams": streams,
        },
    )
    return result


# An init script (run before the page's own scripts, on every document of a browser context)
# that replaces the microphone: getUserMedia answers with a real MediaStream whose track is an
# OscillatorNode at the given frequency. Chromium's fake-capture file is one per browser process,
# so this is how several contexts of one Chromium get distinct voices. Constraints are ignored (no
# echo cancellation or gain control to bend the tone). The AudioContext asks for large buffers
# ('playback'), so its real-time thread wakes rarely: a real microphone costs no AudioContext at
# all, and eight of these on two cores otherwise starve the pages' main threads. It is left on
# `window.__xesTestAudio` so a tone listener in the same page can share its audio thread.
_OSCILLATOR_MICROPHONE_JS = """
(() => {
  if (!navigator.mediaDevices) return;
  const frequency = %r;
  let oscillator = null;
  navigator.mediaDevices.getUserMedia = async (constraints) => {
    if (!constraints || !constraints.audio) {
      throw new DOMException('This test microphone only gives audio.', 'NotFoundError');
    }
    if (oscillator === null) {
      window.__xesTestAudio = new AudioContext({latencyHint: 'playback'});
      oscillator = window.__xesTestAudio.createOscillator();
      oscillator.frequency.value = frequency;
      oscillator.start();
    }
    await window.__xesTestAudio.resume();
    const gain = window.__xesTestAudio.createGain();
    gain.gain.value = 0.5;
    const destination = window.__xesTestAudio.createMediaStreamDestination();
    oscillator.connect(gain).connect(destination);
    return destination.stream;
  };
})();
"""


def oscillator_microphone_script(frequency: float) -> str:
    """JavaScript for `BrowserContext.add_init_script`: that context's microphone plays a steady
    sine at `frequency` Hz. The page still gets a real MediaStream from getUserMedia."""
    return _OSCILLATOR_MICROPHONE_JS % float(frequency)


# Runs in the page and keeps running: a timer that, a few times a second, looks at every remote
# stream in window.xes.remoteStreams() (new or replaced streams are picked up) and finds the
# loudest bin of a small FFT. Cheap on purpose, for pages with many streams: a 2,048-point FFT
# (23 Hz bins at 48 kHz) every 250 ms per stream, where one 8,192-point FFT every few tens of
# milliseconds on each of 56 streams is enough to starve two cores by itself. Acceptance is
# `detect_tones`'s: the peak within `binTolerance` bins of an expected tone, loud enough, well
# above the spectrum's median, `minHits` times. Results accumulate in
# window.__xesToneListener.heard(): {peer id: [expected frequencies heard on that stream]}.
_TONE_LISTENER_JS = """
({expected, fftSize, intervalMs, binTolerance, minDb, minProminenceDb, minHits}) => {
/*LOUDEST_BIN*/
  if (window.__xesToneListener) return;
  const context = window.__xesTestAudio ?? new AudioContext();
  context.resume().catch(() => {});
  const binHz = context.sampleRate / fftSize;
  const lowestBin = Math.floor(100 / binHz);
  const probes = new Map();
  const listen = () => {
    for (const [id, stream] of window.xes.remoteStreams()) {
      const known = probes.get(id);
      if ((known && known.stream === stream) || stream.getAudioTracks().length === 0) continue;
      if (known) known.source.disconnect();
      probes.set(id, {...newProbe(context, stream, fftSize), hits: new Map(), heard: new Set()});
    }
    for (const probe of probes.values()) {
      const bestBin = loudestBin(probe.analyser, probe.bins, lowestBin, minDb, minProminenceDb);
      if (bestBin < 0) continue;
      const peakHz = bestBin * binHz;
      for (const f of expected) {
        if (Math.abs(peakHz - f) <= binTolerance * binHz) {
          const hits = (probe.hits.get(f) || 0) + 1;
          probe.hits.set(f, hits);
          if (hits >= minHits) probe.heard.add(f);
        }
      }
    }
  };
  window.__xesToneListener = {
    timer: setInterval(listen, intervalMs),
    heard: () => {
      const result = {};
      for (const [id, probe] of probes) result[id] = [...probe.heard].sort((a, b) => a - b);
      return result;
    },
    stop: () => {
      clearInterval(window.__xesToneListener.timer);
      for (const probe of probes.values()) probe.source.disconnect();
    },
  };
}
"""
_TONE_LISTENER_JS = _with_loudest_bin(_TONE_LISTENER_JS)


def start_tone_listener(
    page: Page,
    expected_freqs: Iterable[float],
    *,
    fft_size: int = 2048,
    interval_ms: int = 250,
    min_db: float = -90.0,
    min_prominence_db: float = 15.0,
    min_hits: int = 3,
) -> None:
    """Start listening, in the background, for the expected tones on each of the page's remote
    streams, including streams that arrive later; read the results with `tones_heard`.

    Made for many streams at once (see the comment above its JavaScript); with 23 Hz bins and a
    two-bin tolerance, expected tones should be 100 Hz or more apart. Idempotent per document.
    """
    page.evaluate(*tone_listener_script(
        expected_freqs, fft_size=fft_size, interval_ms=interval_ms, min_db=min_db,
        min_prominence_db=min_prominence_db, min_hits=min_hits))


def tone_listener_script(
    expected_freqs: Iterable[float],
    *,
    fft_size: int = 2048,
    interval_ms: int = 250,
    min_db: float = -90.0,
    min_prominence_db: float = 15.0,
    min_hits: int = 3,
) -> tuple[str, dict[str, Any]]:
    """`start_tone_listener`'s script and its argument, for `page.evaluate` in either Playwright
    API (the benchmarks drive pages with the async one). Stop it with `TONE_LISTENER_STOP_JS`."""
    return _TONE_LISTENER_JS, {
        "expected": [float(f) for f in expected_freqs],
        "fftSize": fft_size,
        "intervalMs": interval_ms,
        "binTolerance": 2,
        "minDb": min_db,
        "minProminenceDb": min_prominence_db,
        "minHits": min_hits,
    }


# What the listener has heard so far ({peer id: [expected frequencies]}), and how to stop it (its
# timer and its analysers), so that a measurement afterwards sees the page's own work alone.
TONE_LISTENER_HEARD_JS = "window.__xesToneListener.heard()"
TONE_LISTENER_STOP_JS = "window.__xesToneListener.stop()"


def tones_heard(page: Page) -> dict[str, list[float]]:
    """What `start_tone_listener` has heard so far: {remote peer id: sorted expected frequencies
    heard on that peer's stream}; a peer whose stream carried none of them maps to []."""
    result: dict[str, list[float]] = page.evaluate(TONE_LISTENER_HEARD_JS)
    return result


# Runs in the page: every ~20 ms, for every stream of window.xes[streams](), one reading of
# which of `frequencies` (if any) is the loudest prominent bin, stamped with Date.now() (the
# machine's clock, which the test process shares); `heard` is whether it is the first of them. A
# short FFT window (2048 samples, ~43 ms at 48 kHz) so a tone that stops leaves the window
# quickly. The readings pile up in window.__xesToneMonitor.
_TONE_MONITOR_JS = """
async ({frequencies, streams, binTolerance, minDb, minProminenceDb}) => {
/*LOUDEST_BIN*/
  const context = new AudioContext();
  await context.resume();
  const fftSize = 2048;
  const binHz = context.sampleRate / fftSize;
  const lowestBin = Math.floor(100 / binHz);
  const probes = new Map();
  const readings = [];
  const read = () => {
    for (const [id, stream] of window.xes[streams]()) {
      const known = probes.get(id);
      if ((known && known.stream === stream) || stream.getAudioTracks().length === 0) continue;
      if (known) known.source.disconnect();  // a link made anew brings a new stream
      probes.set(id, newProbe(context, stream, fftSize));
    }
    const now = Date.now();
    for (const [id, probe] of probes) {
      const bestBin = loudestBin(probe.analyser, probe.bins, lowestBin, minDb, minProminenceDb);
      const tone = bestBin < 0 ? null : frequencies.find(
        (f) => Math.abs(bestBin * binHz - f) <= binTolerance * binHz) ?? null;
      readings.push({t: now, peer: id, heard: tone !== null && tone === frequencies[0], tone});
    }
  };
  window.__xesToneMonitor = {readings, timer: setInterval(read, 20), context};
}
"""
_TONE_MONITOR_JS = _with_loudest_bin(_TONE_MONITOR_JS)


def start_tone_monitor(
    page: Page,
    frequency: float | Iterable[float],
    *,
    streams: str = "remoteStreams",
    min_db: float = -90.0,
    min_prominence_db: float = 15.0,
) -> None:
    """Start recording, in `page`, timestamped readings of whether each stream carries `frequency`.

    Read them with `read_tone_monitor`. For timing how soon a tone starts or stops: each reading
    carries Date.now(), comparable with the test process's `time.time()`. Given several
    frequencies, each reading also says which of them the stream carried (`read_monitored_tones`),
    for pages hearing several people at once.
    """
    frequencies = [float(frequency)] if isinstance(frequency, int | float) else [
        float(f) for f in frequency]
    page.evaluate(
        _TONE_MONITOR_JS,
        {"frequencies": frequencies, "streams": streams, "binTolerance": 2,
         "minDb": min_db, "minProminenceDb": min_prominence_db},
    )


def read_tone_monitor(page: Page, peer_id: str | None = None) -> list[tuple[float, bool]]:
    """The readings so far, oldest first: (Date.now() in ms, tone heard), of one peer's stream
    (or of all streams when `peer_id` is None)."""
    readings: list[dict[str, Any]] = page.evaluate("window.__xesToneMonitor.readings")
    return [
        (float(reading["t"]), bool(reading["heard"]))
        for reading in readings
        if peer_id is None or reading["peer"] == peer_id
    ]


def read_monitored_tones(page: Page) -> dict[str, list[tuple[float, float | None]]]:
    """The readings so far, per stream (remote peer id), oldest first: (Date.now() in ms, which
    of the monitored frequencies the stream carried, or None)."""
    readings: list[dict[str, Any]] = page.evaluate("window.__xesToneMonitor.readings")
    result: dict[str, list[tuple[float, float | None]]] = {}
    for reading in readings:
        tone = reading["tone"]
        result.setdefault(str(reading["peer"]), []).append(
            (float(reading["t"]), None if tone is None else float(tone)))
    return result


def longest_silence(readings: Sequence[tuple[float, float | None]], expected: float,
                    since_ms: float = 0.0) -> tuple[float, float]:
    """The longest stretch of readings (from `since_ms` on) in which `expected` was not heard:
    from the first reading without it to the next reading with it (or the last reading), as
    (its length in ms, when it began in Date.now() ms). Only readings count, so a page too busy
    to take readings never passes for a silent one."""
    longest = (0.0, since_ms)
    silent_from: float | None = None
    last = since_ms
    for t, tone in readings:
        if t < since_ms:
            continue
        last = t
        if tone == expected:
            if silent_from is not None and t - silent_from > longest[0]:
                longest = (t - silent_from, silent_from)
            silent_from = None
        elif silent_from is None:
            silent_from = t
    if silent_from is not None and last - silent_from > longest[0]:
        longest = (last - silent_from, silent_from)
    return longest


_SELECTED_PAIRS_JS = """
async () => {
  const result = {};
  for (const [id, pc] of window.xes.pcs()) {
    const stats = await pc.getStats();
    let pairId = null;
    stats.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pairId = s.selectedCandidatePairId;
    });
    const pair = pairId ? stats.get(pairId) : null;
    if (!pair) { result[id] = null; continue; }
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    result[id] = [local ? local.candidateType : null, remote ? remote.candidateType : null];
  }
  return result;
}
"""


def selected_pair_types(page: Page) -> dict[str, tuple[str, str] | None]:
    """Candidate types of the selected ICE pair on each of the page's peer connections.

    Returns:
        {remote peer id: (local candidateType, remote candidateType)}, e.g. ("host", "host")
        for a direct loopback link or ("relay", "relay") through TURN; None while no pair is
        selected yet.
    """
    raw: dict[str, Any] = page.evaluate(_SELECTED_PAIRS_JS)
    return {
        peer_id: (str(types[0]), str(types[1])) if types else None
        for peer_id, types in raw.items()
    }


def wait_for_selected_pairs(
    page: Page, links: int, timeout_s: float
) -> dict[str, tuple[str, str] | None]:
    """`selected_pair_types` once the page has `links` links and each names its selected pair,
    or as they are after `timeout_s` (the caller asserts on the result).

    A wait, not a measurement: stats name a pair only once ICE has picked one, and on a starved
    machine a link that was up can lose its pair for a while (consent checks unanswered, then an
    ICE restart) and name none until ICE picks one again.
    """
    return poll(lambda: selected_pair_types(page),
                lambda pairs: len(pairs) == links and all(pairs.values()), timeout_s)


# An init script that records every `signal` the page sends and receives in
# `window.__xesSignalTrace` (direction, the other peer, what it carries, when), so that a link that
# never connects can be explained: a signal lost between the two pages, or one that arrived and was
# not acted on. Used by tests/browser/test_mesh8.py and bench/mesh_bench.py.
SIGNAL_TRACE_JS = """
(() => {
  const trace = [];
  window.__xesSignalTrace = trace;
  const started = performance.now();
  const what = (data) => data?.description ? data.description.type
    : data && 'candidate' in data ? (data.candidate ? 'candidate' : 'end-of-candidates') : '?';
  const ufrag = (data) => /a=ice-ufrag:(\\S+)/.exec(data?.description?.sdp ?? '')?.[1]
    ?? /ufrag (\\S+)/.exec(data?.candidate?.candidate ?? '')?.[1] ?? '';
  // For what we got: the offer an answer says it answers, and our link's state on arrival
  // (signalling state and the ICE ufrag of our current local description).
  const linkState = (peer) => {
    const pc = window.xes?.pcs?.().get(peer);
    if (!pc) return 'no link';
    const local = /a=ice-ufrag:(\\S+)/.exec(pc.localDescription?.sdp ?? '')?.[1] ?? '';
    return `${pc.signalingState}/${local}`;
  };
  const record = (direction, peer, data, seq) => trace.push(
    [Math.round(performance.now() - started), direction, peer, what(data), ufrag(data), seq ?? null,
     direction === 'got' ? `${data?.answers ?? ''}@${linkState(peer)}` : '']);
  const send = WebSocket.prototype.send;
  WebSocket.prototype.send = function (text) {
    try {
      const message = JSON.parse(text);
      if (message.type === 'signal') record('sent', message.to, message.data);
    } catch {}
    return send.call(this, text);
  };
  const Original = WebSocket;
  window.WebSocket = function (...args) {
    const socket = new Original(...args);
    socket.addEventListener('message', ({ data }) => {
      try {
        const message = JSON.parse(data);
        if (message.type === 'signal') record('got', message.from, message.data, message.seq);
      } catch {}
    });
    return socket;
  };
  window.WebSocket.prototype = Original.prototype;
  Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
})();
"""


# A link's safety code is checked over its data channel: once verified, the channel is open at
# both ends (a message sent then cannot be refused as "nobody is connected yet"), and, since the
# channel comes in a second offer once the voice flows, the link's signalling is over.
_LINKS_VERIFIED_JS = """(links) => Object.values(window.xes.verification()?.links ?? {})
  .filter((link) => link.state === 'verified').length >= links"""


def wait_channels_open(page: Page, links: int = 1) -> None:
    """Wait until at least `links` of the page's links have their data channel open."""
    page.wait_for_function(_LINKS_VERIFIED_JS, arg=links)
