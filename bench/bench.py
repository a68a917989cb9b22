"""XES against the PeerJS server (and a bare relay), side by side, on one machine.

Run through bench/run.sh, which installs what this needs; see bench/README.md. This coordinator:

- starts each server pinned to core 0 (os.sched_setaffinity), and one or more load-generator
  workers (bench/loadgen.py) pinned to the other cores, so that the server's CPU counters measure
  the server alone;
- drives the workers through scenarios 1-3 (idle capacity, relay cost and latency, call set-ups)
  for every server, then scenario 4 (matchmaking, XES only, bench/matchmaking.py) and scenario 5
  (browser join-to-first-audio, bench/browser_bench.py);
- writes results/latest.json, results/latest.md and results/latency.png.

Servers are compared on server CPU per operation first: a Python load generator may saturate
its own core before a server does, and then throughput says more about the generator.

Every wait is bounded; everything runs on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procstat import cpu_seconds, machine, rss_kib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
HOST = "127.0.0.1"  # loopback only, by design: this is never pointed anywhere else

SERVERS = ("xes", "peerjs", "bare")


# Plans ----------------------------------------------------------------------------------------
@dataclass
class Plan:
    """How much of everything: full and quick differ only in sizes and durations."""

    idle_sizes: tuple[int, ...] = (1000, 10000)
    idle_seconds: float = 10.0  # long enough to include one XES heartbeat ping per connection
    pairs: int = 1000
    runs: int = 3  # medians of this many measured windows
    warmup_s: float = 2.0
    window_s: float = 5.0
    latency_rate: float = 10000.0
    sweep_rates: tuple[float, ...] = (2000, 5000, 10000, 20000, 30000, 40000)
    sweep_window_s: float = 3.0
    # 100 pairs each doing whole set-ups back to back: up to 1,100 messages in flight already,
    # and a set-up's time still says something about the server rather than only the queue.
    setup_pairs: int = 100
    setup_window_s: float = 5.0  # a set-up takes many round trips: keep several in each window
    match_waiting: int = 100_000
    browser_calls: int = 10
    profile_s: float = 10.0


QUICK = Plan(idle_sizes=(1000, 10000), idle_seconds=3.0, pairs=1000, runs=1, warmup_s=1.0,
             window_s=2.0, sweep_rates=(2000, 10000, 30000), sweep_window_s=2.0,
             setup_pairs=100, match_waiting=100_000, browser_calls=4, profile_s=5.0)


# Processes ------------------------------------------------------------------------------------
def pin(cores: set[int]) -> Callable[[], None]:
    def apply() -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setaffinity(0, cores)
    return apply


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {HOST}:{port} after {timeout} s")


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    base: str  # what the adapters append /ws or /peerjs to

    @property
    def pid(self) -> int:
        return self.proc.pid


def server_command(kind: str, port: int) -> list[str]:
    if kind == "xes":
        # The per-connection rate limit stays on (it is part of the hot path); its budget is
        # raised so that the benchmark's deliberately fast clients are not closed with 4029.
        # --no-turn: the PeerJS server runs no relay, so neither does XES here (without it,
        # `xes serve` starts its built-in coturn). A BENCH_XES_CMD older than the built-in relay
        # does not know the flag: give such a command without it by setting BENCH_XES_NO_TURN=0.
        cmd = os.environ.get("BENCH_XES_CMD")
        base = cmd.split() if cmd else [str(ROOT / ".venv/bin/xes"), "serve"]
        no_turn = [] if os.environ.get("BENCH_XES_NO_TURN") == "0" else ["--no-turn"]
        return base + ["--host", HOST, "--port", str(port), *no_turn,
                       "--rate-per-second", "1000000", "--rate-burst", "1000000"]
    if kind == "xes-uvloop":
        # An experiment, not a configuration XES ships: the same server on uvloop's event loop,
        # to show what the profile's event-loop share would become (asyncio.run honours the
        # policy set before it).
        boot = ("import asyncio, sys, uvloop;"
                " asyncio.set_event_loop_policy(uvloop.EventLoopPolicy());"
                " from xes.cli import main; sys.argv[0] = 'xes'; sys.exit(main())")
        return [PY, "-c", boot, "serve", "--host", HOST, "--port", str(port), "--no-turn",
                "--rate-per-second", "1000000", "--rate-burst", "1000000"]
    if kind == "peerjs":
        return ["node", str(HERE / "peerjs_server.cjs"), str(port), "100000"]
    if kind == "bare":
        return [PY, str(HERE / "bare_relay.py"), "--host", HOST, "--port", str(port)]
    raise ValueError(kind)


@contextlib.contextmanager
def running_server(kind: str, core: int, logdir: Path) -> Iterator[Server]:
    port = free_port()
    logdir.mkdir(parents=True, exist_ok=True)
    with open(logdir / f"{kind}.log", "ab") as log:
        proc = subprocess.Popen(server_command(kind, port), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, preexec_fn=pin({core}), cwd=HERE)
        try:
            wait_port(port, proc)
            time.sleep(0.5)  # let it finish starting (imports, JIT warm-up) before baselines
            yield Server(kind, proc, port, f"ws://{HOST}:{port}")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


class Workers:
    """The load-generator processes, driven with one JSON line per command."""

    def __init__(self, count: int, cores: set[int]) -> None:
        self.count = count
        self.cores = cores
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Workers:
        for i in range(self.count):
            proc = await asyncio.create_subprocess_exec(
                PY, str(HERE / "loadgen.py"), str(i), stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, preexec_fn=pin(self.cores), cwd=HERE,
                limit=64 << 20)
            self.procs.append(proc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()

    async def call(self, msgs: list[dict[str, Any]], timeout: float = 300) -> list[dict[str, Any]]:
        """Send msgs[i] to worker i, all at once; wait for every answer."""
        for proc, msg in zip(self.procs, msgs, strict=True):
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(msg).encode() + b"\n")
            await proc.stdin.drain()

        async def answer(proc: asyncio.subprocess.Process) -> dict[str, Any]:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            if not line:
                raise RuntimeError("load generator exited")
            reply: dict[str, Any] = json.loads(line)
            if not reply.get("ok"):
                raise RuntimeError(f"load generator: {reply.get('error')}")
            return reply

        return list(await asyncio.wait_for(
            asyncio.gather(*(answer(p) for p in self.procs)), timeout))

    async def all(self, msg: dict[str, Any], timeout: float = 300) -> list[dict[str, Any]]:
        return await self.call([msg] * self.count, timeout)

    def split(self, total: int) -> list[int]:
        return [total // self.count + (1 if i < total % self.count else 0)
                for i in range(self.count)]

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)


# Statistics -----------------------------------------------------------------------------------
def percentile(samples: list[int], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[k])


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def sleep_until_ns(t: int) -> None:
    await asyncio.sleep(max(0.0, (t - time.monotonic_ns()) / 1e9))


@dataclass
class Sampler:
    """Server (and generator) CPU across one window, read at the window's edges."""

    server_pid: int
    workers: Workers
    start_ns: int
    end_ns: int
    server_cpu: float = 0.0
    gen_cpu: float = 0.0

    async def run(self) -> None:
        await sleep_until_ns(self.start_ns)
        s0, g0 = cpu_seconds(self.server_pid), self.workers.cpu()
        await sleep_until_ns(self.end_ns)
        self.server_cpu = cpu_seconds(self.server_pid) - s0
        self.gen_cpu = self.workers.cpu() - g0


