"""Scenario 6: the browser's cost in a full room, XES's page against the bare page.

Eight people in one room, a full mesh (28 links): each browser encodes its voice 7 times and
decodes 7 streams. Eight separate Chromium processes would starve two cores, so, as in
tests/browser/test_mesh8.py, the eight are eight contexts of one Chromium, each with its own
microphone (an oscillator at that person's frequency in place of getUserMedia), joining one after
another through the page. The same runs with the bare page on the bare relay (bench/bare_page:
microphone, one RTCPeerConnection per peer, offer/answer, trickle ICE and nothing else), which is
WebRTC's floor on this machine: what XES's page costs beyond it is the page's own.

Two figures per page:
- **Time to hear everyone**: from a newcomer's click on Join until every person present hears
  every other one (each page's tone listener finds each other person's tone on their stream);
  the next person arrives only then.
- **CPU in the full room**, once all eight hear everyone and the tone listeners are stopped (so
  the window holds the pages' own work and WebRTC's): the whole Chromium's CPU (every process:
  browser, renderers, audio and network services) over a steady window, per link; the renderers'
  share (one per page: its main thread, WebRTC's encoders and decoders, WebAudio); and the pages'
  main threads alone (scripts, style, layout, paint), all read from /proc as CPU time, which a
  busy machine delays but does not inflate the way it inflates wall-clock task durations.

Usage: python bench/mesh_bench.py --people 8 --json out.json [--servers xes,bare] [--window 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
from browser_bench import room_url, start_coturn, start_server  # noqa: E402
from noise import NoiseLimits, NoiseProbe, own_ticks  # noqa: E402
from procstat import TICKS, stat_ticks  # noqa: E402
from tests.support.browser import (  # noqa: E402
    SIGNAL_TRACE_JS,
    TONE_LISTENER_HEARD_JS,
    TONE_LISTENER_STOP_JS,
    chromium_args,
    oscillator_microphone_script,
    tone_listener_script,
)

# test_mesh8.py's tones: 180 Hz or more apart, far beyond the listener's 2-bin tolerance.
TONES = (440.0, 620.0, 830.0, 1070.0, 1310.0, 1550.0, 1790.0, 2030.0)
SETTLE_TIMEOUT_S = 180.0
WARM_UP_S = 3.0

JOIN_JS = """
(name) => {
  document.getElementById('display-name').value = name;
  document.getElementById('join').click();
}
"""

JOINED_JS = "() => Boolean(window.xes && window.xes.me && window.xes.me.id)"


def chromium_root(parent: int) -> int:
    """The pid of the Chromium browser process among `parent`'s descendants (its own parent is not
    a Chromium: every other Chromium process is its child or grandchild)."""
    comm: dict[int, str] = {}
    ppid: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm[int(entry)] = text[text.index("(") + 1:text.rindex(")")]
        ppid[int(entry)] = int(text[text.rindex(")") + 2:].split()[1])

    def descends(pid: int) -> bool:
        hops = 0
        while pid and pid != parent and hops < 64:
            pid, hops = ppid.get(pid, 0), hops + 1
        return pid == parent

    for pid, name in comm.items():
        if "chrom" in name and "chrom" not in comm.get(ppid[pid], "") and descends(pid):
            return pid
    raise RuntimeError("no Chromium process found")


def heard_everyone(heard: dict[str, list[float]], others: list[float]) -> bool:
    """One stream per other person, each carrying exactly one of their tones, all of them."""
    tones = [tones[0] for tones in heard.values() if len(tones) == 1]
    return len(heard) == len(others) and len(tones) == len(others) and sorted(tones) == sorted(
        others)


def renderer_ticks(root: int) -> dict[int, int]:
    """Per renderer process under `root` (one per page here: each context has its own): CPU ticks
    of the whole process (the page's main thread, its WebRTC and WebAudio threads). Its main thread
    alone is in `renderer_thread_ticks` (the thread whose id is the process id)."""
    result: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if b"--type=renderer" not in Path(f"/proc/{pid}/cmdline").read_bytes():
                continue
            _, process = stat_ticks(f"/proc/{pid}/stat")
        except OSError:
            continue
        if _descends(pid, root):
            result[pid] = process
    return result


def renderer_thread_ticks(pids: Iterable[int]) -> dict[tuple[int, int], tuple[str, int]]:
    """CPU ticks of every thread of the given renderer processes, with the thread's name (what
    Chromium calls it: "WebRTC_Signaling", "AudioOutputDevice", ...), by (process id, thread id)."""
    result: dict[tuple[int, int], tuple[str, int]] = {}
    for pid in pids:
        try:
            tids = [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                result[(pid, tid)] = stat_ticks(f"/proc/{pid}/task/{tid}/stat")
            except OSError:
                continue
    return result


def cores_by_thread_name(before: dict[tuple[int, int], tuple[str, int]],
                         after: dict[tuple[int, int], tuple[str, int]],
                         elapsed: float) -> dict[str, float]:
    """Cores per thread name over a window, summed over every renderer, busiest first (threads
    of one kind have numbered names in some builds: the digits are dropped)."""
    cores: dict[str, float] = {}
    for key, (name, ticks) in after.items():
        spent = ticks - before.get(key, (name, ticks))[1]
        if spent > 0:
            kind = name.rstrip("0123456789").rstrip("_- ") or name
            cores[kind] = cores.get(kind, 0.0) + spent / TICKS / elapsed
    return {kind: round(value, 3) for kind, value in
            sorted(cores.items(), key=lambda item: -item[1]) if value >= 0.005}


def _descends(pid: int, root: int) -> bool:
    hops = 0
    while pid and pid != root and hops < 64:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid, hops = int(text[text.rindex(")") + 2:].split()[1]), hops + 1
    return pid == root


def profile_top(profiles: list[dict[str, Any]], top: int = 25) -> list[tuple[str, float]]:
    """The functions with the most self time over every page's CPU profile (ms per second is the
    caller's to work out): name, file and line."""
    self_us: dict[str, float] = {}
    for profile in profiles:
        nodes = {node["id"]: node["callFrame"] for node in profile["nodes"]}
        for sample, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
            frame = nodes[sample]
            key = (f"{frame['functionName'] or '(anonymous)'} "
                   f"{frame['url'].rsplit('/', 1)[-1]}:{frame['lineNumber'] + 1}")
            self_us[key] = self_us.get(key, 0.0) + delta
    ranked = sorted(self_us.items(), key=lambda item: -item[1])
    return [(key, us / 1000) for key, us in ranked if not key.startswith("(idle)")][:top]


