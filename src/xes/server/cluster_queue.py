"""The stranger queue across nodes: one leader at a time, its queue mirrored in Redis, and every
match committed by one Lua script, so that no ticket is ever matched twice or lost when the leader
changes (docs/architecture.md, "Stranger queue across nodes").

One node at a time leads the queue. It holds the lease ``xes:queue:leader`` (``PX`` a few seconds,
renewed) and the *epoch* ``xes:queue:epoch``, incremented on every change of leader. The sessions
of waiting strangers are homed at the leader, whose core's :class:`~xes.core.matchmaking.MatchQueue`
decides who meets whom, exactly as in one process. Redis holds the truth about which tickets wait:

- ``xes:queue:order``: a sorted set, peer → the ticket's arrival number (``xes:queue:seq``, drawn
  by Redis: the arrival order across every leader there has been);
- ``xes:queue:tickets``: a hash, peer → the ticket as plain values (:class:`QueuedTicket`: its
  request's tags and language, its ``avoid`` list, its identity hash, its arrival time, and an
  opaque record the cluster layer needs to adopt the session);
- ``xes:queue:away``: the set of suspended tickets (their user's socket is lost: rule 6);
- ``xes:queue:holder``: the node that holds the current epoch;
- ``xes:queue:matched:{peer}``: after a commit, the partner and the epoch, for ``MATCH_RECORD_MS``
  only: what the session's home may ask about a ticket that vanished while a leader died.

Every write is a Lua script that first checks the caller's epoch (and node) are current: a leader
that was paused or cut off past its lease, and replaced, has every write refused (*fencing*) and
steps down (:class:`NotLeader`). The match commit also checks that both tickets are still queued
(under the arrival numbers the leader saw) and removes both atomically. The leader decides in
memory, then commits: a match has happened when, and only when, its commit returned true, so the
shell starts the match room only then.

A new leader takes the lease with a fresh epoch (no write of an older epoch can land after that),
loads the tickets in arrival order and replays them into a fresh ``MatchQueue``
(:func:`rebuild_queue`): a ticket still in Redis was not paired when it arrived, so the replay
pairs exactly those the old leader would have paired by now, including the matches it decided but
died before committing. Arrival *order* is Redis's counter; arrival *times* (only the relaxation
of tags and language depends on them) are wall-clock readings, as each node's monotonic clock has
its own origin: a wall-clock difference between two nodes shifts a waiting ticket's relaxation by
that difference, never its order.

The Redis client is redis-py's asyncio client; one :class:`QueueLeader` per node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import msgspec

from ..core.matchmaking import Match, MatchQueue, Ticket
from ..core.timing import Now

if TYPE_CHECKING:  # imported by the cluster layer only when it runs: one process never needs it
    from redis.asyncio import Redis

__all__ = ["QueueKeys", "QueuedTicket", "QueueLeader", "JournaledQueue", "NotLeader", "TicketGone",
           "rebuild_queue",
           "ticket_record", "ticket_from_record", "MATCH_RECORD_MS"]

# How long `xes:queue:matched:{peer}` is kept: the resume cap, so that a session resuming after a
# leader died can still learn it was matched; then nothing about the match is left in Redis.
MATCH_RECORD_MS: Final = 120_000


@dataclass(frozen=True, slots=True)
class QueueKeys:
    """The queue's Redis keys (a prefix of their own lets tests run side by side)."""

    prefix: str = "xes:queue:"

    @property
    def leader(self) -> str:
        return self.prefix + "leader"

    @property
    def epoch(self) -> str:
        return self.prefix + "epoch"

    @property
    def holder(self) -> str:
        return self.prefix + "holder"

    @property
    def seq(self) -> str:
        return self.prefix + "seq"

    @property
    def order(self) -> str:
        return self.prefix + "order"

    @property
    def tickets(self) -> str:
        return self.prefix + "tickets"

    @property
    def away(self) -> str:
        return self.prefix + "away"

    def matched(self, peer: str) -> str:
        return self.prefix + "matched:" + peer


