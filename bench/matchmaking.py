"""Benchmark of the matchmaking core (xes.core.matchmaking.MatchQueue) with a large waiting queue.

Usage (stable: bench/run.sh calls it):

    .venv/bin/python bench/matchmaking.py [--waiting 100000] [--samples 20000] [--seed 4]
                                          [--rate 50] [--arrivals 200000] [--json out.json]

It prints a table and, with --json, writes the same figures to a file (keys below). Exit status 0.
Nothing is timed against a threshold: it measures, the reader judges.

1. Fill. --waiting users arrive within one simulated second, with relax_after = 10 s, so nobody
   relaxes during the fill. For them all to really wait, no two may be pairable, so the fill is:
   - one clique of 64 users with no preferences who all avoid one another (users who accept
     anyone at once pair at once: only a clique of mutual skips can keep more than one waiting);
   - a quarter in groups of 4 sharing a tag and a language, who all avoid one another inside
     the group (each group's tag and language are its own);
   - the rest with 1 to 3 tags, and one in two with a language, all of them unique to the user;
   - one user in five also carries an avoid list of 1 to 5 random earlier users (skip history).
   The script checks that len(queue) == --waiting afterwards.
2. Operations on the full queue, --samples of each, clock still before any deadline; each is
   timed alone with perf_counter_ns, and the queue is brought back to --waiting after each kind:
   - enqueue_wait: a newcomer with fresh tags (the common case: it waits);
   - enqueue_match: a newcomer sharing a tag with one random waiting user (paired at once);
   - enqueue_match_after_skips: a newcomer sharing a group's tag but avoiding 3 of its 4
     members (scans past 3, pairs with the 4th);
   - cancel: a random waiting user leaves;
   - tick_idle: tick() when nothing is due.
3. Relaxation storm: the clock moves past the fill's deadlines in 1 ms steps; each tick relaxes
   about waiting/1000 users, who pair with one another. tick_due is per call, and the storm's
   pairs_per_second is pairs made / time spent in tick.
4. Steady state: a fresh queue, --arrivals users arriving at --rate per simulated second: 30% with
   no preferences; 45% with 1 to 3 of 40 tags (Zipf-like popularity); 25% with one of 8
   languages (and a tag one time in two); 10% avoid 1 to 3 recent users; 10% give up (cancel)
   after an exponential patience of mean 30 s. Time is simulated and event-driven (arrivals,
   cancels, and tick at next_deadline()), so the waits do not depend on the machine's speed;
   pairs_per_second is pairs made / CPU time spent inside the queue.

JSON keys: benchmark, waiting, seed, python, fill{seconds, cpu_seconds, waiting, rss_mb},
operations{<name>{samples, median_us, p99_us}}, relax_storm{ticks, relaxations, pairs,
relaxations_per_tick, us_per_relaxation, pairs_per_second}, steady{rate_per_s, arrivals,
relax_after_s, pairs, cancelled, left_waiting, pairs_per_second, wait_p50_s, wait_p99_s,
wait_max_s}, and at the top level pairs_per_second and wait_p99_s (the steady-state figures).
"""

from __future__ import annotations

import argparse
import base64
import heapq
import json
import platform
import random
import resource
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from xes.core.matchmaking import Match, MatchQueue, Ticket

RELAX_AFTER = 10.0
OPEN_CLIQUE = 64
GROUP_SIZE = 4
NONE: frozenset[str] = frozenset()
A = TypeVar("A")
R = TypeVar("R")


