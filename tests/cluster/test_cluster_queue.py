"""The stranger queue's leader lease, fencing and Redis mirror, case by case, on a real Redis.

The property test (test_queue_property.py) drives thousands of operations; these name the cases
one by one: one leader at a time, a stale leader refused everywhere, the takeover and rebuild, the
atomic commit, the record of a match and its expiry, and a Redis that lost its state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from tests.core.test_signalling import NOW, make_core, match, pid, types
from xes.core.matchmaking import Match, Ticket
from xes.core.timing import Now
from xes.server.cluster_queue import (
    MATCH_RECORD_MS,
    JournaledQueue,
    NotLeader,
    QueueKeys,
    QueueLeader,
    ticket_from_record,
    ticket_record,
)

if TYPE_CHECKING:
    from tests.support.redis import RedisServer

LEASE_MS = 200
KEYS = QueueKeys()


def ticket(peer: str, at: float, tags: tuple[str, ...] = (), avoid: tuple[str, ...] = ()) -> Ticket:
    return Ticket(peer, frozenset(tags), None, frozenset(avoid), at, identity="id-" + peer)


def clock(monotonic_origin: float) -> Callable[[float], Now]:
    """A node's clock at test time t: its own monotonic origin, the shared wall clock."""
    return lambda t: Now(monotonic=monotonic_origin + t, unix=1_800_000_000.0 + t)


@asynccontextmanager
async def nodes(url: str, count: int, journaled: bool = False) -> AsyncIterator[list[QueueLeader]]:
    clients = [Redis.from_url(url) for _ in range(count)]
    try:
        yield [QueueLeader(client, f"n{i}", relax_after=10.0, lease_ms=LEASE_MS, journaled=journaled)
               for i, client in enumerate(clients)]
    finally:
        for client in clients:
            await client.aclose()


async def take_over(node: QueueLeader, now: Now) -> list[Match]:
    """Wait for the previous leader's lease to lapse, then lead."""
    for _ in range(100):
        decided = await node.acquire(now)
        if decided is not None:
            return decided
        await asyncio.sleep(LEASE_MS / 4000)
    raise AssertionError("the lease never lapsed")


async def reconnected(client: Redis) -> None:
    """Ping until the connection, broken by a restart, works again."""
    for _ in range(3):
        try:
            await client.ping()
            return
        except RedisConnectionError:
            await asyncio.sleep(0.05)
    raise AssertionError("Redis did not come back")


def run(redis_server: RedisServer, test: Callable[[str], Awaitable[None]]) -> None:
    asyncio.run(test(redis_server.url))


def test_one_leader_at_a_time_and_a_new_epoch_on_every_change(redis_server: RedisServer) -> None:
    async def test(url: str) -> None:
        async with nodes(url, 2) as (a, b):
            now = clock(0.0)
            assert await a.acquire(now(0)) == []
            assert await b.acquire(now(0)) is None  # a holds the lease
            assert await a.renew()
            first = a.epoch
            assert await take_over(b, now(0)) == []  # a stops renewing: b leads after the lease
            assert b.epoch == (first or 0) + 1
            assert not await a.renew() and a.epoch is None  # a learns it was replaced
            await b.resign()  # a graceful stop: a leads at once, under the next epoch
            assert await a.acquire(now(0)) == [] and a.epoch == (first or 0) + 2

    run(redis_server, test)