async def measured(server: Server, workers: Workers, start_ns: int, end_ns: int,
                   work: Awaitable[list[dict[str, Any]]]) -> tuple[Sampler, list[dict[str, Any]]]:
    sampler = Sampler(server.pid, workers, start_ns, end_ns)
    replies, _ = await asyncio.gather(work, sampler.run())
    return sampler, replies


# Scenarios ------------------------------------------------------------------------------------
def proto_of(kind: str) -> str:
    return "peerjs" if kind == "peerjs" else "xes"  # the bare relay speaks XES's subset


async def connect(workers: Workers, server: Server, n: int, pair: bool) -> dict[str, Any]:
    msgs = [{"cmd": "connect", "proto": proto_of(server.kind), "base": server.base, "n": k,
             "pair": pair, "concurrency": 100, "timeout": 180} for k in workers.split(n)]
    replies = await workers.call(msgs, timeout=240)
    connected = sum(r["connected"] for r in replies)
    errors = sum(r["errors"] for r in replies)
    slowest = max(r["connect_ns"] for r in replies) / 1e9
    out = {"connected": connected, "errors": errors,
           "first_errors": [e for r in replies for e in r["first_errors"]][:5],
           "connect_s": slowest, "connect_per_s": connected / slowest if slowest else 0.0,
           "pairs": sum(r["pairs"] for r in replies),
           "pair_s": max(r["pair_ns"] for r in replies) / 1e9}
    if errors or connected < n:
        print(f"  ! {server.kind}: {connected}/{n} connected, {errors} errors: "
              f"{out['first_errors'][:2]}", flush=True)
    return out