class QueuedTicket(msgspec.Struct, frozen=True, forbid_unknown_fields=False):
    """One waiting ticket as Redis keeps it: what ``MatchQueue`` needs, as plain values."""

    peer: str
    tags: list[str]                 # normalised by the core, sorted
    language: str | None
    avoid: list[str]                # peer ids and identity hashes, sorted
    identity: str | None            # the keyed identity hash
    arrived: float                  # wall-clock seconds when it arrived (relaxation only)
    text_only: bool = False         # how it wants to talk (docs/protocol.md, "Text only")
    accepts_text: bool = False
    # What the cluster layer needs to adopt the session at a new leader (its session record),
    # opaque to the queue.
    session: bytes | None = None


_encode: Final = msgspec.json.Encoder().encode
_decode: Final = msgspec.json.Decoder(QueuedTicket).decode


def ticket_record(ticket: Ticket, now: Now, session: bytes | None = None) -> QueuedTicket:
    """The plain values of ticket, its arrival moved from the monotonic clock to the wall clock."""
    return QueuedTicket(
        peer=ticket.peer, tags=sorted(ticket.tags), language=ticket.language,
        avoid=sorted(ticket.avoid), identity=ticket.identity,
        arrived=now.unix - (now.monotonic - ticket.enqueued_at), text_only=ticket.text_only,
        accepts_text=ticket.accepts_text, session=session)


def ticket_from_record(record: QueuedTicket, now: Now) -> Ticket:
    """The core's ticket again, its arrival put back on this node's monotonic clock."""
    return Ticket(peer=record.peer, tags=frozenset(record.tags), language=record.language,
                  avoid=frozenset(record.avoid),
                  enqueued_at=now.monotonic - (now.unix - record.arrived), identity=record.identity,
                  text_only=record.text_only, accepts_text=record.accepts_text)


class JournaledQueue(MatchQueue):
    """A ``MatchQueue`` that notes each change Redis must mirror, in order, for a core that
    changes its queue itself (``Signalling.queue``); :meth:`QueueLeader.flush` writes them."""

    def __init__(self, relax_after: float = 10.0) -> None:
        super().__init__(relax_after)
        # ("enqueue", ticket, away), ("cancel", peer, False) or ("away", peer, flag).
        self.journal: list[tuple[str, Ticket | str, bool]] = []

    def enqueue(self, ticket: Ticket, away: bool = False) -> list[Match]:
        matches = super().enqueue(ticket, away)
        self.journal.append(("enqueue", ticket, away))
        return matches

    def cancel(self, peer: str) -> bool:
        if not super().cancel(peer):
            return False
        self.journal.append(("cancel", peer, False))
        return True

    def suspend(self, peer: str) -> bool:
        if not super().suspend(peer):
            return False
        self.journal.append(("away", peer, True))
        return True

    def reinstate(self, peer: str, now: float) -> list[Match]:
        if peer in self:
            self.journal.append(("away", peer, False))
        return super().reinstate(peer, now)


def rebuild_queue(records: Iterable[tuple[QueuedTicket, bool]], relax_after: float,
                  now: Now, journaled: bool = False) -> tuple[MatchQueue, list[Match]]:
    """A fresh ``MatchQueue`` (a ``JournaledQueue`` with an empty journal if asked) from the
    waiting tickets in arrival order, each with its away flag, and the matches the replay makes:
    those the previous leader would have made by ``now``. Pure: no I/O."""
    queue = JournaledQueue(relax_after) if journaled else MatchQueue(relax_after)
    matches: list[Match] = []
    for record, away in records:
        matches += queue.enqueue(ticket_from_record(record, now), away=away)
    matches += queue.tick(now.monotonic)
    if isinstance(queue, JournaledQueue):
        queue.journal.clear()  # what it holds is what Redis holds
    return queue, matches


class TicketGone(RuntimeError):
    """A decided match's ticket is not in Redis (its data was lost: Redis restarted empty):
    nothing of ``match`` changed; ``committed`` lists the matches of the call committed before."""

    def __init__(self, match: Match, committed: Sequence[Match]) -> None:
        super().__init__(f"match {match} refused: a ticket is no longer in Redis")
        self.match = match
        self.committed = list(committed)


