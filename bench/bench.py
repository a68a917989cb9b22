"""XES against the PeerJS server and a bare picows relay, side by side, figures that hold up.

Run through bench/run.sh, which installs what this needs; see bench/README.md. This coordinator:

- starts each server pinned to core 0 and the load-generator workers (bench/loadgen.py) pinned to
  the other cores (`taskset`), so that the server's CPU counters measure the server alone;
- repeats every measurement (--runs, 3 by default). One repetition measures every server within
  the same minute, with fresh servers, in an order that rotates from one repetition to the next;
  ratios (XES / PeerJS, XES / bare relay) are taken inside each repetition, then the median and
  range of the figures and of the ratios over the repetitions are reported;
- watches every measured window with the noise check (bench/noise.py): a window during which
  other processes used the CPU, or the hypervisor stole it, is discarded and measured again, a
  bounded number of times; a figure that never got a quiet window is reported as disturbed, not
  as a number;
- writes results/latest.json (every value, every window's noise) and results/latest.md (the
  side-by-side table, bench/report.py).

Servers are compared on server CPU per operation: a Python load generator may saturate its own
core before a server does, and then throughput says more about the generator. Latency is taken at
fixed offered loads (10,000 and 25,000 messages per second) after a warm-up at that same load.

XES as a cluster (xes-cluster2: two nodes; xes-workers2: `--workers 2`) runs with its own
redis-server through the same scenarios; its server CPU is all its processes' and Redis's is
reported apart (bench/README.md, "Clusters").

Every wait is bounded; everything runs on 127.0.0.1 and is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from figures import Figures
from noise import NoiseLimits, NoiseProbe, NoiseReading, own_ticks
from procstat import TICKS, cpu_seconds, machine, rss_kib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PY = sys.executable
HOST = "127.0.0.1"  # loopback only, by design: this is never pointed anywhere else
# Clients connect from several loopback addresses: each has its own ~28,000 ephemeral ports
# towards one server port, so 100,000 clients are not limited by ports.
SOURCE_ADDRESSES = [f"127.0.0.{i}" for i in range(2, 10)]

SERVERS = ("xes", "peerjs", "bare")
# XES as several processes sharing state through a redis-server the bench starts (issue 14):
# two `xes serve --redis` nodes, each pair's sender on one and receiver on the other; and
# `xes serve --workers 2` (one port, the kernel spreads connections over two processes).
CLUSTERS = ("xes-cluster2", "xes-workers2")
# A server kind's name says what it is: these are experiments, not what XES ships.
VARIANTS = ("xes-asyncio", "xes-uvloop", "xes-fastnet", "xes-uvloop-fastnet", "bare-uvloop",
            *CLUSTERS)


# Plans ----------------------------------------------------------------------------------------
@dataclass
class Plan:
    """How much of everything: full and quick differ only in sizes and durations."""

    idle_sizes: tuple[int, ...] = (10_000, 100_000)
    idle_runs: int = 3          # repetitions for sizes up to 20,000 clients (one above)
    idle_seconds: float = 5.0
    pairs: int = 1000
    runs: int = 3               # repetitions: each figure is a median over this many
    retries: int = 3            # extra attempts for a window the noise check calls disturbed
    warmup_s: float = 2.0       # at the measured offered load, right before its window
    window_s: float = 5.0
    fixed_rates: tuple[float, ...] = (10_000.0, 25_000.0)
    # 100 pairs each doing whole set-ups back to back: up to 1,100 messages in flight already,
    # and a set-up's time still says something about the server rather than only the queue.
    setup_pairs: int = 100
    setup_window_s: float = 5.0  # a set-up takes many round trips: keep several in each window
    match_waiting: int = 100_000
    browser_calls: int = 10
    mesh_people: int = 8        # the full room: 28 links in one Chromium
    mesh_window_s: float = 10.0
    profile_s: float = 10.0


QUICK = Plan(idle_sizes=(10_000,), idle_runs=1, idle_seconds=2.0, pairs=1000, runs=1, retries=1,
             warmup_s=1.0, window_s=2.0, setup_window_s=2.0, match_waiting=20_000,
             browser_calls=3, mesh_people=4, mesh_window_s=5.0, profile_s=4.0)


# Processes ------------------------------------------------------------------------------------
def pin(cores: set[int]) -> Callable[[], None]:
    def apply() -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.sched_setaffinity(0, cores)
    return apply


def taskset(cores: set[int]) -> list[str]:
    """`taskset -c …` in front of a command: the pinning shows in `ps` and in the results."""
    return ["taskset", "-c", ",".join(str(c) for c in sorted(cores))]


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
class Redis:
    """The redis-server a cluster shares (persistence off): its CPU and memory are its own
    figures, next to the nodes'."""

    proc: subprocess.Popen[bytes]
    port: int

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def used_memory(self) -> int:
        """`INFO memory` used_memory: what Redis holds, without the allocator's slack."""
        import redis

        with redis.Redis(host=HOST, port=self.port, socket_timeout=10) as client:
            return int(client.info("memory")["used_memory"])


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen[bytes]
    port: int
    base: str  # what the adapters append /ws or /peerjs to
    # A cluster: every node's process and address (clients go to them in turn), and its Redis.
    nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    bases: list[str] = field(default_factory=list)
    redis: Redis | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def node_pids(self) -> list[int]:
        """The processes holding sockets: the nodes, or `--workers`' children (not its parent,
        which serves nothing), or the one server."""
        if self.kind == "xes-workers2":
            return children(self.pid)
        return [p.pid for p in self.nodes] or [self.pid]

    def cpu(self) -> float:
        """Server CPU: every node's, summed (a `--workers` parent and its workers, reaped ones
        included); Redis's is counted apart (`redis_cpu`)."""
        if self.kind == "xes-workers2":
            return own_ticks(self.pid) / TICKS
        return sum(cpu_seconds(p.pid) for p in self.nodes) if self.nodes else cpu_seconds(self.pid)

    def redis_cpu(self) -> float:
        return self.redis.cpu() if self.redis is not None else 0.0