async def scenario_idle(kind: str, n: int, plan: Plan, workers: Workers, logdir: Path,
                        core: int) -> dict[str, Any]:
    """1: n idle clients on a fresh server: connect rate, RSS per connection, idle CPU."""
    with running_server(kind, core, logdir) as server:
        rss0 = rss_kib(server.pid)
        c = await connect(workers, server, n, pair=True)
        await asyncio.sleep(2.0)  # let allocators and GC settle before reading RSS
        rss1 = rss_kib(server.pid)
        start = time.monotonic_ns()
        end = start + int(plan.idle_seconds * 1e9)
        sampler, replies = await measured(
            server, workers, start, end,
            workers.all({"cmd": "idle", "until": end, "heartbeat_s": 5.0}))
        rss2 = rss_kib(server.pid)
        await workers.all({"cmd": "close", "settle_s": 0.5})
    per_conn = (max(rss1, rss2) - rss0) * 1024 / max(1, c["connected"])
    return {
        **c, "rss_base_kib": rss0, "rss_kib": rss1, "rss_after_idle_kib": rss2,
        "rss_per_conn_bytes": per_conn, "idle_cpu_pct": 100 * sampler.server_cpu / plan.idle_seconds,
        "heartbeats": sum(r["heartbeats"] for r in replies),
        "idle_disconnects": sum(r["disconnects"] for r in replies),
    }


async def relay_window(server: Server, workers: Workers, mode: str, warmup_s: float,
                       window_s: float, rate: float = 0.0) -> dict[str, Any]:
    start = time.monotonic_ns() + int(warmup_s * 1e9)
    end = start + int(window_s * 1e9)
    # Pairs are spread evenly over the workers, so is the offered rate.
    msg = {"cmd": "relay", "mode": mode, "measure_from": start, "end": end, "inflight": 1,
           "rate": rate / workers.count, "drain_s": 30.0}
    msgs = [msg] * workers.count
    sampler, replies = await measured(server, workers, start, end,
                                      workers.call(msgs, timeout=warmup_s + window_s + 60))
    received = sum(r["received"] for r in replies)
    samples = [s for r in replies for s in r["samples"]]
    disconnects = sum(r["disconnects"] for r in replies)
    if disconnects:
        print(f"  ! {server.kind}: {disconnects} disconnects during relay "
              f"(close codes {[r['close_codes'] for r in replies]})", flush=True)
    return {
        "mode": mode, "offered_per_s": rate if mode == "open" else None,
        "messages": received, "per_s": received / window_s,
        "server_cpu_s": sampler.server_cpu, "server_cpu_pct": 100 * sampler.server_cpu / window_s,
        "us_per_msg": 1e6 * sampler.server_cpu / received if received else float("nan"),
        "gen_cpu_pct": 100 * sampler.gen_cpu / window_s,
        "mean_bytes": sum(r["bytes"] for r in replies) / received if received else 0,
        "p50_us": percentile(samples, 50), "p99_us": percentile(samples, 99),
        "p999_us": percentile(samples, 99.9), "max_behind": max(r["behind_max"] for r in replies),
        "disconnects": disconnects,
        "undelivered": sum(r["undelivered"] for r in replies),
    }