# Each link's connection, ICE and signalling states by the other person's name (XES's page only;
# the bare page's `window.xes` has no `peers`, and the detail says so).
LINK_STATES_JS = """() => typeof window.xes?.peers === 'function'
  ? Object.fromEntries(window.xes.peers().map((peer) => [peer.name,
  ((pc) => pc ? `${pc.connectionState} (ICE ${pc.iceConnectionState}, signalling ${pc.signalingState})`
    : 'no link')(window.xes.pcs().get(peer.id))])) : 'not known (bare page)'"""


async def one_mesh(pw: Any, kind: str, base: str, people: int, window_s: float,
                   limits: NoiseLimits, profile: bool = False) -> dict[str, Any]:
    browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                       args=chromium_args())
    try:
        url = room_url(kind, base)
        pages = []
        console: dict[Any, list[str]] = {}
        for tone in TONES[:people]:
            context = await browser.new_context()
            await context.add_init_script(oscillator_microphone_script(tone))
            await context.add_init_script(SIGNAL_TRACE_JS)
            page = await context.new_page()
            lines = console.setdefault(page, [])
            page.on("console", lambda message, lines=lines: lines.append(
                f"{message.type}: {message.text}"[:300])
                if message.type in ("warning", "error") else None)
            await page.goto(url)
            pages.append(page)
        settle_s: list[float] = []
        for n, page in enumerate(pages, start=1):
            clicked = time.monotonic()
            await page.evaluate(JOIN_JS, f"P{n}")
            await _poll(page, JOINED_JS, clicked + 60)
            await page.evaluate(*tone_listener_script(TONES[:people]))
            present = list(range(n))
            waiting = present
            while waiting and time.monotonic() < clicked + SETTLE_TIMEOUT_S:
                heard = [await pages[i].evaluate(TONE_LISTENER_HEARD_JS) for i in waiting]
                waiting = [i for i, h in zip(waiting, heard, strict=True) if not heard_everyone(
                    h, [TONES[j] for j in present if j != i])]
                if waiting:
                    await asyncio.sleep(0.25)
            if waiting:
                # What the pages that did not hear everyone hear, and (XES's page) the state of
                # each of their links, so that a failure is explained, not only counted.
                detail = [{"page": f"P{i + 1}",
                           "hears": await pages[i].evaluate(TONE_LISTENER_HEARD_JS),
                           "links": await pages[i].evaluate(LINK_STATES_JS),
                           "signals": await signal_counts(pages[i], pages[:n]),
                           "console": console[pages[i]][-20:]} for i in waiting]
                return {"ok": False, "error": f"P{n} joined: P{waiting[0] + 1} never heard everyone",
                        "settle_s": settle_s, "detail": detail}
            settle_s.append(time.monotonic() - clicked)
            print(f"  mesh {kind}: P{n} ({n} present): everyone hears everyone after "
                  f"{settle_s[-1]:.1f} s", flush=True)
        for page in pages:
            await page.evaluate(TONE_LISTENER_STOP_JS)
        await asyncio.sleep(WARM_UP_S)
        if profile:  # its own window before the measured one: the profiler costs CPU itself
            sessions = [await page.context.new_cdp_session(page) for page in pages]
            for session in sessions:
                await session.send("Profiler.enable")
                await session.send("Profiler.start")
            await asyncio.sleep(window_s)
            profiles = [(await session.send("Profiler.stop"))["profile"] for session in sessions]
        root = chromium_root(os.getpid())
        probe = NoiseProbe(limits)
        renderers_before = renderer_ticks(root)
        threads_before = renderer_thread_ticks(renderers_before)
        ticks_before, started = own_ticks(root), time.monotonic()
        probe.start()
        await asyncio.sleep(window_s)
        reading = probe.stop()
        ticks_after, elapsed = own_ticks(root), time.monotonic() - started
        threads_after = renderer_thread_ticks(renderers_before)
        renderers_after = renderer_ticks(root)
        links = people * (people - 1) // 2
        chromium_cores = (ticks_after - ticks_before) / TICKS / elapsed
        # Chromium keeps a few renderers of its own (no page, no CPU): only busy ones count. A
        # renderer's main thread (scripts, style, layout, paint) is its thread whose id is its pid.
        busy = [pid for pid, after in renderers_after.items()
                if pid in renderers_before and after > renderers_before[pid]]
        renderer_cores = sum(renderers_after[pid] - renderers_before[pid]
                             for pid in busy) / TICKS / elapsed
        main_threads = [(threads_after.get((pid, pid), ("", 0))[1]
                         - threads_before.get((pid, pid), ("", 0))[1]) / TICKS / elapsed
                        for pid in busy]
        return {
            **({"profile_top_ms": profile_top(profiles)} if profile else {}),
            "ok": True, "settle_s": settle_s, "links": links, "window_s": round(elapsed, 2),
            "chromium_cores": chromium_cores,
            "chromium_ms_per_s_per_link": 1000 * chromium_cores / links,
            "renderers": len(busy),
            "renderer_cores": renderer_cores,
            "main_thread_cores": sum(main_threads),
            "main_thread_ms_per_s_per_page": [round(1000 * m, 1) for m in main_threads],
            "renderer_cores_by_thread": cores_by_thread_name(threads_before, threads_after, elapsed),
            "noise": reading.as_dict(), "quiet": reading.quiet,
        }
    finally:
        await browser.close()


