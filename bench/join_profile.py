"""Where the newcomer's page spends its main thread while joining: a CPU profile of the join.

The same call as bench/browser_bench.py (two headless Chromium processes, a fake microphone each,
direct path), with the V8 sampling profiler (Chrome DevTools Protocol, 100 µs interval) running on
the newcomer's page from just before its click until it hears the other side. The samples of all
calls are added up by function (name, file, line): self time, so each millisecond is counted once,
in the function that was running. "(idle)" is a main thread with nothing to do: waiting for the
network, the server, or WebRTC's own threads (ICE, DTLS), which the page's JavaScript cannot
shorten. What is not idle is the page's cost, and the functions say whose.

With ``--trace`` it records a Chromium trace of the newcomer's browser instead (all its processes
and threads) and adds up self time per thread and trace event: "(program)" in a V8 profile is
everything that is not JavaScript (style, layout, paint, WebRTC's calls into the main thread),
and the trace says which. It also sums each thread's busy time, so the page's own work can be
compared with WebRTC's threads (signalling, network, worker) competing for the same cores.
``--tree`` prints the V8 profile as a call tree (inclusive time) instead of self times.

``--member`` profiles the page already in the room (it takes the newcomer's offer) instead.

Usage: python bench/join_profile.py [--calls 5] [--server xes|bare] [--top 25] [--trace | --tree]
       [--member] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from browser_bench import (  # noqa: E402
    CALL_TIMEOUT_S,
    CLICK_JOIN_JS,
    DETECT_JS,
    FIRST_TONE,
    NEWCOMER_TONE,
    open_call,
    start_coturn,
    start_server,
)
from tests.support.browser import chromium_args, write_tone_wav  # noqa: E402

SAMPLING_INTERVAL_US = 100
TRACE_CATEGORIES = [
    "toplevel", "devtools.timeline", "disabled-by-default-devtools.timeline", "blink", "v8",
    "webrtc", "cc", "gpu", "viz", "media",
]
# The renderer's main thread, the one the page's scripts share with style, layout and WebRTC's
# calls into the page.
PAGE_THREAD = "CrRendererMain"


def self_times(profile: dict[str, Any]) -> Counter[str]:
    """Milliseconds of self time per function in one CPU profile."""
    names = {}
    for node in profile["nodes"]:
        frame = node["callFrame"]
        url = frame["url"].rsplit("/", 1)[-1]
        where = f" {url}:{frame['lineNumber'] + 1}" if url else ""
        names[node["id"]] = f"{frame['functionName'] or '(anonymous)'}{where}"
    spent: Counter[str] = Counter()
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
        spent[names[node_id]] += delta / 1000
    return spent


def call_tree(profile: dict[str, Any]) -> Counter[str]:
    """Milliseconds of inclusive time per call path ("outer > inner > ...") in one CPU profile."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    parents = {child: node["id"] for node in profile["nodes"] for child in node.get("children", [])}
    spent: Counter[str] = Counter()
    for node_id, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
        path = []
        while node_id in nodes:
            frame = nodes[node_id]["callFrame"]
            url = frame["url"].rsplit("/", 1)[-1]
            where = f" {url}:{frame['lineNumber'] + 1}" if url else ""
            path.append(f"{frame['functionName'] or '(anonymous)'}{where}")
            node_id = parents.get(node_id)
        path = path[::-1][1:]  # without "(root)"
        for depth in range(1, len(path) + 1):
            spent[" > ".join(path[:depth])] += delta / 1000
    return spent


def _add_self_times(thread: str, spans: list[tuple[float, float, str]],
                    spent: Counter[str]) -> None:
    """Add one thread's nested spans to `spent`: each span's self time, and its outermost ones'
    time as the thread's busy time."""
    spans.sort(key=lambda span: (span[0], -span[1]))
    stack: list[list[Any]] = []  # [end, name, time taken by children, start]

    def pop() -> None:
        end, name, children, start = stack.pop()
        spent[f"{thread}: {name}"] += (end - start - children) / 1000
        if stack:
            stack[-1][2] += end - start
        else:
            spent[f"{thread}: busy"] += (end - start) / 1000

    for start, end, name in spans:
        while stack and stack[-1][0] <= start:
            pop()
        stack.append([min(end, stack[-1][0]) if stack else end, name, 0.0, start])
    while stack:
        pop()


def trace_self_times(events: list[dict[str, Any]]) -> Counter[str]:
    """Milliseconds of self time per "thread: event" in one trace, and "thread: busy" per thread
    (its outermost events' time). The page's main thread is counted in the page's renderer only
    (the process whose main thread runs the most), not in the browser's other renderers."""
    thread_names: dict[tuple[int, int], str] = {}
    spans: dict[tuple[int, int], list[tuple[float, float, str]]] = {}
    for event in events:
        key = (event.get("pid", 0), event.get("tid", 0))
        if event.get("ph") == "M" and event.get("name") == "thread_name":
            thread_names[key] = event["args"]["name"]
        elif event.get("ph") == "X" and "dur" in event:
            spans.setdefault(key, []).append((event["ts"], event["ts"] + event["dur"], event["name"]))
    page_threads = [key for key in spans if thread_names.get(key) == PAGE_THREAD]
    page = max(page_threads, key=lambda key: len(spans[key]), default=None)
    spent: Counter[str] = Counter()
    for key, thread_spans in spans.items():
        # Pool threads are numbered: add them up under one name.
        thread = "".join(c for c in thread_names.get(key, "?") if not c.isdigit()).rstrip("/_ ")
        if thread == PAGE_THREAD and key != page:
            thread = "other renderers' main threads"
        _add_self_times(thread, thread_spans, spent)
    return spent