async def setup_window(server: Server, workers: Workers, window_s: float) -> dict[str, Any]:
    """3: every connected pair does call set-ups back to back; count those within the window."""
    start = time.monotonic_ns() + int(0.5e9)
    end = start + int(window_s * 1e9)
    sampler, replies = await measured(
        server, workers, start, end,
        workers.all({"cmd": "setup", "measure_from": start, "end": end, "grace_s": 20},
                    timeout=window_s + 60))
    done = sum(r["setups"] for r in replies)
    errors = [e for r in replies for e in r["first_errors"]]
    if errors:
        print(f"  ! {server.kind} set-up errors: {errors[:2]}", flush=True)
    samples = [s for r in replies for s in r["samples"]]
    return {
        "setups": done, "per_s": done / window_s,
        "us_per_setup": 1e6 * sampler.server_cpu / done if done else float("nan"),
        "server_cpu_pct": 100 * sampler.server_cpu / window_s,
        "gen_cpu_pct": 100 * sampler.gen_cpu / window_s,
        "p50_ms": percentile(samples, 50) / 1000, "p99_ms": percentile(samples, 99) / 1000,
        "errors": sum(r["errors"] for r in replies),
    }


async def scenario_traffic(kinds: tuple[str, ...], plan: Plan, workers: Workers, logdir: Path,
                           core: int, profile: Path | None) -> dict[str, Any]:
    """2 and 3: relay at full speed, at a fixed rate, and call set-ups.

    All servers run side by side (each idle while another is measured) and the rounds
    interleave them, rotating the order: background load on a shared machine drifts over
    minutes, and interleaving spreads that drift evenly instead of charging it to one server.
    """
    out: dict[str, dict[str, Any]] = {
        k: {"relay_runs": [], "latency_runs": [], "setup_runs": [], "sweep": []} for k in kinds}
    with contextlib.ExitStack() as stack:
        servers = {k: stack.enter_context(running_server(k, core, logdir)) for k in kinds}
        for round_no in range(plan.runs):
            order = kinds[round_no % len(kinds):] + kinds[:round_no % len(kinds)]
            for kind in order:
                server, res = servers[kind], out[kind]
                c = await connect(workers, server, 2 * plan.pairs, pair=True)
                res["pairs"] = c["pairs"]
                if round_no == 0:
                    # Unmeasured warm-up: JIT, allocator, socket buffers.
                    await relay_window(server, workers, "closed", 0.0, plan.warmup_s)
                r = await relay_window(server, workers, "closed", 0.5, plan.window_s)
                res["relay_runs"].append(r)
                lat = await relay_window(server, workers, "open", 0.5, plan.window_s,
                                         plan.latency_rate)
                res["latency_runs"].append(lat)
                await workers.all({"cmd": "close", "settle_s": 0.5})
                print(f"  [{round_no + 1}/{plan.runs}] {kind} relay: {r['per_s']:.0f} msg/s, "
                      f"{r['us_per_msg']:.1f} µs/msg server CPU ({r['server_cpu_pct']:.0f}% of a "
                      f"core), generator {r['gen_cpu_pct']:.0f}%; at {plan.latency_rate:.0f}/s "
                      f"p50 {lat['p50_us']:.0f} µs p99 {lat['p99_us']:.0f} µs", flush=True)

                # Fresh connections in no room: an XES set-up joins and leaves a room itself.
                await connect(workers, server, 2 * plan.setup_pairs, pair=False)
                if round_no == 0:
                    await setup_window(server, workers, plan.warmup_s)
                st = await setup_window(server, workers, plan.setup_window_s)
                res["setup_runs"].append(st)
                await workers.all({"cmd": "close", "settle_s": 0.5})
                print(f"  [{round_no + 1}/{plan.runs}] {kind} set-ups: {st['per_s']:.0f}/s, "
                      f"{st['us_per_setup']:.0f} µs server CPU each, p99 {st['p99_ms']:.1f} ms",
                      flush=True)
        for kind in kinds:
            server, res = servers[kind], out[kind]
            await connect(workers, server, 2 * plan.pairs, pair=True)
            for rate in plan.sweep_rates:
                point = await relay_window(server, workers, "open", 0.5, plan.sweep_window_s, rate)
                res["sweep"].append(point)
                print(f"  {kind} sweep {rate:.0f}/s: got {point['per_s']:.0f}/s, "
                      f"p50 {point['p50_us']:.0f} µs, p99 {point['p99_us']:.0f} µs", flush=True)
                if point["per_s"] < 0.9 * rate:
                    break  # saturated: higher offered loads would only build a longer backlog
            if profile is not None and kind == "xes":
                res["profile"] = await profile_relay(server, workers, plan, profile)
            await workers.all({"cmd": "close", "settle_s": 0.5})
    for res in out.values():
        res["relay"] = summarize(res["relay_runs"])
        res["latency"] = summarize(res["latency_runs"])
        res["setup"] = summarize(res["setup_runs"])
    return out


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every numeric field over the runs."""
    out: dict[str, Any] = {}
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = med([float(r[key]) for r in runs])
        else:
            out[key] = value
    return out


async def profile_relay(server: Server, workers: Workers, plan: Plan,
                        dest: Path) -> dict[str, Any]:
    """py-spy on the XES server during a full-speed relay window (its own, unmeasured run:
    sampling costs the server some CPU)."""
    spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    dest.parent.mkdir(parents=True, exist_ok=True)
    folded = dest.with_suffix(".folded")
    proc = await asyncio.create_subprocess_exec(
        spy, "record", "-p", str(server.pid), "-d", str(int(plan.profile_s)), "-r", "250",
        "--nonblocking", "-f", "raw", "-o", str(folded),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        preexec_fn=pin(workers.cores))
    await asyncio.sleep(0.5)
    await relay_window(server, workers, "closed", 0.0, plan.profile_s + 0.5)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    if proc.returncode != 0 or not folded.exists():
        return {"error": err.decode(errors="replace")[-500:]}
    from profile_report import summarize_folded

    report = summarize_folded(folded)
    dest.write_text(json.dumps(report, indent=1))
    return report


async def scenario_matchmaking(plan: Plan, logdir: Path) -> dict[str, Any]:
    """4: bench/matchmaking.py (written with the matchmaking core), XES only."""
    script = HERE / "matchmaking.py"
    if not script.exists():
        return {"skipped": "bench/matchmaking.py not present"}
    out_file = logdir / "matchmaking.json"
    proc = await asyncio.create_subprocess_exec(
        PY, str(script), "--waiting", str(plan.match_waiting), "--json", str(out_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        preexec_fn=pin({0}))
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), 600)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": "matchmaking.py ran over 600 s"}
    if proc.returncode != 0 or not out_file.exists():
        return {"error": stdout.decode(errors="replace")[-800:]}
    result: dict[str, Any] = json.loads(out_file.read_text())
    return result


async def scenario_browser(plan: Plan, logdir: Path) -> dict[str, Any]:
    """5: real Chromium, join-to-first-audio, XES against the bare relay (bench/browser_bench.py)."""
    script = HERE / "browser_bench.py"
    out_file = logdir / "browser.json"
    proc = await asyncio.create_subprocess_exec(
        PY, str(script), "--calls", str(plan.browser_calls), "--json", str(out_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT)
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), 1200)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": "browser_bench.py ran over 1200 s"}
    print(stdout.decode(errors="replace")[-1500:], flush=True)
    if proc.returncode != 0 or not out_file.exists():
        return {"error": stdout.decode(errors="replace")[-800:]}
    result: dict[str, Any] = json.loads(out_file.read_text())
    return result


# Main -----------------------------------------------------------------------------------------
@dataclass
class Options:
    plan: Plan
    quick: bool
    servers: tuple[str, ...]
    scenarios: tuple[str, ...]
    workers: int
    out: Path
    profile: bool
    notes: list[str] = field(default_factory=list)


async def run(opts: Options) -> dict[str, Any]:
    ncpu = os.cpu_count() or 1
    server_core = 0
    gen_cores = set(range(1, ncpu)) or {0}
    # The coordinator only sleeps and reads /proc; keep it off the server's core too.
    pin(gen_cores)()
    logdir = opts.out.parent / "raw"
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": opts.quick,
        "machine": machine(), "plan": opts.plan.__dict__,
        "setup": {"server_core": server_core, "generator_cores": sorted(gen_cores),
                  "generator_processes": opts.workers,
                  "xes_flags": "--rate-per-second 1000000 --rate-burst 1000000 (limit still "
                               "checked on every message, budget raised for the bench)",
                  "peerjs": "npm peer " + peer_version() + ", PeerServer() with concurrent_limit"
                            " 100000, alive_timeout 600 s, no per-connection logging"},
        "notes": opts.notes, "idle": {}, "traffic": {},
    }
    plan = opts.plan
    async with Workers(opts.workers, gen_cores) as workers:
        if "idle" in opts.scenarios:
            for n in plan.idle_sizes:
                results["idle"][str(n)] = {}
                for kind in opts.servers:
                    r = await scenario_idle(kind, n, plan, workers, logdir, server_core)
                    results["idle"][str(n)][kind] = r
                    print(f"  {kind} idle {n}: {r['connect_per_s']:.0f} conn/s, "
                          f"{r['rss_per_conn_bytes'] / 1024:.1f} KiB/conn, "
                          f"{r['idle_cpu_pct']:.2f}% CPU idle", flush=True)
        if "traffic" in opts.scenarios:
            prof = logdir / "profile-xes-relay.json" if opts.profile else None
            results["traffic"] = await scenario_traffic(
                opts.servers, plan, workers, logdir, server_core, prof)
    if "match" in opts.scenarios:
        results["matchmaking"] = await scenario_matchmaking(plan, logdir)
    if "browser" in opts.scenarios:
        results["browser"] = await scenario_browser(plan, logdir)
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def peer_version() -> str:
    try:
        data = json.loads((HERE / "node_modules/peer/package.json").read_text())
        return str(data.get("version", "?"))
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description="XES vs PeerJS signalling benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller, shorter: a few minutes")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--scenarios", default="idle,traffic,match,browser")
    parser.add_argument("--workers", type=int, default=0,
                        help="load-generator processes (default: one per core not used by the server)")
    parser.add_argument("--out", type=Path, default=HERE / "results/latest.json")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy on the XES server")
    parser.add_argument("--runs", type=int, help="override the number of measured runs")
    parser.add_argument("--note", action="append", default=[], help="a line for the report")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.runs:
        plan.runs = args.runs
    ncpu = os.cpu_count() or 1
    opts = Options(plan=plan, quick=args.quick, servers=tuple(args.servers.split(",")),
                   scenarios=tuple(args.scenarios.split(",")),
                   workers=args.workers or max(1, ncpu - 1), out=args.out,
                   profile=not args.no_profile, notes=list(args.note))
    results = asyncio.run(run(opts))
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(results, indent=1, default=str))
    from report import write_report

    # latest.json -> latency.png (the documented name); any other --out gets its own plot.
    png = opts.out.parent / ("latency.png" if opts.out.stem == "latest"
                             else f"{opts.out.stem}-latency.png")
    write_report(results, opts.out.with_suffix(".md"), png)
    print(f"wrote {opts.out}, {opts.out.with_suffix('.md')}, {png}")


if __name__ == "__main__":
    main()