def children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


# The per-connection rate limit stays on (it is part of the hot path); its budget is raised so
# that the benchmark's deliberately fast clients are not closed with 4029. --no-turn: the PeerJS
# server runs no relay, so neither does XES here (without it, `xes serve` starts its coturn).
XES_FLAGS = ["--no-turn", "--rate-per-second", "1000000", "--rate-burst", "1000000"]


def xes_variant(kind: str) -> list[str]:
    """XES with another event loop or transport: the same server and flags, started through a
    few lines that change only that (experiments for the profile's event-loop share)."""
    lines = ["import asyncio, sys"]
    if "fastnet" in kind:  # picows's own socket transport (aiofastnet) instead of asyncio's
        lines += ["import xes.server.app as app",
                  "create = app.ws_create_server",
                  "async def fast(*a, **k):",
                  "    k['use_aiofastnet'] = True",
                  "    return await create(*a, **k)",
                  "app.ws_create_server = fast"]
    loop = "uvloop" if "uvloop" in kind else "asyncio"
    lines += ["from xes.cli import main", "sys.argv[0] = 'xes'",
              f"sys.exit(main(sys.argv[1:] + ['--event-loop', '{loop}']))"]
    return [PY, "-c", "\n".join(lines)]


def server_command(kind: str, port: int, data_dir: Path) -> list[str]:
    # Each XES gets its own data directory: two servers side by side must not share one.
    flags = ["--host", HOST, "--port", str(port), "--data-dir", str(data_dir), *XES_FLAGS]
    if kind == "xes":
        # BENCH_XES_CMD: measure another build of XES (e.g. an older checkout's venv/bin/xes).
        cmd = os.environ.get("BENCH_XES_CMD")
        base = cmd.split() if cmd else [str(ROOT / ".venv/bin/xes")]
        return base + ["serve", *flags]
    if kind.startswith("xes-"):
        return xes_variant(kind) + ["serve", *flags]
    if kind == "peerjs":
        return ["node", str(HERE / "peerjs_server.cjs"), str(port), "200000"]
    if kind in ("bare", "bare-uvloop"):
        extra = ["--uvloop"] if kind == "bare-uvloop" else []
        return [PY, str(HERE / "bare_relay.py"), "--host", HOST, "--port", str(port), *extra]
    raise ValueError(kind)


CLUSTER_PINNING = (
    "xes-cluster2: redis-server and both `xes serve --redis` nodes under taskset -c 0 (server "
    "CPU = both nodes' summed; Redis's counted apart); each pair's sender on node A, receiver on "
    "node B. xes-workers2: redis-server and `xes serve --workers 2 --redis` under taskset -c 0,1, "
    "so the workers SHARE core 1 with the load generators: its set-ups per second is what two "
    "cores give to server and generator together, not a server on two free cores")


def server_cores(kind: str, core: int) -> set[int]:
    """Where a server runs: its core, except `--workers 2`, which is there to use both cores of
    the machine and so shares the load generators' core (the report says so)."""
    return set(range(os.cpu_count() or 1)) if kind == "xes-workers2" else {core}


