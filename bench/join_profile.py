"""Where the newcomer's page spends its main thread while joining: a CPU profile of the join.

The same call as bench/browser_bench.py (two headless Chromium processes, a fake microphone each,
direct path), with the V8 sampling profiler (Chrome DevTools Protocol, 100 µs interval) running on
the newcomer's page from just before its click until it hears the other side. The samples of all
calls are added up by function (name, file, line): self time, so each millisecond is counted once,
in the function that was running. "(idle)" is a main thread with nothing to do: waiting for the
network, the server, or WebRTC's own threads (ICE, DTLS), which the page's JavaScript cannot
shorten. What is not idle is the page's cost, and the functions say whose.

Usage: python bench/join_profile.py [--calls 5] [--server xes|bare] [--top 25] [--json out.json]
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
    chromium_args,
    open_call,
    start_coturn,
    start_server,
    write_tone_wav,
)

SAMPLING_INTERVAL_US = 100


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


async def profiled_call(browsers: list[Any], base: str, kind: str) -> tuple[Counter[str], float]:
    first, newcomer = await open_call(browsers, kind, base, False)
    try:
        cdp = await newcomer.context.new_cdp_session(newcomer)
        await cdp.send("Profiler.enable")
        await cdp.send("Profiler.setSamplingInterval", {"interval": SAMPLING_INTERVAL_US})
        args = {"timeoutMs": CALL_TIMEOUT_S * 1000}
        heard = asyncio.ensure_future(newcomer.evaluate(DETECT_JS, {**args, "freq": FIRST_TONE}))
        heard_first = asyncio.ensure_future(first.evaluate(DETECT_JS, {**args, "freq": NEWCOMER_TONE}))
        await asyncio.sleep(0.05)
        await cdp.send("Profiler.start")
        clicked = await newcomer.evaluate(CLICK_JOIN_JS, False)
        heard_at, _ = await asyncio.gather(heard, heard_first)
        profile = (await cdp.send("Profiler.stop"))["profile"]
        if heard_at is None:
            raise RuntimeError("the newcomer never heard the first page")
        return self_times(profile), heard_at - clicked
    finally:
        await first.close()
        await newcomer.close()


async def run(calls: int, kind: str, workdir: Path) -> dict[str, Any]:
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
                await profiled_call(browsers, base, kind)  # warm-up, not kept
                for n in range(calls):
                    spent, heard_ms = await profiled_call(browsers, base, kind)
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
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xes-join-profile-") as tmp:
        result = asyncio.run(run(args.calls, args.server, Path(tmp)))
    spent: dict[str, float] = result["self_ms_per_call"]
    window = sum(spent.values())
    busy = window - spent.get("(idle)", 0.0)
    print(f"{args.server}: profiled window {window:.0f} ms per call, main thread busy {busy:.0f} ms")
    for name, ms in sorted(spent.items(), key=lambda item: -item[1])[:args.top]:
        print(f"  {ms:7.1f} ms  {name}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
