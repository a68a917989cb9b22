"""Scenario 5: browser join-to-first-audio on loopback, XES against a bare page on a bare relay.

Two headless Chromium processes, each with a fake microphone playing its own tone (440 Hz for the
one already in the room, 880 Hz for the newcomer). Per call: both open the room page (not timed),
the first joins, then the newcomer presses Join and the clock starts. The figure is the time from
that click until both pages hear each other's tone on a remote stream (call_ms).

One clock for everything: `performance.timeOrigin + performance.now()` on both pages (one machine).
An init script, the same for both pages and not part of either, marks each step as it happens by
watching the browser APIs the pages call: getUserMedia resolving (microphone), the WebSocket
opening (socket), `joined`, the offer sent and the answer received, ICE connected, DTLS
connected; and on the member's page: `peer-joined`, the offer received, the answer sent. It also
counts the page's own work: AudioContexts created, getStats calls, WebSocket messages and DOM
mutation records, split into what happened during the call (from the newcomer's click until both
hear each other) and before it (loading the page, whose HTML parse alone is hundreds of mutation
records, and the member's own join). So a difference between the pages is located at a step, not
guessed.

The click includes everything a user waits for. Both pages run the same detector (an AnalyserNode
with fftSize 2048, ~43 ms windows, polled every 10 ms, three hits in a row), so its own delay is
the same for both. XES and bare calls alternate (one of each per repetition, order rotating), so
the ratio is taken inside each repetition. Each call is watched by the noise check
(bench/noise.py): a disturbed call is made again, a bounded number of times.

"direct": host candidates on 127.0.0.1. "relayed": "relay only" ticked on both pages, so audio
goes through a local coturn (TURN REST credentials from each server). Both servers are given the
same TURN server in both cases, so candidate gathering is the same work.

Usage: python bench/browser_bench.py --calls 10 --json out.json [--servers xes,bare]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from figures import Figures  # noqa: E402
from noise import NoiseLimits, NoiseProbe  # noqa: E402
from tests.support.browser import chromium_args, write_tone_wav  # noqa: E402

FIRST_TONE, NEWCOMER_TONE = 440.0, 880.0
CALL_TIMEOUT_S = 30.0
# The steps of the timeline, in the order a call goes through them, per page.
# The first candidate each way says when ICE could start checking: between the answer and "ICE
# connected" each page waits for the other's candidates (or its checks).
NEWCOMER_STEPS = ["click", "microphone", "socket open", "joined", "peer connection",
                  "negotiationneeded", "offer made", "offer set", "offer sent", "candidate sent",
                  "answer received", "candidate received",
                  "ICE connected", "DTLS connected", "remote track", "first audio"]
MEMBER_STEPS = ["peer-joined", "offer received", "peer connection", "offer set as remote",
                "answer set", "answer sent", "candidate received", "candidate sent",
                "ICE connected", "DTLS connected", "remote track", "first audio"]
STEPS = [f"newcomer: {s}" for s in NEWCOMER_STEPS] + [f"member: {s}" for s in MEMBER_STEPS]
MARKS_JS = ("() => ({marks: window.__bench.marks, counts: window.__bench.counts,"
            " before: window.__bench.before})")
# Taken on both pages just before the newcomer's click: the page's work during the call is what
# the counters add after it (loading the page and the member's own join come before).
SNAPSHOT_JS = "() => { window.__bench.before = {...window.__bench.counts}; }"

# Added to every page before its own scripts (both pages alike): marks each step on one clock and
# counts the page's own work. It only observes: every wrapped API behaves exactly as before.
INSTRUMENT_JS = r"""
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const marks = [];
  const counts = { audioContexts: 0, getStats: 0, wsReceived: 0, wsSent: 0, domMutations: 0,
                   longTasks: 0, longTaskMs: 0 };
  // Every occurrence (bounded): the timeline takes each step's first one after the click, so a
  // page's warm-up before it (XES makes and closes a connection at load) is not the call's.
  const mark = (name) => { if (marks.length < 2000) marks.push([name, now()]); };
  const RealAudioContext = window.AudioContext;
  Object.defineProperty(window, '__bench', { value: { marks, counts, mark, now, RealAudioContext } });
  const gum = MediaDevices.prototype.getUserMedia;
  MediaDevices.prototype.getUserMedia = function (...args) {
    mark('getUserMedia called');
    return gum.apply(this, args).then((stream) => { mark('microphone'); return stream; });
  };
  const describe = (text) => {
    try {
      const m = JSON.parse(text);
      if (m.type !== 'signal') return m.type;
      if (m.data && m.data.description) return m.data.description.type;
      if (m.data && m.data.candidate) return 'candidate';
      return 'signal';
    } catch { return '?'; }
  };
  const RealWebSocket = window.WebSocket;
  window.WebSocket = class extends RealWebSocket {
    constructor(...args) {
      super(...args);
      mark('socket created');
      this.addEventListener('open', () => mark('socket open'));
      this.addEventListener('message', (event) => {
        counts.wsReceived++;
        const kind = describe(event.data);
        mark(kind === 'joined' || kind === 'peer-joined' ? kind : `${kind} received`);
      });
    }
    send(data) {
      counts.wsSent++;
      mark(`${describe(data)} sent`);
      return super.send(data);
    }
  };
  const RealPC = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends RealPC {
    constructor(...args) {
      super(...args);
      mark('peer connection');
      this.addEventListener('negotiationneeded', () => mark('negotiationneeded'));
      this.addEventListener('iceconnectionstatechange', () => {
        if (['connected', 'completed'].includes(this.iceConnectionState)) mark('ICE connected');
      });
      this.addEventListener('connectionstatechange', () => {
        if (this.connectionState === 'connected') mark('DTLS connected');
      });
      this.addEventListener('track', () => mark('remote track'));
    }
    getStats(...args) { counts.getStats++; return super.getStats(...args); }
    // When the offer or answer is made and applied: the time between the page asking and
    // WebRTC's signalling thread answering is WebRTC's, the time before the page asks is the page's.
    async setLocalDescription(...args) {
      const offering = args[0]?.type === 'offer' || (!args[0] && this.signalingState !== 'have-remote-offer');
      const result = await super.setLocalDescription(...args);
      mark(offering ? 'offer set' : 'answer set');
      return result;
    }
    async createOffer(...args) {
      const result = await super.createOffer(...args);
      mark('offer made');
      return result;
    }
    async setRemoteDescription(...args) {
      const result = await super.setRemoteDescription(...args);
      if (args[0]?.type === 'offer') mark('offer set as remote');
      return result;
    }
  };
  // Main-thread tasks over 50 ms (rendering, script), which delay every step queued behind them.
  try {
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) { counts.longTasks++; counts.longTaskMs += entry.duration; }
    }).observe({ type: 'longtask', buffered: false });
  } catch {}
  window.AudioContext = class extends RealAudioContext {
    constructor(...args) { super(...args); counts.audioContexts++; mark('AudioContext'); }
  };
  new MutationObserver((records) => { counts.domMutations += records.length; })
    .observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
})();
"""

# Runs in a page: resolves with the one-clock time when `freq` is first heard on any remote
# stream. Its AudioContext is the unwrapped one, so the page's own count stays the page's.
DETECT_JS = """
async ({freq, timeoutMs}) => {
  const B = window.__bench;
  const ctx = new B.RealAudioContext();
  await ctx.resume();
  const fftSize = 2048, binHz = ctx.sampleRate / fftSize;
  const probes = new Map();
  const deadline = B.now() + timeoutMs;
  try {
    while (B.now() < deadline) {
      const streams = window.xes ? window.xes.remoteStreams() : new Map();
      for (const [id, stream] of streams) {
        if (probes.has(id) || stream.getAudioTracks().length === 0) continue;
        const an = ctx.createAnalyser();
        an.fftSize = fftSize; an.smoothingTimeConstant = 0;
        ctx.createMediaStreamSource(stream).connect(an);
        probes.set(id, {an, bins: new Float32Array(an.frequencyBinCount), hits: 0});
      }
      for (const p of probes.values()) {
        p.an.getFloatFrequencyData(p.bins);
        let best = -Infinity, bin = -1;
        for (let i = 4; i < p.bins.length; i++) if (p.bins[i] > best) { best = p.bins[i]; bin = i; }
        const ok = best > -75 && Math.abs(bin * binHz - freq) <= 2 * binHz;
        p.hits = ok ? p.hits + 1 : 0;
        if (p.hits >= 3) { B.mark('first audio'); return B.now(); }
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    return null;
  } finally { await ctx.close(); }
}
"""

WAIT_JOINED_JS = """
async (timeoutMs) => {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (window.xes && window.xes.me && window.xes.me.id) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}
"""

CLICK_JOIN_JS = """
(relay) => {
  const box = document.getElementById('relay-only');
  if (box && box.checked !== relay) box.click();
  document.getElementById('display-name').value = 'bench';
  const t = window.__bench.now();
  window.__bench.mark('click');
  document.getElementById('join').click();
  return t;
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0, udp_service: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port}")


def start_coturn(rundir: Path, secret_file: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A local coturn on loopback with TURN REST credentials, as the tests run it (its TCP
    listener doubles as a readiness probe)."""
    turnserver = shutil.which("turnserver")
    if turnserver is None:
        raise RuntimeError("turnserver (coturn) is not installed")
    port = free_port()
    proc = subprocess.Popen([
        turnserver, "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
        f"--listening-port={port}", "--min-port=61000", "--max-port=61999",
        "--use-auth-secret", f"--static-auth-secret={secret_file.read_text().strip()}",
        "--realm=bench.test", "--fingerprint", "--no-cli", "--no-tls", "--no-dtls",
        "--no-tcp-relay", "--allow-loopback-peers", "--no-multicast-peers",
        f"--log-file={rundir / 'turn.log'}", "--simple-log", "--no-stdout-log",
        f"--pidfile={rundir / 'turn.pid'}", f"--db={rundir / 'turndb.sqlite'}",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc, port


def start_server(kind: str, turn_url: str, secret_file: Path, log: Path
                 ) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    if kind.startswith("xes"):
        # xes-before: another build of XES to compare the page with (BENCH_XES_BEFORE_CMD, e.g.
        # the main branch's .venv/bin/xes), measured in the same run.
        exe = (os.environ["BENCH_XES_BEFORE_CMD"] if kind == "xes-before"
               else str(ROOT / ".venv/bin/xes"))
        data_dir = log.parent / f"data-{kind}"  # two XES side by side: one data directory each
        cmd = [exe, "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
               str(data_dir), "--turn-url", turn_url, "--turn-secret-file", str(secret_file)]
    else:
        cmd = [sys.executable, str(HERE / "bare_relay.py"), "--port", str(port),
               "--turn-url", turn_url, "--turn-secret-file", str(secret_file)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}"


def room_url(kind: str, base: str) -> str:
    room = secrets.token_urlsafe(16)
    return f"{base}/r/{room}" if kind.startswith("xes") else f"{base}/?room={room}"


async def open_call(browsers: list[Any], kind: str, base: str, relay: bool) -> list[Any]:
    """Two instrumented pages of a new room, the first of them joined: [first, newcomer]. The
    caller closes them."""
    url = room_url(kind, base)
    pages = [await b.new_page() for b in browsers]
    for page in pages:
        await page.add_init_script(INSTRUMENT_JS)
    await asyncio.gather(*(page.goto(url) for page in pages))
    await pages[0].evaluate(CLICK_JOIN_JS, relay)
    # A polling evaluate, not wait_for_function: XES's CSP forbids the eval that uses.
    if not await pages[0].evaluate(WAIT_JOINED_JS, CALL_TIMEOUT_S * 1000):
        for page in pages:
            await page.close()
        raise RuntimeError("first page never joined")
    return pages


async def one_call(browsers: list[Any], kind: str, base: str, relay: bool) -> dict[str, Any]:
    first, newcomer = await open_call(browsers, kind, base, relay)
    try:
        args = {"timeoutMs": CALL_TIMEOUT_S * 1000}
        # Listen on both pages before the click, so no first frame is missed.
        heard_first = asyncio.ensure_future(first.evaluate(DETECT_JS, {**args, "freq": NEWCOMER_TONE}))
        heard_new = asyncio.ensure_future(newcomer.evaluate(DETECT_JS, {**args, "freq": FIRST_TONE}))
        await asyncio.sleep(0.05)
        await asyncio.gather(first.evaluate(SNAPSHOT_JS), newcomer.evaluate(SNAPSHOT_JS))
        clicked = await newcomer.evaluate(CLICK_JOIN_JS, relay)
        t_first, t_new = await asyncio.gather(heard_first, heard_new)
        if t_first is None or t_new is None:
            return {"ok": False, "error": "a tone was not heard"}
        timeline: dict[str, float] = {}
        counts: dict[str, float] = {}
        for role, page, steps in (("newcomer", newcomer, NEWCOMER_STEPS),
                                  ("member", first, MEMBER_STEPS)):
            got = await page.evaluate(MARKS_JS)
            for step in steps:
                times = [at for name, at in got["marks"] if name == step]
                after = [at for at in times if at >= clicked]
                # The first after the click; else the last before it (the socket opened at load).
                if after or times:
                    timeline[f"{role}: {step}"] = (after[0] if after else times[-1]) - clicked
            for what, n in got["counts"].items():
                counts[f"{role}: {what}, in the call"] = n - got["before"][what]
                counts[f"{role}: {what}, page load and before"] = got["before"][what]
        return {"ok": True, "newcomer_ms": t_new - clicked,
                "call_ms": max(t_new, t_first) - clicked, "timeline": timeline, "counts": counts}
    finally:
        await first.close()
        await newcomer.close()


async def quiet_call(browsers: list[Any], kind: str, base: str, relay: bool,
                     limits: NoiseLimits, retries: int) -> dict[str, Any]:
    """One call, made again while the noise check calls it disturbed (bounded)."""
    seen: list[dict[str, object]] = []
    result: dict[str, Any] = {}
    for _ in range(1 + retries):
        probe = NoiseProbe(limits)
        probe.start()
        try:
            result = await asyncio.wait_for(one_call(browsers, kind, base, relay),
                                            CALL_TIMEOUT_S + 15)
        except Exception as exc:  # noqa: BLE001 - a failed call is reported, not raised
            result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
        reading = probe.stop()
        seen.append(reading.as_dict())
        if reading.quiet or not result.get("ok"):
            return {**result, "quiet": reading.quiet, "noise": seen}
        print(f"  ~ browser {kind}: call disturbed ({reading}), again", flush=True)
        await asyncio.sleep(1.0)
    return {**result, "quiet": False, "noise": seen}


def median_of(rows: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for r in rows for k in r}
    return {k: statistics.median([r[k] for r in rows if k in r]) for k in sorted(keys)}


async def run(calls: int, servers: list[str], workdir: Path, limits: NoiseLimits,
              retries: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    secret_file = workdir / "turn.secret"
    secret_file.write_text(secrets.token_hex(16))
    secret_file.chmod(0o600)
    turn, turn_port = start_coturn(workdir, secret_file)
    turn_url = f"turn:127.0.0.1:{turn_port}?transport=udp"
    figures = Figures()
    out: dict[str, Any] = {"method": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__
                           else "", "timeline_steps": STEPS, "timeline": {}, "page_work": {},
                           "calls": {}}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        bases = {}
        for kind in servers:
            proc, bases[kind] = start_server(kind, turn_url, secret_file, workdir / f"{kind}.log")
            procs.append(proc)
        async with async_playwright() as pw:
            browsers = []
            for tone in (FIRST_TONE, NEWCOMER_TONE):
                wav = write_tone_wav(workdir, tone)
                browsers.append(await pw.chromium.launch(
                    executable_path="/usr/bin/chromium", headless=True,
                    args=chromium_args(fake_audio=wav)))
            try:
                for kind in servers:  # warm-up, not kept: caches, the first getUserMedia
                    await quiet_call(browsers, kind, bases[kind], False, limits, 0)
                for path, relay in (("direct", False), ("relayed", True)):
                    key = f"browser_{path}_ms"
                    figures.define(key, f"Join → both hear each other, {path}", "ms", calls, 0,
                                   "browser")
                    results: dict[str, list[dict[str, Any]]] = {k: [] for k in servers}
                    for rep in range(calls):
                        order = servers[rep % len(servers):] + servers[:rep % len(servers)]
                        for kind in order:
                            r = await quiet_call(browsers, kind, bases[kind], relay, limits,
                                                 retries)
                            results[kind].append(r)
                            good = r.get("ok") and r.get("quiet")
                            figures.put(key, kind, rep, r["call_ms"] if good else None,
                                        r["noise"] if r.get("ok") else None)
                        print(f"  browser {path} {rep + 1}/{calls}: " + ", ".join(
                            f"{k} {results[k][-1].get('call_ms', float('nan')):.0f} ms"
                            f"{'' if results[k][-1].get('quiet') else ' (disturbed)'}"
                            for k in servers), flush=True)
                    out["calls"][path] = results
                    out["timeline"][path] = {
                        k: median_of([r["timeline"] for r in rs if r.get("ok") and r.get("quiet")])
                        for k, rs in results.items()}
                    out["page_work"][path] = {
                        k: median_of([r["counts"] for r in rs if r.get("ok") and r.get("quiet")])
                        for k, rs in results.items()}
            finally:
                for b in browsers:
                    await b.close()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
        turn.terminate()
        turn.wait(timeout=10)
    # The report shows page work for the direct path (the relayed one differs only in TURN).
    out["page_work"] = out["page_work"].get("direct", {})
    figures.summarize()
    out["figures"] = figures.data
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="browser join-to-first-audio, XES vs bare relay")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--servers", default="xes,bare")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--noise-others", type=float, default=NoiseLimits.others_cores)
    parser.add_argument("--noise-steal", type=float, default=NoiseLimits.steal_cores)
    parser.add_argument("--retries", type=int, default=3)
    args = parser.parse_args()
    limits = NoiseLimits(args.noise_others, args.noise_steal)
    with tempfile.TemporaryDirectory(prefix="xes-browser-bench-") as tmp:
        result = asyncio.run(run(args.calls, args.servers.split(","), Path(tmp), limits,
                                 args.retries))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