@contextlib.contextmanager
def running_redis(cores: set[int], logdir: Path) -> Iterator[Redis]:
    """A throwaway redis-server on a free loopback port, persistence off (docs/deploy.md's
    recommended default), pinned with the server it serves."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing (apt-get install redis-server)")
    port = free_port()
    with open(logdir / "redis.log", "ab") as log, \
            tempfile.TemporaryDirectory(prefix="bench-redis-") as data_dir:
        proc = subprocess.Popen(
            taskset(cores) + [binary, "--port", str(port), "--bind", HOST, "--save", "",
                              "--appendonly", "no", "--dir", data_dir],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_port(port, proc)
            yield Redis(proc, port)
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def running_cluster(kind: str, core: int, logdir: Path) -> Iterator[Server]:
    """xes-cluster2: a redis-server and two `xes serve --redis` nodes, all on the server's core;
    xes-workers2: a redis-server and `xes serve --workers 2 --redis` on every core."""
    cores = server_cores(kind, core)
    xes = os.environ.get("BENCH_XES_CMD", str(ROOT / ".venv/bin/xes")).split()
    with contextlib.ExitStack() as stack:
        redis_server = stack.enter_context(running_redis(cores, logdir))
        url = f"redis://{HOST}:{redis_server.port}/0"
        # What every node of a cluster shares besides Redis (docs/deploy.md section 8): the
        # identity secret (made by the first node) and the safety database.
        shared = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-shared-")))
        share = ["--identity-secret-file", str(shared / "identity-secret"),
                 "--database", f"sqlite:{shared / 'xes.sqlite3'}"]
        count = 1 if kind == "xes-workers2" else 2
        nodes: list[subprocess.Popen[bytes]] = []
        ports: list[int] = []
        for i in range(count):
            port = free_port()
            data_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"bench-{kind}-"))
            log_path = logdir / f"{kind}-{i}.log"
            log = stack.enter_context(open(log_path, "ab"))
            seen = log_path.stat().st_size
            extra = ["--workers", "2"] if kind == "xes-workers2" else []
            cmd = xes + ["serve", "--host", HOST, "--port", str(port), "--data-dir", data_dir,
                         *XES_FLAGS, "--redis", url, "--node-id", f"bench{i}", *share, *extra]
            proc = subprocess.Popen(taskset(cores) + cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=HERE)
            stack.callback(stop, proc)
            nodes.append(proc)
            ports.append(port)
            wait_port(port, proc)
            if extra:  # one worker listening is not all of them: wait for the parent's word
                wait_log(log_path, seen, "XES is running with", proc)
        time.sleep(0.5)
        yield Server(kind, nodes[0], ports[0], f"ws://{HOST}:{ports[0]}",
                     nodes=nodes if count > 1 else [],
                     bases=[f"ws://{HOST}:{p}" for p in ports], redis=redis_server)


def wait_log(path: Path, offset: int, line: str, proc: subprocess.Popen[bytes],
             timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before starting")
        with open(path, "rb") as f:
            f.seek(offset)
            if line.encode() in f.read():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{path.name}: no {line!r} after {timeout} s")


@contextlib.contextmanager
def running_server(kind: str, core: int, logdir: Path) -> Iterator[Server]:
    logdir.mkdir(parents=True, exist_ok=True)
    if kind in CLUSTERS:
        with running_cluster(kind, core, logdir) as cluster:
            yield cluster
        return
    port = free_port()
    with open(logdir / f"{kind}.log", "ab") as log, \
            tempfile.TemporaryDirectory(prefix=f"bench-{kind}-") as data_dir:
        proc = subprocess.Popen(taskset({core}) + server_command(kind, port, Path(data_dir)),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                cwd=HERE)
        try:
            wait_port(port, proc)
            time.sleep(0.5)  # let it finish starting (imports, JIT warm-up) before baselines
            yield Server(kind, proc, port, f"ws://{HOST}:{port}")
        finally:
            stop(proc)


class Workers:
    """The load-generator processes, driven with one JSON line per command."""

    def __init__(self, count: int, cores: set[int]) -> None:
        self.count = count
        self.cores = cores
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Workers:
        for i in range(self.count):
            proc = await asyncio.create_subprocess_exec(
                *taskset(self.cores), PY, str(HERE / "loadgen.py"), str(i),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=HERE,
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
        # taskset execs the worker in place: the child's pid is the worker's.
        return sum(cpu_seconds(p.pid) for p in self.procs)


# Statistics -----------------------------------------------------------------------------------
def percentile(samples: list[int], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return float(ordered[k])


async def sleep_until_ns(t: int) -> None:
    await asyncio.sleep(max(0.0, (t - time.monotonic_ns()) / 1e9))


# Measured windows -----------------------------------------------------------------------------
@dataclass
class Bench:
    """What every scenario needs: the workers, where servers run, the noise check."""

    plan: Plan
    workers: Workers
    server_core: int
    logdir: Path
    limits: NoiseLimits
    figures: Figures

    def probe(self) -> NoiseProbe:
        return NoiseProbe(self.limits)


@dataclass
class Sampler:
    """Server and generator CPU across one window, read at the window's edges, and the noise
    check bracketing the same instants."""

    server: Server
    workers: Workers
    probe: NoiseProbe
    start_ns: int
    end_ns: int
    server_cpu: float = 0.0
    redis_cpu: float = 0.0
    gen_cpu: float = 0.0
    noise: NoiseReading | None = None

    async def run(self) -> None:
        await sleep_until_ns(self.start_ns)
        self.probe.start()
        s0, r0, g0 = self.server.cpu(), self.server.redis_cpu(), self.workers.cpu()
        await sleep_until_ns(self.end_ns)
        self.server_cpu = self.server.cpu() - s0
        self.redis_cpu = self.server.redis_cpu() - r0
        self.gen_cpu = self.workers.cpu() - g0
        self.noise = self.probe.stop()


async def measured(bench: Bench, server: Server, start_ns: int, end_ns: int,
                   work: Awaitable[list[dict[str, Any]]]) -> tuple[Sampler, list[dict[str, Any]]]:
    sampler = Sampler(server, bench.workers, bench.probe(), start_ns, end_ns)
    replies, _ = await asyncio.gather(work, sampler.run())
    return sampler, replies


async def until_quiet(bench: Bench, label: str,
                      measure: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Measure; while the noise check calls the window disturbed, measure again (bounded).

    Returns the quiet window's result with every attempt's noise under `noise`, or
    {"disturbed": True, ...} with the last attempt's values kept under `disturbed_values` (for
    the record only: the report never prints them as a figure).
    """
    seen: list[dict[str, object]] = []
    result: dict[str, Any] = {}
    for attempt in range(1 + bench.plan.retries):
        result = await measure()
        reading: NoiseReading = result.pop("_noise")
        seen.append(reading.as_dict())
        if reading.quiet:
            return {**result, "noise": seen}
        print(f"  ~ {label}: disturbed ({reading}); attempt {attempt + 1} of "
              f"{1 + bench.plan.retries}", flush=True)
        await asyncio.sleep(1.0)
    return {"disturbed": True, "noise": seen, "disturbed_values": result}


def value(result: dict[str, Any], key: str) -> float | None:
    if result.get("disturbed"):
        return None
    v = result.get(key)
    return float(v) if isinstance(v, (int, float)) and v == v else None  # NaN: not a figure


# Scenarios ------------------------------------------------------------------------------------
def proto_of(kind: str) -> str:
    return "peerjs" if kind == "peerjs" else "xes"  # the bare relay speaks XES's subset