def test_a_replaced_leader_is_refused_every_write(redis_server: RedisServer) -> None:
    async def test(url: str) -> None:
        async with nodes(url, 2) as (a, b):
            now = clock(0.0)
            await a.acquire(now(0))
            await a.enqueue(ticket("x", 0.0, tags=("jazz",)), now(0))
            await a.enqueue(ticket("y", 0.0, tags=("go",)), now(0))
            # a decides x and y meet (their tags relaxed) but pauses before it commits ...
            decided = a.tick(now(10))
            assert decided == [Match("x", "y")]
            # ... b takes over meanwhile, and its rebuild decides the same
            assert await take_over(b, now(10)) == decided
            with pytest.raises(NotLeader) as refused:
                await a.commit(decided)
            assert refused.value.committed == [] and a.queue is None
            assert await b.commit(decided) == decided  # once, by the current leader
            for write in (lambda: a.enqueue(ticket("z", 11.0), now(11)),
                          lambda: a.cancel("x", now(11)), lambda: a.suspend("x"),
                          lambda: a.reinstate("x", now(11))):
                with pytest.raises(NotLeader):
                    await write()

    run(redis_server, test)


def test_a_stale_leader_still_holding_its_queue_is_refused_by_redis(redis_server: RedisServer) -> None:
    """Not by its own memory: it believes it leads, and only the Lua script's epoch check stops it."""
    async def test(url: str) -> None:
        async with nodes(url, 2) as (a, b):
            now = clock(0.0)
            await a.acquire(now(0))
            await a.enqueue(ticket("x", 0.0), now(0))
            await take_over(b, now(0))
            assert a.epoch is not None  # a was paused: it does not know yet
            with pytest.raises(NotLeader):
                await a.enqueue(ticket("y", 1.0), now(1))
            assert a.epoch is None
            records, _ = await b.load()
            assert [record.peer for record, _ in records] == ["x"]  # y never landed

    run(redis_server, test)


def test_the_new_leader_rebuilds_order_away_and_relaxation_and_commits_what_the_old_decided(
        redis_server: RedisServer) -> None:
    async def test(url: str) -> None:
        async with nodes(url, 2) as (a, b):
            a_now, b_now = clock(1_000.0), clock(5.0)  # two hosts, two monotonic origins
            await a.acquire(a_now(0))
            await a.enqueue(ticket("x", a_now(0).monotonic, tags=("jazz",)), a_now(0))
            await a.enqueue(ticket("w", a_now(1).monotonic), a_now(1), away=False)
            assert await a.suspend("w")
            await a.enqueue(ticket("y", a_now(2).monotonic, tags=("go",)), a_now(2))
            # At 12 x's wait is over and y's (at 12 too) is: x and y meet. a dies before it commits.
            assert a.tick(a_now(12)) == [Match("x", "y")]
            decided = await take_over(b, b_now(12))
            assert decided == [Match("x", "y")]
            assert await b.commit(decided) == decided
            assert b.queue is not None and [t.peer for t in b.queue.waiting()] == ["w"]
            # w is still away: nobody meets it until it is back.
            assert await b.enqueue(ticket("v", b_now(13).monotonic), b_now(13)) == []
            assert await b.reinstate("w", b_now(14)) == [Match("w", "v")]

    run(redis_server, test)


def test_a_commit_is_atomic_and_recorded_for_a_while(redis_server: RedisServer) -> None:
    async def test(url: str) -> None:
        async with nodes(url, 1) as (a,), Redis.from_url(url) as admin:
            now = clock(0.0)
            await a.acquire(now(0))
            assert await a.enqueue(ticket("x", 0.0), now(0)) == []
            decided = await a.enqueue(ticket("y", 1.0), now(1))
            assert decided == [Match("x", "y")]
            # Redis lost y's ticket meanwhile: the commit changes nothing, x still waits.
            await admin.zrem(KEYS.order, "y")
            with pytest.raises(RuntimeError):
                await a.commit(decided)
            assert await admin.zrange(KEYS.order, 0, -1) == [b"x"]
            assert await admin.get(KEYS.matched("x")) is None
            await admin.zadd(KEYS.order, {"y": 2})
            assert await a.commit(decided) == decided
            assert await admin.zcard(KEYS.order) == 0 and await admin.hlen(KEYS.tickets) == 0
            epoch = a.epoch
            assert await admin.get(KEYS.matched("x")) == f"y {epoch}".encode()
            assert await admin.get(KEYS.matched("y")) == f"x {epoch}".encode()
            assert 0 < await admin.pttl(KEYS.matched("x")) <= MATCH_RECORD_MS
            with pytest.raises(RuntimeError):  # committed once: never again
                await _recommit(a, decided)

    run(redis_server, test)