async def profiled_call(browsers: list[Any], base: str, kind: str,
                        mode: str = "self", member: bool = False) -> tuple[Counter[str], float]:
    first, newcomer = await open_call(browsers, kind, base, False)
    profiled, profiled_browser = (first, browsers[0]) if member else (newcomer, browsers[1])
    try:
        cdp = await profiled.context.new_cdp_session(profiled)
        await cdp.send("Profiler.enable")
        await cdp.send("Profiler.setSamplingInterval", {"interval": SAMPLING_INTERVAL_US})
        args = {"timeoutMs": CALL_TIMEOUT_S * 1000}
        heard = asyncio.ensure_future(newcomer.evaluate(DETECT_JS, {**args, "freq": FIRST_TONE}))
        heard_first = asyncio.ensure_future(first.evaluate(DETECT_JS, {**args, "freq": NEWCOMER_TONE}))
        await asyncio.sleep(0.05)
        if mode == "trace":
            await profiled_browser.start_tracing(categories=TRACE_CATEGORIES)
        else:
            await cdp.send("Profiler.start")
        clicked = await newcomer.evaluate(CLICK_JOIN_JS, False)
        heard_at, _ = await asyncio.gather(heard, heard_first)
        if mode == "trace":
            recorded = json.loads(await profiled_browser.stop_tracing())
            spent = trace_self_times(recorded["traceEvents"] if isinstance(recorded, dict)
                                     else recorded)
        else:
            profile = (await cdp.send("Profiler.stop"))["profile"]
            spent = call_tree(profile) if mode == "tree" else self_times(profile)
        if heard_at is None:
            raise RuntimeError("the newcomer never heard the first page")
        return spent, heard_at - clicked
    finally:
        await first.close()
        await newcomer.close()


async def run(calls: int, kind: str, workdir: Path, mode: str = "self",
              member: bool = False) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    secret_file = workdir / "turn.secret"
    secret_file.write_text(secrets.token_hex(16))
    secret_file.chmod(0o600)
    turn, turn_port = start_coturn(workdir, secret_file)
    proc, base = start_server(kind, f"turn:127.0.0.1:{turn_port}?transport=udp", secret_file,
                              workdir / f"{kind}.log")
    total: Counter[str] = Counter()
    heard: list[float] = []
    try:
        async with async_playwright() as pw:
            browsers = [await pw.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True,
                args=chromium_args(fake_audio=write_tone_wav(workdir, tone)))
                for tone in (FIRST_TONE, NEWCOMER_TONE)]
            try:
                await profiled_call(browsers, base, kind, mode, member)  # warm-up, not kept
                for n in range(calls):
                    spent, heard_ms = await profiled_call(browsers, base, kind, mode, member)
                    total.update(spent)
                    heard.append(heard_ms)
                    print(f"  call {n + 1}/{calls}: heard after {heard_ms:.0f} ms", flush=True)
            finally:
                for browser in browsers:
                    await browser.close()
    finally:
        for process in (proc, turn):
            process.terminate()
            process.wait(timeout=10)
    per_call = {name: ms / calls for name, ms in total.items()}
    return {"server": kind, "calls": calls, "heard_ms": heard, "self_ms_per_call": per_call}


def main() -> None:
    parser = argparse.ArgumentParser(description="CPU profile of the newcomer's join")
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--server", default="xes", choices=["xes", "bare"])
    parser.add_argument("--top", type=int, default=25)
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--trace", action="store_true",
                       help="a Chromium trace of every thread instead of the V8 profile")
    modes.add_argument("--tree", action="store_true",
                       help="the V8 profile as a call tree, inclusive time per call path")
    parser.add_argument("--min-ms", type=float, default=2.0,
                        help="with --tree: leave out call paths under this many ms per call")
    parser.add_argument("--member", action="store_true",
                        help="profile the page already in the room instead of the newcomer's")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    mode = "trace" if args.trace else "tree" if args.tree else "self"
    with tempfile.TemporaryDirectory(prefix="xes-join-profile-") as tmp:
        result = asyncio.run(run(args.calls, args.server, Path(tmp), mode, args.member))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    spent: dict[str, float] = result["self_ms_per_call"]
    if mode == "trace":
        print(f"{args.server}: busy time per thread, per call (click to heard)")
        busy = {name: ms for name, ms in spent.items() if name.endswith(": busy")}
        for name, ms in sorted(busy.items(), key=lambda item: -item[1]):
            print(f"  {ms:7.1f} ms  {name}")
        print(f"self time per event on the page's main thread ({PAGE_THREAD}), per call")
        page = {name: ms for name, ms in spent.items() if name.startswith(f"{PAGE_THREAD}: ")
                and not name.endswith(": busy")}
        for name, ms in sorted(page.items(), key=lambda item: -item[1])[:args.top]:
            print(f"  {ms:7.1f} ms  {name}")
        return
    if mode == "tree":
        print(f"{args.server}: inclusive time per call path, per call (over {args.min_ms:g} ms)")
        for path, ms in sorted(spent.items()):
            if ms >= args.min_ms:
                depth = path.count(" > ")
                print(f"  {ms:7.1f} ms  {'  ' * depth}{path.rsplit(' > ', 1)[-1]}")
        return
    window = sum(spent.values())
    busy_ms = window - spent.get("(idle)", 0.0)
    print(f"{args.server}: profiled window {window:.0f} ms per call, main thread busy {busy_ms:.0f} ms")
    for name, ms in sorted(spent.items(), key=lambda item: -item[1])[:args.top]:
        print(f"  {ms:7.1f} ms  {name}")


if __name__ == "__main__":
    main()