async def connect(bench: Bench, server: Server, n: int, pair: bool) -> dict[str, Any]:
    workers = bench.workers
    msgs = [{"cmd": "connect", "proto": proto_of(server.kind), "base": server.base,
             "bases": server.bases or [server.base], "n": k, "pair": pair, "concurrency": 100,
             "timeout": 300, "sources": SOURCE_ADDRESSES}
            for k in workers.split(n)]
    replies = await workers.call(msgs, timeout=400)
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


def idle_limits(n: int) -> dict[str, Any]:
    """What stands between this machine and n idle clients on one server process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = (high - low + 1) * len(SOURCE_ADDRESSES)
    avail_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            avail_kib = int(line.split()[1])
    # Per client, generously: ~30 KiB in the server (the bare relay's figure), ~40 KiB in the
    # load generator, ~10 KiB of kernel socket state for the two ends.
    need_kib = n * 80
    limits: dict[str, Any] = {
        "clients": n,
        "file_descriptors": {"need_per_process": n + 100, "soft": soft, "hard": hard,
                             "ok": n + 100 <= soft},
        "ephemeral_ports": {"need": n, "have": ports, "source_addresses": len(SOURCE_ADDRESSES),
                            "ok": n <= ports},
        "memory": {"need_kib_about": need_kib, "available_kib": avail_kib,
                   "ok": need_kib <= avail_kib},
    }
    blockers = [k for k in ("file_descriptors", "ephemeral_ports", "memory") if not limits[k]["ok"]]
    limits["ok"] = not blockers
    if "file_descriptors" in blockers:
        limits["why"] = (f"file descriptors: one server process holds one socket per client, and "
                         f"RLIMIT_NOFILE here is {soft:,} (hard limit {hard:,}); raising the hard "
                         "limit needs CAP_SYS_RESOURCE, which this machine's root does not have")
    elif blockers:
        limits["why"] = ", ".join(blockers)
    return limits


def largest_idle(n: int) -> int:
    """The most clients the file-descriptor limit allows, in thousands, at most n."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(1000, min(n, (soft - 500) // 1000 * 1000))


async def scenario_idle(bench: Bench, kinds: tuple[str, ...], n: int) -> dict[str, Any]:
    """1: n idle clients on a fresh server: RSS per connection, connect rate, idle CPU.

    Memory does not depend on neighbours' CPU, but connect rate and idle CPU do: those go
    through the noise check (the window is the idle period; connecting is timed separately and
    its noise is recorded).
    """
    plan, figures = bench.plan, bench.figures
    limits = idle_limits(n)
    measured_n = n if limits["ok"] else largest_idle(n)
    runs = plan.idle_runs if n <= 20_000 else 1  # asked for more: minutes each, once
    tag = f"{n:,}" if measured_n == n else f"{measured_n:,} (of {n:,})"
    mem_key, rate_key, cpu_key = f"idle_kib_{n}", f"connects_{n}", f"idle_cpu_{n}"
    figures.define(mem_key, f"memory per idle connection, {tag} clients", "KiB", runs,
                   section="idle")
    figures.define(rate_key, f"connects per second, {tag} clients", "/s", runs, 0, "idle")
    figures.define(cpu_key, f"server CPU while idle, {tag} clients", "% core", runs, 2, "idle")
    redis_key = f"redis_bytes_per_session_{n}"
    if any(k in CLUSTERS for k in kinds):
        figures.define(redis_key, f"Redis memory per session, {tag} clients (INFO used_memory)",
                       "B", runs, 0, "cluster")
        for node in (0, 1):
            figures.define(f"idle_kib_node{node}_{n}", f"memory per idle connection on node "
                           f"{node + 1} of 2, {tag} clients", "KiB", runs, 1, "cluster")
    if not limits["ok"]:
        figures.note(mem_key, f"{n:,} clients not measured here: {limits.get('why')}; measured "
                              f"at {measured_n:,}")
    raw: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for rep in range(runs):
        order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
        for kind in order:
            r = await idle_once(bench, kind, measured_n)
            raw[kind].append(r)
            quiet = not r.get("disturbed")
            figures.put(mem_key, kind, rep, r["rss_per_conn_kib"] if r["connected"] == measured_n
                        else None)
            figures.put(rate_key, kind, rep, r["connect_per_s"] if r["connect_quiet"] else None,
                        [r["connect_noise"]])
            figures.put(cpu_key, kind, rep, r["idle_cpu_pct"] if quiet else None, r["noise"])
            if "redis_bytes_per_session" in r:
                figures.put(redis_key, kind, rep, r["redis_bytes_per_session"])
                for node, kib in enumerate(r["rss_per_conn_kib_by_node"][:2]):
                    figures.put(f"idle_kib_node{node}_{n}", kind, rep, kib)
                print(f"  [{rep + 1}/{runs}] {kind}: RSS per connection by node "
                      f"{[round(x, 1) for x in r['rss_per_conn_kib_by_node']]} KiB, Redis "
                      f"{r['redis_bytes_per_session']:,.0f} B per session", flush=True)
            print(f"  [{rep + 1}/{runs}] {kind} idle {measured_n:,}: "
                  f"{r['connected']:,} connected, {r['rss_per_conn_kib']:.1f} KiB/conn, "
                  f"{r['connect_per_s']:.0f} conn/s, {r['idle_cpu_pct']:.2f}% CPU idle"
                  f"{'' if quiet else ' (idle window disturbed)'}", flush=True)
    return {"limits": limits, "measured_clients": measured_n, "runs": raw}