class NotLeader(Exception):
    """This node does not hold the current epoch (never had it, or was replaced): it has dropped
    its queue. ``committed`` lists the matches of the refused call that did commit before."""

    def __init__(self, message: str, committed: Sequence[Match] = ()) -> None:
        super().__init__(message)
        self.committed = list(committed)


# Every script returns -1 when the caller's epoch (or node) is not the current one.
_FENCE: Final = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return -1
end
"""

# KEYS: leader, epoch, holder. ARGV: node, lease ms, the highest epoch the node has seen.
# Takes the lease if nobody holds it; a fresh epoch, above any this node has seen (after a Redis
# restart without persistence the counter starts again, and an old leader's epoch must not come
# back by chance). Returns the epoch, or 0 if another node holds the lease.
_ACQUIRE: Final = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = math.max(tonumber(redis.call('GET', KEYS[2]) or '0'), tonumber(ARGV[3])) + 1
redis.call('SET', KEYS[2], epoch)
redis.call('SET', KEYS[3], ARGV[1])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return epoch
"""

# KEYS: epoch, holder, leader. ARGV: epoch, node, lease ms. The epoch is still ours: nobody led
# since, so (re)setting the lease is safe even if it lapsed. Returns 1, or -1 (replaced).
_RENEW: Final = _FENCE + """
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS: epoch, holder, leader. ARGV: epoch, node. A graceful stop: the next node need not wait.
_RESIGN: Final = _FENCE + """
redis.call('DEL', KEYS[3])
return 1
"""

# KEYS: epoch, holder, seq, order, tickets, away. ARGV: epoch, node, peer, record, away (0/1).
# Returns the ticket's arrival number, -1 (fenced) or -2 (that peer is already waiting).
_ENQUEUE: Final = _FENCE + """
if redis.call('ZSCORE', KEYS[4], ARGV[3]) then return -2 end
local seq = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[4], seq, ARGV[3])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[4])
if ARGV[5] == '1' then redis.call('SADD', KEYS[6], ARGV[3]) end
return seq
"""

# KEYS: epoch, holder, order, tickets, away. ARGV: epoch, node, peer. 1, 0 (not waiting) or -1.
_CANCEL: Final = _FENCE + """
if redis.call('ZREM', KEYS[3], ARGV[3]) == 0 then return 0 end
redis.call('HDEL', KEYS[4], ARGV[3])
redis.call('SREM', KEYS[5], ARGV[3])
return 1
"""

# KEYS: epoch, holder, order, away. ARGV: epoch, node, peer, away (0/1). 1, 0 (not waiting) or -1.
_AWAY: Final = _FENCE + """
if not redis.call('ZSCORE', KEYS[3], ARGV[3]) then return 0 end
if ARGV[4] == '1' then redis.call('SADD', KEYS[4], ARGV[3]) else redis.call('SREM', KEYS[4], ARGV[3]) end
return 1
"""

# KEYS: epoch, holder, order, tickets, away, matched:first, matched:second.
# ARGV: epoch, node, first, first's arrival number, second, second's, record ms.
# Both tickets still waiting under those numbers: removed together, the match recorded; 1.
# Otherwise nothing changes: 0 (a ticket is gone) or -1 (fenced).
_COMMIT: Final = _FENCE + """
if redis.call('ZSCORE', KEYS[3], ARGV[3]) ~= ARGV[4] or redis.call('ZSCORE', KEYS[3], ARGV[5]) ~= ARGV[6] then
  return 0
end
redis.call('ZREM', KEYS[3], ARGV[3], ARGV[5])
redis.call('HDEL', KEYS[4], ARGV[3], ARGV[5])
redis.call('SREM', KEYS[5], ARGV[3], ARGV[5])
redis.call('SET', KEYS[6], ARGV[5] .. ' ' .. ARGV[1], 'PX', ARGV[7])
redis.call('SET', KEYS[7], ARGV[3] .. ' ' .. ARGV[1], 'PX', ARGV[7])
return 1
"""


@dataclass(slots=True)
class _Leading:
    """What a node holds while it leads: its epoch, its queue, and each ticket's arrival number."""

    epoch: int
    queue: MatchQueue
    seqs: dict[str, int] = field(default_factory=dict)