class Ids:
    """Peer ids shaped like the server's (22 base64url characters, 128 bits), from a seed."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def next(self) -> str:
        raw = self._rng.getrandbits(128).to_bytes(16, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return sorted_values[rank]


def summary_us(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)
    return {
        "samples": len(ordered),
        "median_us": round(percentile([float(v) for v in ordered], 0.5) / 1000, 3),
        "p99_us": round(percentile([float(v) for v in ordered], 0.99) / 1000, 3),
    }


def rss_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Fill:
    """Builds the queue of users who all really wait, and newcomers for the measurements."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.ids = Ids(self.rng)
        self.fresh = 0
        self.peers: list[str] = []
        # Users with unique tags, by one of their tags, to build newcomers that match them.
        self.unique_tag_of: dict[str, str] = {}
        self.groups: list[tuple[str, str, list[str]]] = []  # (tag, language, members)

    def fresh_key(self, prefix: str) -> str:
        self.fresh += 1
        return f"{prefix}{self.fresh}"

    def waiting_newcomer(self, at: float, peer: str | None = None) -> Ticket:
        """A user whose tags (and maybe language) nobody else has: it waits until relaxed."""
        peer = peer or self.ids.next()
        tags = frozenset(self.fresh_key("t") for _ in range(self.rng.randint(1, 3)))
        language = self.fresh_key("l") if self.rng.random() < 0.5 else None
        avoid = NONE
        if self.peers and self.rng.random() < 0.2:
            count = self.rng.randint(1, 5)
            avoid = frozenset(self.rng.choice(self.peers) for _ in range(count))
        self.peers.append(peer)
        self.unique_tag_of[peer] = next(iter(tags))
        return Ticket(peer, tags, language, avoid, at)

    def fill(self, queue: MatchQueue, waiting: int) -> None:
        clique = [self.ids.next() for _ in range(min(OPEN_CLIQUE, waiting))]
        for i, peer in enumerate(clique):
            queue.enqueue(Ticket(peer, NONE, None, frozenset(clique[:i]), 0.0))
        grouped = (waiting - len(clique)) // 4 // GROUP_SIZE * GROUP_SIZE
        for _ in range(grouped // GROUP_SIZE):
            tag, language = self.fresh_key("club"), self.fresh_key("lang")
            members = [self.ids.next() for _ in range(GROUP_SIZE)]
            self.groups.append((tag, language, members))
        rest = waiting - len(clique) - grouped
        # Interleave groups with the rest, arrival times spread over [0, 1) s.
        kinds = ["group"] * len(self.groups) + ["unique"] * rest
        self.rng.shuffle(kinds)
        group_iter = iter(self.groups)
        arrivals = sum(GROUP_SIZE if kind == "group" else 1 for kind in kinds)
        step = 1.0 / max(1, arrivals)
        now = 0.0
        for kind in kinds:
            if kind == "group":
                tag, language, members = next(group_iter)
                for i, peer in enumerate(members):
                    ticket = Ticket(peer, frozenset({tag}), language, frozenset(members[:i]), now)
                    assert queue.enqueue(ticket) == []
                    now += step
            else:
                assert queue.enqueue(self.waiting_newcomer(now)) == []
                now += step


def timed(operation: Callable[[A], R], argument: A) -> tuple[int, R]:
    """Nanoseconds operation(argument) took, and its result."""
    start = time.perf_counter_ns()
    result = operation(argument)
    return time.perf_counter_ns() - start, result


class Clock:
    """Simulated time for the operations phase: creeps forward so arrivals stay spread out."""

    def __init__(self, start: float, step: float) -> None:
        self.now = start
        self.step = step

    def advance(self) -> float:
        self.now += self.step
        return self.now


def bench_operations(
    queue: MatchQueue, fill: Fill, samples: int, waiting: int
) -> dict[str, dict[str, float]]:
    """Step 2 of the module docstring; the clock stays within [1, 2) s, before any deadline."""
    clock = Clock(1.0, 1.0 / (8 * samples))
    results: dict[str, dict[str, float]] = {}
    rng = fill.rng

    def top_up() -> None:
        while len(queue) < waiting:
            assert queue.enqueue(fill.waiting_newcomer(clock.advance())) == []

    timings = []
    for _ in range(samples):
        elapsed, matches = timed(queue.enqueue, fill.waiting_newcomer(clock.advance()))
        assert matches == []
        timings.append(elapsed)
    results["enqueue_wait"] = summary_us(timings)

    # Random users who wait alone (unique tags), as cancel and match targets.
    targets = rng.sample([p for p in fill.unique_tag_of if p in queue], 2 * samples)

    timings = []
    for peer in targets[:samples]:
        elapsed, was_waiting = timed(queue.cancel, peer)
        assert was_waiting
        timings.append(elapsed)
    results["cancel"] = summary_us(timings)
    top_up()

    timings = []
    for peer in targets[samples:]:
        tag = fill.unique_tag_of[peer]
        newcomer = Ticket(fill.ids.next(), frozenset({tag}), None, NONE, clock.advance())
        elapsed, matches = timed(queue.enqueue, newcomer)
        assert matches == [Match(peer, newcomer.peer)]
        timings.append(elapsed)
    results["enqueue_match"] = summary_us(timings)
    top_up()

    timings = []
    for tag, language, members in rng.sample(fill.groups, min(samples, len(fill.groups))):
        avoid = frozenset(members[:3])
        newcomer = Ticket(fill.ids.next(), frozenset({tag}), language, avoid, clock.advance())
        elapsed, matches = timed(queue.enqueue, newcomer)
        assert matches == [Match(members[3], newcomer.peer)]
        timings.append(elapsed)
    results["enqueue_match_after_skips"] = summary_us(timings)
    top_up()

    timings = []
    for _ in range(samples):
        elapsed, matches = timed(queue.tick, clock.advance())
        assert matches == []
        timings.append(elapsed)
    results["tick_idle"] = summary_us(timings)
    assert len(queue) == waiting
    return results


def bench_relax_storm(queue: MatchQueue) -> tuple[dict[str, float], dict[str, float]]:
    """Tick in 1 ms steps through every pending deadline (all within [10, 12) s)."""
    timings: list[int] = []
    # Everyone but the no-preference clique is pending, and relaxes in the storm.
    relaxations = len(queue) - OPEN_CLIQUE
    pairs = 0
    now = RELAX_AFTER
    while queue.next_deadline() is not None:
        now += 0.001
        elapsed, matches = timed(queue.tick, now)
        timings.append(elapsed)
        pairs += len(matches)
    total_s = sum(timings) / 1e9
    storm = {
        "ticks": len(timings),
        "relaxations": relaxations,
        "pairs": pairs,
        "relaxations_per_tick": round(relaxations / max(1, len(timings)), 1),
        "us_per_relaxation": round(total_s * 1e6 / max(1, relaxations), 3),
        "pairs_per_second": round(pairs / total_s) if total_s else 0,
    }
    return summary_us(timings), storm


def bench_steady(seed: int, rate: float, arrivals: int) -> dict[str, float]:
    """Event-driven simulation on a simulated clock; see the module docstring, step 4."""
    rng = random.Random(seed + 1)
    ids = Ids(rng)
    tags = [f"tag{i}" for i in range(40)]
    tag_weights = [1 / (i + 1) for i in range(len(tags))]
    languages = ["en", "es", "fr", "de", "pt", "hi", "ar", "zh"]
    language_weights = [8, 5, 3, 2, 2, 2, 1, 1]
    queue = MatchQueue(relax_after=RELAX_AFTER)
    arrived_at: dict[str, float] = {}
    recent: deque[str] = deque(maxlen=200)
    cancels: list[tuple[float, str]] = []
    waits: list[float] = []
    cpu_ns = 0
    pairs = cancelled = 0

    def record(matches: list[Match], now: float) -> None:
        nonlocal pairs
        for match in matches:
            pairs += 1
            for peer in (match.first, match.second):
                waits.append(now - arrived_at.pop(peer))

    def call(operation: Callable[[A], R], argument: A) -> R:
        nonlocal cpu_ns
        elapsed, result = timed(operation, argument)
        cpu_ns += elapsed
        return result

    for i in range(arrivals):
        now = i / rate
        # Everything due before this arrival, in time order: timers and people giving up.
        while True:
            deadline = queue.next_deadline()
            cancel_at = cancels[0][0] if cancels else float("inf")
            if deadline is not None and deadline <= min(now, cancel_at):
                record(call(queue.tick, deadline), deadline)
            elif cancel_at <= now:
                at, peer = heapq.heappop(cancels)
                record(call(queue.tick, at), at)  # the shell ticks before it cancels
                if call(queue.cancel, peer):
                    cancelled += 1
                    del arrived_at[peer]
            else:
                break
        peer = ids.next()
        kind = rng.random()
        chosen_tags: frozenset[str] = NONE
        language = None
        if kind >= 0.30:
            if kind < 0.75 or rng.random() < 0.5:
                count = rng.randint(1, 3)
                chosen_tags = frozenset(rng.choices(tags, tag_weights, k=count))
            if kind >= 0.75:
                language = rng.choices(languages, language_weights)[0]
        avoid = NONE
        if recent and rng.random() < 0.10:
            avoid = frozenset(rng.sample(list(recent), min(len(recent), rng.randint(1, 3))))
        ticket = Ticket(peer, chosen_tags, language, avoid, now)
        arrived_at[peer] = now
        recent.append(peer)
        if rng.random() < 0.10:
            heapq.heappush(cancels, (now + rng.expovariate(1 / 30), peer))
        record(call(queue.enqueue, ticket), now)
    waits.sort()
    cpu_s = cpu_ns / 1e9
    return {
        "rate_per_s": rate,
        "arrivals": arrivals,
        "relax_after_s": RELAX_AFTER,
        "pairs": pairs,
        "cancelled": cancelled,
        "left_waiting": len(queue),
        "pairs_per_second": round(pairs / cpu_s) if cpu_s else 0,
        "wait_p50_s": round(percentile(waits, 0.5), 3),
        "wait_p99_s": round(percentile(waits, 0.99), 3),
        "wait_max_s": round(waits[-1], 3) if waits else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, default=100_000, help="users in the full queue")
    parser.add_argument("--samples", type=int, default=20_000, help="timed calls per operation")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--rate", type=float, default=50.0, help="steady arrivals per second")
    parser.add_argument("--arrivals", type=int, default=200_000, help="steady-state arrivals")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.waiting < 2 * args.samples + OPEN_CLIQUE:
        parser.error("--waiting must be at least 2 * --samples + 64")

    queue = MatchQueue(relax_after=RELAX_AFTER)
    fill = Fill(args.seed)
    started, started_cpu = time.perf_counter(), time.process_time()
    fill.fill(queue, args.waiting)
    fill_s = time.perf_counter() - started
    assert len(queue) == args.waiting, (len(queue), args.waiting)
    fill_info = {
        "seconds": round(fill_s, 2),
        # CPU time too: on a shared machine, wall time also counts other processes' turns.
        "cpu_seconds": round(time.process_time() - started_cpu, 2),
        "waiting": len(queue),
        "rss_mb": rss_mb(),
    }

    operations = bench_operations(queue, fill, args.samples, args.waiting)
    operations["tick_due"], storm = bench_relax_storm(queue)
    steady = bench_steady(args.seed, args.rate, args.arrivals)

    results: dict[str, Any] = {
        "benchmark": "matchmaking",
        "waiting": args.waiting,
        "seed": args.seed,
        "python": platform.python_version(),
        "fill": fill_info,
        "operations": operations,
        "relax_storm": storm,
        "steady": steady,
        "pairs_per_second": steady["pairs_per_second"],
        "wait_p99_s": steady["wait_p99_s"],
    }
    print(
        f"matchmaking: {args.waiting:,} waiting (filled in {fill_s:.1f} s, "
        f"{fill_info['cpu_seconds']} s of CPU; peak RSS {fill_info['rss_mb']} MB), "
        f"seed {args.seed}, Python {results['python']}"
    )
    print(f"{'operation':<28}{'samples':>9}{'median µs':>12}{'p99 µs':>10}")
    for name, figures in operations.items():
        print(f"{name:<28}{figures['samples']:>9,}{figures['median_us']:>12.2f}{figures['p99_us']:>10.2f}")
    print(
        f"relaxation storm: {storm['relaxations']:,} relaxed in {storm['ticks']:,} ticks "
        f"(~{storm['relaxations_per_tick']}/tick, {storm['us_per_relaxation']} µs each), "
        f"{storm['pairs']:,} pairs, {storm['pairs_per_second']:,} pairs/s"
    )
    print(
        f"steady state: {steady['arrivals']:,} arrivals at {steady['rate_per_s']:g}/s "
        f"(simulated), {steady['pairs']:,} pairs, {steady['cancelled']:,} gave up, "
        f"{steady['left_waiting']} left waiting; {steady['pairs_per_second']:,} pairs/s of CPU; "
        f"wait p50 {steady['wait_p50_s']} s, p99 {steady['wait_p99_s']} s, "
        f"max {steady['wait_max_s']} s"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