async def idle_once(bench: Bench, kind: str, n: int) -> dict[str, Any]:
    plan = bench.plan
    with running_server(kind, bench.server_core, bench.logdir) as server:
        pids = server.node_pids()
        rss0 = [rss_kib(p) for p in pids]
        redis0 = server.redis.used_memory() if server.redis is not None else 0
        probe = bench.probe()
        probe.start()
        c = await connect(bench, server, n, pair=True)
        connect_noise = probe.stop()
        await asyncio.sleep(2.0)  # let allocators and GC settle before reading RSS
        rss1 = [rss_kib(p) for p in pids]
        redis1 = server.redis.used_memory() if server.redis is not None else 0

        async def window() -> dict[str, Any]:
            start = time.monotonic_ns() + int(0.2e9)
            end = start + int(plan.idle_seconds * 1e9)
            sampler, replies = await measured(
                bench, server, start, end,
                bench.workers.all({"cmd": "idle", "until": end, "heartbeat_s": 5.0}))
            return {"_noise": sampler.noise,
                    "idle_cpu_pct": 100 * sampler.server_cpu / plan.idle_seconds,
                    "heartbeats": sum(r["heartbeats"] for r in replies),
                    "idle_disconnects": sum(r["disconnects"] for r in replies)}

        idle = await until_quiet(bench, f"{kind} idle {n}", window)
        rss2 = [rss_kib(p) for p in pids]
        await bench.workers.all({"cmd": "close", "settle_s": 0.5})
    grown = [max(a, b) - base for base, a, b in zip(rss0, rss1, rss2, strict=True)]
    connected = max(1, c["connected"])
    out = {**c, **idle.get("disturbed_values", {}), **idle,
           "rss_base_kib": sum(rss0), "rss_kib": sum(rss1), "rss_after_idle_kib": sum(rss2),
           "rss_per_conn_kib": sum(grown) / connected, "connect_quiet": connect_noise.quiet,
           "connect_noise": connect_noise.as_dict()}
    if server.redis is not None:
        # Clients went to the nodes in turn (with --workers the kernel spread them: about evenly).
        out["rss_per_conn_kib_by_node"] = [g / (connected / len(pids)) for g in grown]
        out["redis_used_memory"] = [redis0, redis1]
        out["redis_bytes_per_session"] = (redis1 - redis0) / connected
    return out


async def relay_window(bench: Bench, server: Server, mode: str, warmup_s: float,
                       window_s: float, rate: float = 0.0) -> dict[str, Any]:
    """One relay window. open: `rate` messages per second on a 1 ms schedule from now on, the
    first warmup_s unmeasured; closed: every pair keeps one message in flight (saturation)."""
    workers = bench.workers
    start = time.monotonic_ns() + int(warmup_s * 1e9)
    end = start + int(window_s * 1e9)
    # Pairs are spread evenly over the workers, so is the offered rate.
    msg = {"cmd": "relay", "mode": mode, "measure_from": start, "end": end, "inflight": 1,
           "rate": rate / workers.count, "drain_s": 30.0}
    sampler, replies = await measured(bench, server, start, end,
                                      workers.call([msg] * workers.count,
                                                   timeout=warmup_s + window_s + 60))
    received = sum(r["received"] for r in replies)
    samples = [s for r in replies for s in r["samples"]]
    disconnects = sum(r["disconnects"] for r in replies)
    if disconnects:
        print(f"  ! {server.kind}: {disconnects} disconnects during relay "
              f"(close codes {[r['close_codes'] for r in replies]})", flush=True)
    per_s = received / window_s
    return {
        "_noise": sampler.noise,
        "mode": mode, "offered_per_s": rate if mode == "open" else None,
        "messages": received, "per_s": per_s,
        # Below 97 % of the offered load the server has a queue: latency then measures the queue.
        "carried": mode != "open" or per_s >= 0.97 * rate,
        "server_cpu_s": sampler.server_cpu, "server_cpu_pct": 100 * sampler.server_cpu / window_s,
        "us_per_msg": 1e6 * sampler.server_cpu / received if received else float("nan"),
        "redis_us_per_msg": 1e6 * sampler.redis_cpu / received if received else float("nan"),
        "gen_cpu_pct": 100 * sampler.gen_cpu / window_s,
        "mean_bytes": sum(r["bytes"] for r in replies) / received if received else 0,
        "p50_us": percentile(samples, 50), "p99_us": percentile(samples, 99),
        "p999_us": percentile(samples, 99.9), "max_behind": max(r["behind_max"] for r in replies),
        "disconnects": disconnects,
        "undelivered": sum(r["undelivered"] for r in replies),
    }


async def setup_window(bench: Bench, server: Server, lead_s: float,
                       window_s: float) -> dict[str, Any]:
    """3: every connected pair does call set-ups back to back; count those within the window."""
    start = time.monotonic_ns() + int(lead_s * 1e9)
    end = start + int(window_s * 1e9)
    sampler, replies = await measured(
        bench, server, start, end,
        bench.workers.all({"cmd": "setup", "measure_from": start, "end": end, "grace_s": 20},
                          timeout=lead_s + window_s + 60))
    done = sum(r["setups"] for r in replies)
    errors = [e for r in replies for e in r["first_errors"]]
    if errors:
        print(f"  ! {server.kind} set-up errors: {errors[:2]}", flush=True)
    samples = [s for r in replies for s in r["samples"]]
    return {
        "_noise": sampler.noise,
        "setups": done, "per_s": done / window_s,
        "us_per_setup": 1e6 * sampler.server_cpu / done if done else float("nan"),
        "redis_us_per_setup": 1e6 * sampler.redis_cpu / done if done else float("nan"),
        "server_cpu_pct": 100 * sampler.server_cpu / window_s,
        "gen_cpu_pct": 100 * sampler.gen_cpu / window_s,
        "p50_ms": percentile(samples, 50) / 1000, "p99_ms": percentile(samples, 99) / 1000,
        "errors": sum(r["errors"] for r in replies),
    }


