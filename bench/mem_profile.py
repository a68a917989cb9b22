"""Where an idle XES connection's memory goes: tracemalloc on an in-process XES server.

Scenario 1 measures RSS per connection from outside; this says which Python allocations make it
up. The server runs in this process with tracemalloc on; the clients come from a separate
bench/loadgen.py worker (so their allocations are not counted), joined in rooms of two as in
scenario 1.

Usage: python bench/mem_profile.py [--clients 2000] [--top 15]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tracemalloc
from pathlib import Path

from procstat import rss_kib

HERE = Path(__file__).resolve().parent


async def main(clients: int, top: int) -> None:
    from xes.server.app import XesServer
    from xes.server.config import ServerSettings

    server = XesServer(ServerSettings(host="127.0.0.1", port=0))
    port = await server.start()
    worker = await asyncio.create_subprocess_exec(
        sys.executable, str(HERE / "loadgen.py"), "0", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, cwd=HERE)
    assert worker.stdin is not None and worker.stdout is not None
    await asyncio.sleep(0.5)
    tracemalloc.start(8)
    before = tracemalloc.take_snapshot()
    rss0 = rss_kib(__import__("os").getpid())
    worker.stdin.write(json.dumps({"cmd": "connect", "proto": "xes", "n": clients, "pair": True,
                                   "base": f"ws://127.0.0.1:{port}", "timeout": 120}).encode()
                       + b"\n")
    await worker.stdin.drain()
    reply = json.loads(await asyncio.wait_for(worker.stdout.readline(), 180))
    await asyncio.sleep(1.0)
    after = tracemalloc.take_snapshot()
    rss1 = rss_kib(__import__("os").getpid())
    stats = after.compare_to(before, "traceback")
    total = sum(s.size_diff for s in stats)
    n = max(1, reply.get("connected", clients))
    print(f"{n} connections: traced Python memory {total / n:.0f} B per connection; "
          f"RSS {(rss1 - rss0) * 1024 / n:.0f} B per connection (tracemalloc's own overhead "
          "included)")
    for stat in stats[:top]:
        frames = [f"{f.filename.rsplit('/site-packages/', 1)[-1].rsplit('/src/', 1)[-1]}:"
                  f"{f.lineno}" for f in stat.traceback[-4:]]
        print(f"{stat.size_diff / n:8.0f} B/conn  {stat.count_diff / n:5.1f} blocks/conn  "
              f"{' <- '.join(reversed(frames))}")
    worker.stdin.close()
    await worker.wait()
    await server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.top))