class QueueLeader:
    """One node's side of the stranger queue: the lease, the Redis mirror, and while it leads the
    ``MatchQueue`` that decides.

    The shell's order of calls, for each queue event at the leader: ``enqueue``, ``cancel``,
    ``suspend``, ``reinstate`` or ``tick`` (each mirrors the change to Redis, then applies it to the
    queue and returns the matches the queue *decided*), then ``commit`` those matches (each one
    committed by the Lua script; only a committed match may start its room). Any of them raises
    :class:`NotLeader` when this node was replaced; it has then dropped its queue, and the event
    goes to the current leader. One task calls a ``QueueLeader`` at a time (the shell's order of
    events is the queue's order), as with ``MatchQueue``.

    A core that changes ``queue`` itself (synchronously, as ``Signalling`` does) uses the
    ``mirror_*`` methods instead: the shell writes each change in the order the core made it, and
    commits a decided match after the writes that led to it, before the match starts its room.
    """

    def __init__(self, redis: Redis, node: str, relax_after: float, lease_ms: int = 5000,
                 keys: QueueKeys | None = None, journaled: bool = False,
                 session_of: Callable[[str], bytes | None] | None = None) -> None:
        """``journaled``: the queue is a :class:`JournaledQueue` that a core changes itself, and
        :meth:`flush` mirrors; ``session_of(peer)``: the record the cluster layer stores with a
        new ticket so that a later leader can adopt its session (None: none)."""
        self.redis = redis
        self.journaled = journaled
        self.session_of = session_of
        self.node = node
        self.relax_after = relax_after
        self.lease_ms = lease_ms
        self.keys = keys or QueueKeys()
        self._leading: _Leading | None = None
        # The highest epoch seen, so a re-acquired epoch is new even after Redis lost its state.
        self._seen_epoch = 0
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(_RENEW)
        self._resign = redis.register_script(_RESIGN)
        self._enqueue = redis.register_script(_ENQUEUE)
        self._cancel = redis.register_script(_CANCEL)
        self._away = redis.register_script(_AWAY)
        self._commit = redis.register_script(_COMMIT)

    @property
    def epoch(self) -> int | None:
        """The epoch this node leads under, or None if it does not lead."""
        return self._leading.epoch if self._leading is not None else None

    @property
    def queue(self) -> MatchQueue | None:
        """The queue while this node leads (read only: change it through this class)."""
        return self._leading.queue if self._leading is not None else None

    # ------------------------------------------------------------------ leadership

    async def acquire(self, now: Now) -> list[Match] | None:
        """Lead the queue if nobody holds the lease: take it with a fresh epoch, load the waiting
        tickets and rebuild the queue from them.

        Returns:
            None if another node holds the lease; else the matches the rebuild *decided* (those
            the previous leader decided or would have by now): commit them next.
        """
        if self._leading is not None:
            if await self._still_current(self._leading):
                return []
            self.step_down()
        epoch = int(await self._acquire(
            keys=[self.keys.leader, self.keys.epoch, self.keys.holder],
            args=[self.node, self.lease_ms, self._seen_epoch]))
        if epoch == 0:
            return None
        self._seen_epoch = epoch
        records, seqs = await self.load()
        queue, matches = rebuild_queue(records, self.relax_after, now, self.journaled)
        self._leading = _Leading(epoch, queue, seqs)
        return matches

    async def renew(self) -> bool:
        """Extend the lease (every lease/3 or so). False, and the queue dropped, if replaced."""
        leading = self._require()
        if await self._still_current(leading):
            return True
        self.step_down()
        return False

    async def _still_current(self, leading: _Leading) -> bool:
        """Renew the lease if the epoch is still ours."""
        result = await self._renew(keys=[self.keys.epoch, self.keys.holder, self.keys.leader],
                                   args=[leading.epoch, self.node, self.lease_ms])
        return int(result) == 1

    async def resign(self) -> None:
        """Give the lease up at a graceful stop, so another node leads at once."""
        leading = self._leading
        if leading is None:
            return
        self.step_down()
        await self._resign(keys=[self.keys.epoch, self.keys.holder, self.keys.leader],
                           args=[leading.epoch, self.node])

    def step_down(self) -> None:
        """Forget the queue: Redis holds every ticket, and the next leader rebuilds from it."""
        self._leading = None

    async def load(self) -> tuple[list[tuple[QueuedTicket, bool]], dict[str, int]]:
        """Every waiting ticket in arrival order with its away flag, and its arrival number.
        One transaction, so a consistent view."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(self.keys.order, 0, -1, withscores=True)
            pipe.hgetall(self.keys.tickets)
            pipe.smembers(self.keys.away)
            order, tickets, away = await pipe.execute()
        away_peers = {_text(peer) for peer in away}
        by_peer = {_text(peer): value for peer, value in tickets.items()}
        records: list[tuple[QueuedTicket, bool]] = []
        seqs: dict[str, int] = {}
        for raw_peer, seq in order:
            peer = _text(raw_peer)
            records.append((_decode(by_peer[peer]), peer in away_peers))
            seqs[peer] = int(seq)
        return records, seqs

    # ------------------------------------------------------------------ queue events

    async def enqueue(self, ticket: Ticket, now: Now, session: bytes | None = None,
                      away: bool = False) -> list[Match]:
        """Mirror a new ticket to Redis (its arrival number drawn there), then give it to the
        queue. Returns the matches decided (due relaxations first, the newcomer's last).

        Raises:
            NotLeader: Replaced; nothing was written.
            ValueError: The peer is already waiting (a shell bug); nothing changed.
        """
        await self.mirror_enqueue(ticket, now, session, away)
        return self._require().queue.enqueue(ticket, away=away)

    async def cancel(self, peer: str, now: Now) -> tuple[bool, list[Match]]:
        """Serve relaxations due by now, then take peer out of the queue (a `stop`, a hang-up).

        Returns:
            Whether peer was waiting (not matched by those relaxations), and the matches decided.
        """
        queue = self._require().queue
        matches = queue.tick(now.monotonic)
        if peer not in queue:
            await self.fence()
            return False, matches
        await self.mirror_cancel(peer)
        queue.cancel(peer)
        return True, matches

    async def suspend(self, peer: str) -> bool:
        """Rule 6: peer's socket is lost; its ticket keeps its place and pairs with nobody."""
        queue = self._require().queue
        if peer not in queue:
            await self.fence()
            return False
        await self.mirror_away(peer, True)
        return queue.suspend(peer)

    async def reinstate(self, peer: str, now: Now) -> list[Match]:
        """Rule 6: peer is back: served at once against the queue. Returns the matches decided."""
        queue = self._require().queue
        if peer in queue:
            await self.mirror_away(peer, False)
        else:
            await self.fence()
        return queue.reinstate(peer, now.monotonic)

    def tick(self, now: Now) -> list[Match]:
        """Time passed (the timer at ``queue.next_deadline()``): the matches relaxations decided.
        Nothing to write: relaxation follows from the arrival times Redis already holds."""
        return self._require().queue.tick(now.monotonic)

    # The mirror alone, for a caller that changes the queue itself (a core that owns it): each
    # change is written in the order it was made, before any match it led to is committed.

    async def mirror_enqueue(self, ticket: Ticket, now: Now, session: bytes | None = None,
                             away: bool = False) -> None:
        """Write a new ticket (NotLeader if replaced, ValueError if peer already waits)."""
        leading = self._require()
        seq = int(await self._enqueue(
            keys=[self.keys.epoch, self.keys.holder, self.keys.seq, self.keys.order,
                  self.keys.tickets, self.keys.away],
            args=[leading.epoch, self.node, ticket.peer,
                  _encode(ticket_record(ticket, now, session)), int(away)]))
        self._check(seq)
        if seq == -2:
            raise ValueError(f"peer {ticket.peer!r} is already waiting")
        leading.seqs[ticket.peer] = seq

    async def mirror_cancel(self, peer: str) -> bool:
        """Remove peer's ticket; False if it was not waiting (NotLeader if replaced)."""
        leading = self._require()
        result = int(await self._cancel(
            keys=[self.keys.epoch, self.keys.holder, self.keys.order, self.keys.tickets,
                  self.keys.away],
            args=[leading.epoch, self.node, peer]))
        self._check(result)
        leading.seqs.pop(peer, None)
        return result == 1

    async def mirror_away(self, peer: str, away: bool) -> bool:
        """Mark peer's ticket away or back; False if it was not waiting (NotLeader if replaced)."""
        leading = self._require()
        result = int(await self._away(
            keys=[self.keys.epoch, self.keys.holder, self.keys.order, self.keys.away],
            args=[leading.epoch, self.node, peer, int(away)]))
        self._check(result)
        return result == 1

    async def flush(self, now: Now) -> None:
        """Write what the core changed in its :class:`JournaledQueue`, in the order it changed it:
        call after each core call, before committing ``Signalling.decided``, from one task.

        Raises:
            NotLeader: Replaced: the rest of the journal is dropped with the queue.
        """
        queue = self._require().queue
        assert isinstance(queue, JournaledQueue), "flush is for a journaled queue"
        journal, queue.journal = queue.journal, []
        for kind, subject, flag in journal:
            if isinstance(subject, Ticket):
                session = self.session_of(subject.peer) if self.session_of is not None else None
                await self.mirror_enqueue(subject, now, session, away=flag)
            elif kind == "cancel":
                await self.mirror_cancel(subject)
            else:
                await self.mirror_away(subject, flag)

    async def fence(self) -> None:
        """Raise NotLeader unless this node still holds the current epoch (and renew the lease):
        an answer that touches no ticket is still only given by the current leader, so a
        replaced one never tells a client it was not waiting."""
        if not await self._still_current(self._require()):
            self._check(-1)

    async def commit(self, matches: Iterable[Match]) -> list[Match]:
        """Commit decided matches, in order: each is a fact once this returns it.

        Raises:
            NotLeader: Replaced (``committed`` says which matches did commit before); every
                ticket of the refused ones is still in Redis, for the next leader.
            TicketGone: A ticket this leader holds is not in Redis (its state was lost: Redis
                restarted; the shell re-publishes the queue, see :meth:`republish`, and queues
                that match's two strangers again).
        """
        committed: list[Match] = []
        for match in matches:
            leading = self._require(committed)
            first_seq = leading.seqs[match.first]
            second_seq = leading.seqs[match.second]
            result = int(await self._commit(
                keys=[self.keys.epoch, self.keys.holder, self.keys.order, self.keys.tickets,
                      self.keys.away, self.keys.matched(match.first),
                      self.keys.matched(match.second)],
                args=[leading.epoch, self.node, match.first, first_seq, match.second, second_seq,
                      MATCH_RECORD_MS]))
            self._check(result, committed)
            if result == 0:
                raise TicketGone(match, committed)
            del leading.seqs[match.first], leading.seqs[match.second]
            committed.append(match)
        return committed

    async def republish(self, tickets: Sequence[tuple[Ticket, bool, bytes | None]],
                        now: Now) -> bool:
        """After Redis lost its state (restarted without persistence): lead again under a new
        epoch and write the waiting tickets back, in arrival order, as (ticket, away, session).
        False if another node already leads (it rebuilt from what it found)."""
        self.step_down()
        epoch = int(await self._acquire(
            keys=[self.keys.leader, self.keys.epoch, self.keys.holder],
            args=[self.node, self.lease_ms, self._seen_epoch]))
        if epoch == 0:
            return False
        self._seen_epoch = epoch
        queue = JournaledQueue(self.relax_after) if self.journaled else MatchQueue(self.relax_after)
        self._leading = _Leading(epoch, queue)
        for ticket, away, session in tickets:
            if await self.enqueue(ticket, now, session, away=away):
                raise RuntimeError("a republished ticket was paired: the queue was not at rest")
        if isinstance(queue, JournaledQueue):
            queue.journal.clear()  # written above
        return True

    def _require(self, committed: Sequence[Match] = ()) -> _Leading:
        if self._leading is None:
            raise NotLeader(f"node {self.node} does not lead the queue", committed)
        return self._leading

    def _check(self, result: int, committed: Sequence[Match] = ()) -> None:
        if result == -1:
            epoch = self.epoch
            self.step_down()
            raise NotLeader(f"node {self.node}'s epoch {epoch} was replaced", committed)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