def rate_tag(rate: float) -> str:
    return f"{int(rate):,}"


async def scenario_traffic(bench: Bench, kinds: tuple[str, ...],
                           profile: Path | None) -> dict[str, Any]:
    """2 and 3: relay at fixed offered loads and at saturation, and call set-ups.

    One repetition measures every server, each freshly started, in an order that rotates from
    one repetition to the next; ratios are taken inside each repetition.
    """
    plan, figures = bench.plan, bench.figures
    reps = plan.runs
    for rate in plan.fixed_rates:
        t = rate_tag(rate)
        figures.define(f"us_per_msg_{int(rate)}", f"relay: server CPU per message at {t} msg/s",
                       "µs", reps, 1, "relay")
        figures.define(f"p50_{int(rate)}", f"relay: p50 latency at {t} msg/s", "µs", reps, 0,
                       "relay")
        figures.define(f"p99_{int(rate)}", f"relay: p99 latency at {t} msg/s", "µs", reps, 0,
                       "relay")
    figures.define("us_per_msg_sat", "relay: server CPU per message at saturation", "µs", reps,
                   1, "relay")
    figures.define("msgs_per_s_sat", "relay: messages per second at saturation", "/s", reps, 0,
                   "relay")
    figures.define("us_per_setup", "server CPU per call set-up", "µs", reps, 0, "setup")
    figures.define("setups_per_s", "call set-ups per second (generator-bound)", "/s", reps, 0,
                   "setup")
    if any(k in CLUSTERS for k in kinds):
        for rate in plan.fixed_rates:
            figures.define(f"redis_us_per_msg_{int(rate)}", f"relay: Redis CPU per message at "
                           f"{rate_tag(rate)} msg/s", "µs", reps, 1, "cluster")
        figures.define("redis_us_per_setup", "Redis CPU per call set-up", "µs", reps, 0,
                       "cluster")
    raw: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    for rep in range(reps):
        order = kinds[rep % len(kinds):] + kinds[:rep % len(kinds)]
        with contextlib.ExitStack() as stack:
            servers = {k: stack.enter_context(running_server(k, bench.server_core, bench.logdir))
                       for k in order}
            for kind in order:
                raw[kind].append(await traffic_once(bench, servers[kind], rep))
        with contextlib.ExitStack() as stack:
            if profile is not None and rep == reps - 1 and "xes" in kinds:
                server = stack.enter_context(running_server("xes", bench.server_core, bench.logdir))
                await connect(bench, server, 2 * plan.pairs, pair=True)
                raw["profile"] = [await profile_relay(bench, server, profile)]
                await bench.workers.all({"cmd": "close", "settle_s": 0.5})
    return raw


async def traffic_once(bench: Bench, server: Server, rep: int) -> dict[str, Any]:
    plan, figures, kind = bench.plan, bench.figures, server.kind
    out: dict[str, Any] = {}
    c = await connect(bench, server, 2 * plan.pairs, pair=True)
    out["pairs"] = c["pairs"]
    for rate in plan.fixed_rates:
        r = await until_quiet(
            bench, f"{kind} at {rate_tag(rate)}/s",
            functools.partial(relay_window, bench, server, "open", plan.warmup_s, plan.window_s,
                              rate))
        out[f"open_{int(rate)}"] = r
        if not r.get("disturbed") and not r["carried"]:
            note = (f"{kind} carried {r['per_s']:,.0f} of {rate_tag(rate)} msg/s offered: "
                    "its latency there measures a queue")
            figures.note(f"p99_{int(rate)}", note)
        figures.put(f"us_per_msg_{int(rate)}", kind, rep, value(r, "us_per_msg"), r["noise"])
        figures.put(f"p50_{int(rate)}", kind, rep, value(r, "p50_us"), r["noise"])
        figures.put(f"p99_{int(rate)}", kind, rep, value(r, "p99_us"), r["noise"])
        if server.redis is not None:
            figures.put(f"redis_us_per_msg_{int(rate)}", kind, rep, value(r, "redis_us_per_msg"),
                        r["noise"])
        print(f"  [{rep + 1}/{plan.runs}] {kind} at {rate_tag(rate)}/s: " + (
            "no quiet window" if r.get("disturbed") else
            f"got {r['per_s']:,.0f}/s, {r['us_per_msg']:.1f} µs/msg, p50 {r['p50_us']:.0f} µs, "
            f"p99 {r['p99_us']:.0f} µs, generator {r['gen_cpu_pct']:.0f}%"), flush=True)
    r = await until_quiet(bench, f"{kind} saturation",
                          lambda: relay_window(bench, server, "closed", 0.5, plan.window_s))
    out["closed"] = r
    figures.put("us_per_msg_sat", kind, rep, value(r, "us_per_msg"), r["noise"])
    figures.put("msgs_per_s_sat", kind, rep, value(r, "per_s"), r["noise"])
    print(f"  [{rep + 1}/{plan.runs}] {kind} saturation: " + (
        "no quiet window" if r.get("disturbed") else
        f"{r['per_s']:,.0f} msg/s, {r['us_per_msg']:.1f} µs/msg ({r['server_cpu_pct']:.0f}% of "
        f"a core), generator {r['gen_cpu_pct']:.0f}%"), flush=True)
    await bench.workers.all({"cmd": "close", "settle_s": 0.5})

    # Fresh connections in no room: an XES set-up joins and leaves a room itself.
    await connect(bench, server, 2 * plan.setup_pairs, pair=False)
    st = await until_quiet(bench, f"{kind} set-ups",
                           lambda: setup_window(bench, server, plan.warmup_s,
                                                plan.setup_window_s))
    out["setup"] = st
    figures.put("us_per_setup", kind, rep, value(st, "us_per_setup"), st["noise"])
    figures.put("setups_per_s", kind, rep, value(st, "per_s"), st["noise"])
    if server.redis is not None:
        figures.put("redis_us_per_setup", kind, rep, value(st, "redis_us_per_setup"),
                    st["noise"])
    await bench.workers.all({"cmd": "close", "settle_s": 0.5})
    print(f"  [{rep + 1}/{plan.runs}] {kind} set-ups: " + (
        "no quiet window" if st.get("disturbed") else
        f"{st['per_s']:.0f}/s, {st['us_per_setup']:.0f} µs server CPU each "
        f"({st['server_cpu_pct']:.0f}% of a core), generator {st['gen_cpu_pct']:.0f}%"),
        flush=True)
    return out


