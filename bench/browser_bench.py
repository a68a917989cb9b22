"""Scenario 5: browser join-to-first-audio on loopback, XES against a bare relay.

Two headless Chromium processes, each with a fake microphone playing its own tone (440 Hz for the
one already in the room, 880 Hz for the newcomer). Per call: both open the room page (not timed),
the first joins, then the newcomer presses Join and the clock starts. Measured, from that click
(Date.now() on both pages: one machine, one clock):

- newcomer_ms: until the newcomer's page hears 440 Hz on a remote stream;
- call_ms: until both pages hear each other (the figure reported as join-to-first-audio).

The click includes everything a user waits for: getUserMedia, the WebSocket, `join`, the offer,
answer and candidates through the server, ICE, DTLS and the first audio frames. Both pages run
the same detector (an AnalyserNode with fftSize 2048, ~43 ms windows, polled every 10 ms,
three hits in a row), so its own delay is the same for both servers.

"direct": host candidates on 127.0.0.1. "relayed": "relay only" ticked on both pages, so audio
goes through a local coturn (TURN REST credentials from each server). Both servers are given the
same TURN server in both cases, so candidate gathering is the same work.

Usage: python bench/browser_bench.py --calls 10 --json out.json [--servers xes,bare]
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from tests.support.browser import chromium_args, write_tone_wav  # noqa: E402

FIRST_TONE, NEWCOMER_TONE = 440.0, 880.0
CALL_TIMEOUT_S = 30.0

# Runs in a page: resolves with Date.now() when `freq` is first heard on any remote stream.
DETECT_JS = """
async ({freq, timeoutMs}) => {
  const ctx = new AudioContext();
  await ctx.resume();
  const fftSize = 2048, binHz = ctx.sampleRate / fftSize;
  const probes = new Map();
  const deadline = Date.now() + timeoutMs;
  try {
    while (Date.now() < deadline) {
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
        if (p.hits >= 3) return Date.now();
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
  const t = Date.now();
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
    if kind == "xes":
        cmd = [str(ROOT / ".venv/bin/xes"), "serve", "--host", "127.0.0.1", "--port", str(port),
               "--turn-url", turn_url, "--turn-secret-file", str(secret_file)]
    else:
        cmd = [sys.executable, str(HERE / "bare_relay.py"), "--port", str(port),
               "--turn-url", turn_url, "--turn-secret-file", str(secret_file)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}"


def room_url(kind: str, base: str) -> str:
    room = secrets.token_urlsafe(16)
    return f"{base}/r/{room}" if kind == "xes" else f"{base}/?room={room}"


async def one_call(browsers: list[Any], kind: str, base: str, relay: bool) -> dict[str, Any]:
    url = room_url(kind, base)
    first, newcomer = [await b.new_page() for b in browsers]
    try:
        await asyncio.gather(first.goto(url), newcomer.goto(url))
        await first.evaluate(CLICK_JOIN_JS, relay)
        # A polling evaluate, not wait_for_function: XES's CSP forbids the eval that uses.
        joined = await first.evaluate(WAIT_JOINED_JS, CALL_TIMEOUT_S * 1000)
        if not joined:
            return {"ok": False, "error": "first page never joined"}
        args = {"timeoutMs": CALL_TIMEOUT_S * 1000}
        # Listen on both pages before the click, so no first frame is missed.
        heard_first = asyncio.ensure_future(first.evaluate(DETECT_JS, {**args, "freq": NEWCOMER_TONE}))
        heard_new = asyncio.ensure_future(newcomer.evaluate(DETECT_JS, {**args, "freq": FIRST_TONE}))
        await asyncio.sleep(0.05)
        clicked = await newcomer.evaluate(CLICK_JOIN_JS, relay)
        t_first, t_new = await asyncio.gather(heard_first, heard_new)
        if t_first is None or t_new is None:
            return {"ok": False}
        return {"ok": True, "newcomer_ms": t_new - clicked,
                "call_ms": max(t_new, t_first) - clicked}
    finally:
        await first.close()
        await newcomer.close()


def stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {"median_ms": float("nan"), "p90_ms": float("nan")}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median_ms": statistics.median(ordered), "p90_ms": p90}


async def run(calls: int, servers: list[str], workdir: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    secret_file = workdir / "turn.secret"
    secret_file.write_text(secrets.token_hex(16))
    secret_file.chmod(0o600)
    turn, turn_port = start_coturn(workdir, secret_file)
    turn_url = f"turn:127.0.0.1:{turn_port}?transport=udp"
    out: dict[str, Any] = {"method": __doc__.split("\n\n")[1].replace("\n", " ") if __doc__
                           else ""}
    try:
        async with async_playwright() as pw:
            browsers = []
            for tone in (FIRST_TONE, NEWCOMER_TONE):
                wav = write_tone_wav(workdir, tone)
                browsers.append(await pw.chromium.launch(
                    executable_path="/usr/bin/chromium", headless=True,
                    args=chromium_args(fake_audio=wav)))
            try:
                for kind in servers:
                    proc, base = start_server(kind, turn_url, secret_file,
                                              workdir / f"{kind}.log")
                    out[kind] = {}
                    try:
                        await one_call(browsers, kind, base, False)  # warm-up, not kept
                        for path, relay in (("direct", False), ("relayed", True)):
                            results = []
                            for _ in range(calls):
                                try:
                                    results.append(await asyncio.wait_for(
                                        one_call(browsers, kind, base, relay), CALL_TIMEOUT_S + 15))
                                except (TimeoutError, Exception) as exc:  # noqa: BLE001
                                    results.append({"ok": False, "error": str(exc)[:200]})
                            good = [r for r in results if r.get("ok")]
                            out[kind][path] = {
                                "calls": calls, "ok": len(good),
                                **stats([r["call_ms"] for r in good]),
                                "newcomer": stats([r["newcomer_ms"] for r in good]),
                                "raw_call_ms": [r.get("call_ms") for r in results],
                            }
                            s = out[kind][path]
                            print(f"  browser {kind} {path}: {s['ok']}/{calls} ok, median "
                                  f"{s['median_ms']:.0f} ms, p90 {s['p90_ms']:.0f} ms", flush=True)
                    finally:
                        proc.terminate()
                        proc.wait(timeout=10)
            finally:
                for b in browsers:
                    await b.close()
    finally:
        turn.terminate()
        turn.wait(timeout=10)
    for path in ("direct", "relayed"):
        x = out.get("xes", {}).get(path, {}).get("median_ms")
        b = out.get("bare", {}).get(path, {}).get("median_ms")
        if x and b:
            out[f"ratio_{path}"] = x / b
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="browser join-to-first-audio, XES vs bare relay")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--servers", default="xes,bare")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xes-browser-bench-") as tmp:
        result = asyncio.run(run(args.calls, args.servers.split(","), Path(tmp)))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