async def _recommit(leader: QueueLeader, decided: list[Match]) -> None:
    """Commit a match whose tickets are gone, as a leader would that forgot it committed."""
    leading = leader._leading
    assert leading is not None
    leading.seqs.update({"x": 1, "y": 2})
    await leader.commit(decided)


def test_after_redis_lost_everything_the_leader_republishes_under_a_newer_epoch(
        redis_server: RedisServer) -> None:
    async def test(url: str) -> None:
        async with nodes(url, 2) as (a, b):
            now = clock(0.0)
            for _ in range(3):  # epochs 1..3
                await a.acquire(now(0))
                await a.resign()
            await a.acquire(now(0))
            await a.enqueue(ticket("x", 0.0, tags=("jazz",)), now(0))
            await a.enqueue(ticket("y", 1.0, tags=("go",)), now(1))
            await a.suspend("y")
            assert a.epoch == 4
            waiting = a.queue.waiting() if a.queue is not None else []
            redis_server.restart()
            for node in (a, b):  # each connection notices the restart, as a node's shell does
                await reconnected(node.redis)
            assert await a.republish([(t, t.peer == "y", None) for t in waiting], now(2))
            assert a.epoch == 5  # above any epoch before the restart
            assert await b.acquire(now(2)) is None
            records, _ = await a.load()
            assert [(record.peer, away) for record, away in records] == [("x", False), ("y", True)]

    run(redis_server, test)


def test_a_core_that_changes_its_queue_itself_meets_only_committed_matches(
        redis_server: RedisServer) -> None:
    """The wiring at the leader: the core owns the journaled queue and defers its matches; the
    shell flushes the journal, commits, and only then lets the pair meet. A replaced leader's
    core starts nothing."""
    async def test(url: str) -> None:
        async with nodes(url, 2, journaled=True) as (a, b):
            core = make_core()
            core.defer_matches = True
            assert await a.acquire(NOW) == []
            assert isinstance(a.queue, JournaledQueue)
            core.queue = a.queue
            match(core, pid(1))
            match(core, pid(2))
            await a.flush(NOW)
            decided, core.decided = core.decided, []
            (committed,) = await a.commit(decided)
            actions = core.start_decided(committed, NOW)
            assert types(actions, pid(2)) == ["joined"]
            # Two more decide to meet; their tickets reach Redis, then a pauses before committing.
            match(core, pid(3))
            match(core, pid(4))
            await a.flush(NOW)
            decided, core.decided = core.decided, []
            assert await take_over(b, NOW) == decided  # b's rebuild decides the same, and commits
            assert await b.commit(decided) == decided
            with pytest.raises(NotLeader):
                await a.commit(decided)
            assert not any(pid(3) in room.members for room in core.rooms.values())

    run(redis_server, test)


@pytest.mark.parametrize(("text_only", "accepts_text"), [(True, False), (False, True), (False, False)])
def test_a_ticket_keeps_how_it_wants_to_talk_through_redis(text_only: bool, accepts_text: bool) -> None:
    """A new leader rebuilds the queue from these records: a text-only ticket that came back
    as a voice one would be matched with a voice user who never accepted text."""
    now = Now(monotonic=500.0, unix=1_800_000_000.0)
    ticket = Ticket("p", frozenset({"jazz"}), "fr", frozenset(), enqueued_at=490.0,
                    text_only=text_only, accepts_text=accepts_text)
    back = ticket_from_record(ticket_record(ticket, now), now)
    assert (back.text_only, back.accepts_text) == (text_only, accepts_text)
    assert back == ticket