async def profile_relay(bench: Bench, server: Server, dest: Path) -> dict[str, Any]:
    """py-spy on the XES server during a full-speed relay window (its own, unmeasured run:
    sampling costs the server some CPU)."""
    plan = bench.plan
    spy = shutil.which("py-spy") or str(Path(PY).parent / "py-spy")
    dest.parent.mkdir(parents=True, exist_ok=True)
    folded = dest.with_suffix(".folded")
    proc = await asyncio.create_subprocess_exec(
        *taskset(bench.workers.cores), spy, "record", "-p", str(server.pid),
        "-d", str(int(plan.profile_s)), "-r", "250", "--nonblocking", "-f", "raw",
        "-o", str(folded), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    await asyncio.sleep(0.5)
    await relay_window(bench, server, "closed", 0.0, plan.profile_s + 0.5)
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
    out_file = logdir / "matchmaking.json"
    probe = NoiseProbe(NoiseLimits())
    probe.start()
    proc = await asyncio.create_subprocess_exec(
        *taskset({0}), PY, str(script), "--waiting", str(plan.match_waiting),
        "--json", str(out_file), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, cwd=ROOT)
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), 600)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": "matchmaking.py ran over 600 s"}
    reading = probe.stop()
    if proc.returncode != 0 or not out_file.exists():
        return {"error": stdout.decode(errors="replace")[-800:]}
    result: dict[str, Any] = json.loads(out_file.read_text())
    result["noise"] = reading.as_dict()
    return result


async def scenario_browser(plan: Plan, logdir: Path, limits: NoiseLimits,
                           retries: int) -> dict[str, Any]:
    """5: real Chromium, join-to-first-audio with a per-step timeline, XES against the bare
    page on the bare relay (bench/browser_bench.py, which runs its own noise check per call)."""
    out_file = logdir / "browser.json"
    servers = ["xes", "bare"] + (["xes-before"] if os.environ.get("BENCH_XES_BEFORE_CMD") else [])
    return await _run_page_bench("browser_bench.py", out_file, [
        "--calls", str(plan.browser_calls), "--servers", ",".join(servers),
        "--noise-others", str(limits.others_cores), "--noise-steal", str(limits.steal_cores),
        "--retries", str(retries)])


async def scenario_mesh(plan: Plan, logdir: Path, limits: NoiseLimits) -> dict[str, Any]:
    """6: the browser's cost in a full room, XES's page against the bare page
    (bench/mesh_bench.py: the time each newcomer takes to hear everyone, then Chromium's CPU)."""
    out_file = logdir / "mesh.json"
    servers = ["xes", "bare"] + (["xes-before"] if os.environ.get("BENCH_XES_BEFORE_CMD") else [])
    return await _run_page_bench("mesh_bench.py", out_file, [
        "--people", str(plan.mesh_people), "--servers", ",".join(servers),
        "--window", str(plan.mesh_window_s), "--noise-others", str(limits.others_cores),
        "--noise-steal", str(limits.steal_cores)])


async def _run_page_bench(script: str, out_file: Path, args: list[str]) -> dict[str, Any]:
    """Run one of the browser benchmarks (its own process, 1,500 s at most); its JSON result.

    On every core, as a user's browser runs: the coordinator pins itself to the load
    generators' cores, and a child inherits that, which put both browsers, their WebRTC threads,
    the servers and coturn on one core (each call about twice as long as when run alone)."""
    every_core = set(range(os.cpu_count() or 1))
    proc = await asyncio.create_subprocess_exec(
        PY, str(HERE / script), *args, "--json", str(out_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=ROOT,
        preexec_fn=pin(every_core))
    try:
        stdout, _ = await asyncio.wait_for(proc.communicate(), 1500)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"error": f"{script} ran over 1500 s"}
    print(stdout.decode(errors="replace")[-3000:], flush=True)
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
    merge: bool
    limits: NoiseLimits
    variants: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)