async def signal_counts(page: Any, pages: list[Any]) -> dict[str, dict[str, int]]:
    """Per other person (by display name), how many offers, answers and candidates this page sent
    and got: a signal lost on the way shows as one side's `sent` without the other's `got`."""
    names = {await other.evaluate("window.xes?.me?.id"): f"P{n}"
             for n, other in enumerate(pages, start=1)}
    counts: dict[str, dict[str, int]] = {}
    for _, direction, peer, what, *_ in await page.evaluate("window.__xesSignalTrace ?? []"):
        per_peer = counts.setdefault(names.get(peer, peer), {})
        per_peer[f"{direction} {what}"] = per_peer.get(f"{direction} {what}", 0) + 1
    return counts


async def _poll(page: Any, expression: str, deadline: float) -> None:
    """wait_for_function without eval (XES's CSP forbids the eval it uses)."""
    while time.monotonic() < deadline:
        if await page.evaluate(expression):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{expression} never held")


async def run(people: int, servers: list[str], window_s: float, workdir: Path,
              limits: NoiseLimits, profile: bool = False) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    secret_file = workdir / "turn.secret"
    secret_file.write_text(secrets.token_hex(16))
    secret_file.chmod(0o600)
    # Host candidates only (no relay ticked); coturn is there because both servers hand it out.
    turn, turn_port = start_coturn(workdir, secret_file)
    turn_url = f"turn:127.0.0.1:{turn_port}?transport=udp"
    out: dict[str, Any] = {"method": (__doc__ or "").split("\n\n")[1].replace("\n", " "),
                           "people": people, "meshes": {}}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        async with async_playwright() as pw:
            for kind in servers:
                proc, base = start_server(kind, turn_url, secret_file, workdir / f"{kind}.log")
                procs.append(proc)
                try:
                    out["meshes"][kind] = await one_mesh(pw, kind, base, people, window_s,
                                                         limits, profile)
                except Exception as exc:  # noqa: BLE001 - a failed mesh is reported, not raised
                    out["meshes"][kind] = {"ok": False,
                                           "error": f"{type(exc).__name__}: {exc}"[:300]}
                finally:
                    proc.terminate()
                    proc.wait(timeout=10)
                print(f"  mesh {kind}: {json.dumps(out['meshes'][kind])}", flush=True)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        turn.terminate()
        turn.wait(timeout=10)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="the browser's cost in a full room")
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--servers", default="xes,bare")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of steady state")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--noise-others", type=float, default=NoiseLimits.others_cores)
    parser.add_argument("--noise-steal", type=float, default=NoiseLimits.steal_cores)
    parser.add_argument("--profile", action="store_true",
                        help="before the measured window, profile every page's main thread for "
                        "as long, and list the functions with the most self time")
    args = parser.parse_args()
    limits = NoiseLimits(args.noise_others, args.noise_steal)
    # `kill` (SIGTERM) stops it like Ctrl-C: the servers, coturn and Chromium are stopped on the way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with tempfile.TemporaryDirectory(prefix="xes-mesh-bench-") as tmp:
        result = asyncio.run(run(args.people, args.servers.split(","), args.window, Path(tmp),
                                 limits, args.profile))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