async def run(opts: Options, results: dict[str, Any]) -> dict[str, Any]:
    ncpu = os.cpu_count() or 1
    server_core = 0
    gen_cores = set(range(1, ncpu)) or {0}
    # The coordinator only sleeps and reads /proc; keep it off the server's core too.
    pin(gen_cores)()
    logdir = opts.out.parent / "raw"
    plan = opts.plan
    figures = Figures(results.setdefault("figures", {}))
    run_info: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "quick": opts.quick,
        "scenarios": list(opts.scenarios), "servers": list(opts.servers + opts.variants),
        "machine": machine(), "plan": plan.__dict__,
        "noise_limits": opts.limits.__dict__,
        "setup": {"server_core": server_core, "generator_cores": sorted(gen_cores),
                  "pinning": "taskset -c 0 (server), taskset -c 1 (load generators)",
                  "generator_processes": opts.workers,
                  "source_addresses": f"{SOURCE_ADDRESSES[0]}-{SOURCE_ADDRESSES[-1]}",
                  "xes_flags": " ".join(XES_FLAGS) + " (rate limit still checked on every "
                               "message, budget raised for the bench)",
                  "peerjs": "npm peer " + peer_version() + ", PeerServer() with concurrent_limit"
                            " 200000, alive_timeout 600 s, no per-connection logging"},
        "notes": opts.notes,
    }
    if any(k in CLUSTERS for k in opts.servers + opts.variants):
        run_info["setup"]["clusters"] = CLUSTER_PINNING
    results.setdefault("runs", []).append(run_info)
    async with Workers(opts.workers, gen_cores) as workers:
        bench = Bench(plan, workers, server_core, logdir, opts.limits, figures)
        # The most telling figures first, while the quiet lasts.
        if "traffic" in opts.scenarios:
            prof = logdir / "profile-xes-relay.json" if opts.profile else None
            results["traffic"] = await scenario_traffic(bench, opts.servers + opts.variants, prof)
            if prof is not None and results["traffic"].get("profile"):
                results["profile"] = results["traffic"]["profile"][0]
            save(opts, results)
    if "browser" in opts.scenarios:
        browser = await scenario_browser(plan, logdir, opts.limits, plan.retries)
        results["browser"] = browser
        for key, fig in browser.get("figures", {}).items():
            figures.data[key] = fig
        save(opts, results)
    if "mesh" in opts.scenarios:
        results["mesh"] = await scenario_mesh(plan, logdir, opts.limits)
        save(opts, results)
    async with Workers(opts.workers, gen_cores) as workers:
        bench = Bench(plan, workers, server_core, logdir, opts.limits, figures)
        if "idle" in opts.scenarios:
            idle = results.setdefault("idle", {})
            for n in plan.idle_sizes:
                idle[str(n)] = await scenario_idle(bench, opts.servers, n)
                save(opts, results)  # what is measured survives an interrupted run
    if "match" in opts.scenarios:
        results["matchmaking"] = await scenario_matchmaking(plan, logdir)
    figures.summarize()
    run_info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    run_info["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def save(opts: Options, results: dict[str, Any]) -> None:
    """Write latest.json and latest.md with what is measured so far."""
    Figures(results.setdefault("figures", {})).summarize()
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(results, indent=1, default=str))
    from report import write_report

    write_report(results, opts.out.with_suffix(".md"))


def peer_version() -> str:
    try:
        data = json.loads((HERE / "node_modules/peer/package.json").read_text())
        return str(data.get("version", "?"))
    except OSError:
        return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description="XES vs PeerJS vs a bare relay: benchmarks")
    parser.add_argument("--quick", action="store_true", help="smaller, shorter: a few minutes")
    parser.add_argument("--servers", default=",".join(SERVERS),
                        help=f"any of {', '.join(SERVERS + VARIANTS)}")
    parser.add_argument("--variants", default="",
                        help=f"more servers for the relay and set-up scenarios only: any of "
                             f"{', '.join(VARIANTS)} (e.g. xes-asyncio: XES before uvloop)")
    parser.add_argument("--scenarios", default="traffic,browser,mesh,idle,match")
    parser.add_argument("--workers", type=int, default=0,
                        help="load-generator processes (default: one per core not used by the server)")
    parser.add_argument("--out", type=Path, default=HERE / "results/latest.json")
    parser.add_argument("--merge", action="store_true",
                        help="add to the figures already in --out instead of starting afresh")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy on the XES server")
    parser.add_argument("--runs", type=int, help="repetitions per figure (default 3)")
    parser.add_argument("--idle-sizes", help="comma-separated client counts (default 10000,100000)")
    parser.add_argument("--retries", type=int, help="extra attempts per disturbed window (default 3)")
    parser.add_argument("--noise-others", type=float, default=NoiseLimits.others_cores,
                        help="other processes' CPU allowed in a window, in cores (default %(default)s)")
    parser.add_argument("--noise-steal", type=float, default=NoiseLimits.steal_cores,
                        help="steal time allowed in a window, in cores (default %(default)s)")
    parser.add_argument("--note", action="append", default=[], help="a line for the report")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.runs:
        plan.runs = args.runs
        plan.idle_runs = min(plan.idle_runs, args.runs)
    if args.retries is not None:
        plan.retries = args.retries
    if args.idle_sizes:
        plan.idle_sizes = tuple(int(x) for x in args.idle_sizes.split(","))
    ncpu = os.cpu_count() or 1
    opts = Options(plan=plan, quick=args.quick, servers=tuple(args.servers.split(",")),
                   scenarios=tuple(args.scenarios.split(",")),
                   workers=args.workers or max(1, ncpu - 1), out=args.out,
                   profile=not args.no_profile, merge=args.merge,
                   limits=NoiseLimits(args.noise_others, args.noise_steal), notes=list(args.note),
                   variants=tuple(v for v in args.variants.split(",") if v))
    previous: dict[str, Any] = {}
    if args.merge and args.out.exists():
        previous = json.loads(args.out.read_text())
    # `kill` (SIGTERM) stops the run like Ctrl-C: servers and generators are stopped on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = asyncio.run(run(opts, previous))
    save(opts, results)
    print(f"wrote {opts.out} and {opts.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
