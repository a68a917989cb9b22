"""Pair waiting strangers fairly, in time proportional to their tags and avoid lists.

This module is pure: no asyncio, no I/O, no clock, no randomness. The caller passes monotonic
time in (``Ticket.enqueued_at``, ``MatchQueue.tick(now)``: ``Now.monotonic``, see
:mod:`xes.core.timing`), turns each `Match` into a private room of two, and arms one timer at
`MatchQueue.next_deadline`.

Policy (docs/protocol.md, "Matchmaking")
----------------------------------------
1. Two waiting users are paired as soon as possible; those sharing a tag or the language are paired
   first, earliest arrival first. A tag and a language never match each other, even if spelt alike.
2. A user with no tags and no language *accepts anyone* at once; a user with tags or a language
   accepts anyone once it has waited ``relax_after`` seconds (it is then *relaxed*).
   Two users may be paired when they share an interest, or when both accept anyone.
3. Never two users where either one's ``avoid`` set holds the other (skipped or blocked).
   Never a text-only user (``text_only``: no microphone, a text chat) and a voice user who did not
   accept text chats (``accepts_text``); every other pair of modes may meet.
4. Fairness: whoever is being served (a newcomer, or a ticket whose relaxation timer fired) is
   paired with the earliest-arrived waiting user among those sharing an interest with it; only if
   there is none, and it accepts anyone, with the earliest-arrived waiting user who also accepts
   anyone. Due relaxations are served oldest first, and before a newcomer arriving at that time.
5. Exactly once: a ticket leaves the queue when matched or cancelled, and is in at most one match.
6. Away: a ticket whose user's signalling socket is lost (``suspend``) keeps its place (its arrival
   order and relaxation deadline) but is never paired until ``reinstate``, when it is served at
   once against the queue as it is then. Nobody is paired with someone who is not there.

Rules 1, 2 and 4 hold among the users each one may meet by rule 3: a text-only user is served the
earliest-arrived waiting user who is text-only or accepts text, never a voice user who did not.

Theory of operation
-------------------
Every waiting ticket gets an arrival sequence number and a *mode* (voice only, voice that accepts
text, text only), and sits in ordered dicts, each in arrival order (``OrderedDict`` gives O(1)
removal anywhere and O(1) access to the oldest entry):

- one FIFO per mode and interest key (``("tag", t)`` or ``("language", l)``), holding every
  ticket of that mode with it;
- ``_open[mode]``: tickets with no interests, which accept anyone from the start;
- ``_relaxed[mode]``: tickets with interests that have been relaxed. Relaxation happens in arrival
  order (the delay is the same for all), so these FIFOs are in arrival order too;
- ``_pending``: tickets with interests not yet relaxed: the deadline FIFO, oldest deadline first.

Keeping the modes apart means a seeker only ever looks into the FIFOs of the modes it may meet
(rule 3), so a text-only user is never scanned past a crowd of voice users who refuse text.

The queue keeps one invariant *at rest* (between calls): no two waiting tickets may be legally
paired. So when a ticket is served, the only waiting tickets it is scanned past in a FIFO are those
it conflicts with through an avoid set (in either direction); the scan stops at the first compatible
one, which is the earliest in that FIFO. That bounds the work to O(M * T + A), where M is the
number of modes it may meet (at most 3), T the ticket's number of interests (at most 9: 8 tags and
a language, by the protocol's limits) and A the number of waiting tickets in conflict with it,
never the length of the queue.

Since the time is an input, the result does not depend on how often ``tick`` is called: due
relaxations are served one by one in deadline order, as if the timer had fired exactly on time, so
long as the shell calls ``tick(now)`` before ``cancel`` (``enqueue`` does it itself).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["Match", "MatchQueue", "Ticket"]

# ("tag", "jazz") or ("language", "fr"): the kind keeps a tag from matching a language.
_InterestKey = tuple[str, str]

# How a user wants to talk (rule 3). Plain ints: a ticket's mode is derived from its two flags.
_VOICE = 0           # voice only: never meets a text-only user
_VOICE_OR_TEXT = 1   # voice, and accepts a text chat with a text-only user
_TEXT = 2            # text only: no microphone
_MODES = (_VOICE, _VOICE_OR_TEXT, _TEXT)
# The modes each mode may meet, in a fixed order (the seeker compares their heads by arrival).
_MEETS: dict[int, tuple[int, ...]] = {
    _VOICE: (_VOICE, _VOICE_OR_TEXT),
    _VOICE_OR_TEXT: _MODES,
    _TEXT: (_VOICE_OR_TEXT, _TEXT),
}


@dataclass(frozen=True, slots=True)
class Ticket:
    """One user's request to talk to a stranger.

    Attributes:
        peer: The user's peer id (fresh per connection, so unique among waiting tickets).
        tags: Interests, already normalised by the caller (lowercase, stripped).
        language: The language the user wants to speak, normalised, or None for any.
        avoid: Peer ids this user skipped or blocked; the pair is forbidden if either side's
            avoid set holds the other.
        enqueued_at: Monotonic time in seconds when the user asked to be matched.
        identity: The user's pseudonymous identity, if any: two tickets of one identity never
            meet, and an avoid set may name identities (lasting blocks) as well as peer ids.
        text_only: The user has no microphone and wants a text chat: met only by text-only
            users and by voice users who accept text (rule 3).
        accepts_text: A voice user who accepts a text chat with a text-only user. Meaningless
            (and ignored) when ``text_only`` is set.
    """

    peer: str
    tags: frozenset[str]
    language: str | None
    avoid: frozenset[str]
    enqueued_at: float
    identity: str | None = None
    text_only: bool = False
    accepts_text: bool = False


@dataclass(frozen=True, slots=True)
class Match:
    """Two users paired into a fresh room of two.

    Attributes:
        first: The one who waited longer (arrived earlier): enters the room first.
        second: Joins second, so it makes the WebRTC offer.
    """

    first: str
    second: str


@dataclass(slots=True, eq=False)
class _Waiting:
    """A ticket in the queue, with what the indexes need precomputed."""

    ticket: Ticket
    # Arrival order: total, unlike enqueued_at, which may tie.
    seq: int
    mode: int
    interests: tuple[_InterestKey, ...]
    # When it starts to accept anyone (unused for tickets without interests).
    relax_at: float
    accepts_anyone: bool
    # Suspended (rule 6): skipped by every search, like a conflict, until reinstated.
    away: bool = False


def _interest_keys(ticket: Ticket) -> tuple[_InterestKey, ...]:
    keys: list[_InterestKey] = [("tag", tag) for tag in sorted(ticket.tags)]
    if ticket.language is not None:
        keys.append(("language", ticket.language))
    return tuple(keys)


def _mode(ticket: Ticket) -> int:
    if ticket.text_only:
        return _TEXT
    return _VOICE_OR_TEXT if ticket.accepts_text else _VOICE


def _conflict(a: _Waiting, b: _Waiting) -> bool:
    """True if either side skipped or blocked the other (by peer id or identity), or both are one."""
    ta, tb = a.ticket, b.ticket
    if ta.peer in tb.avoid or tb.peer in ta.avoid:
        return True
    if ta.identity is not None and (ta.identity in tb.avoid or ta.identity == tb.identity):
        return True
    return tb.identity is not None and tb.identity in ta.avoid


def _first_compatible(fifo: Iterable[_Waiting], seeker: _Waiting) -> _Waiting | None:
    """The earliest entry of fifo that seeker may meet, skipping only seeker and its conflicts."""
    for other in fifo:
        if other is not seeker and not other.away and not _conflict(other, seeker):
            return other
    return None


def _earlier(a: _Waiting | None, b: _Waiting | None) -> _Waiting | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if a.seq < b.seq else b


class MatchQueue:
    """The waiting room for strangers: pairs users by the policy in the module docstring.

    Not thread-safe and not async: the shell owns one instance and calls it from one task.
    Memory is O(sum over waiting tickets of their interests).
    """

    def __init__(self, relax_after: float = 10.0) -> None:
        """Create an empty queue.

        Args:
            relax_after: Seconds after which a user with tags or a language accepts anyone.
                Zero makes everyone accept anyone at once (interests only order the choice).

        Raises:
            ValueError: If relax_after is negative or not finite.
        """
        if not (math.isfinite(relax_after) and relax_after >= 0):
            raise ValueError(f"relax_after must be a finite number >= 0, not {relax_after!r}")
        self._relax_after = relax_after
        # The latest time seen; an arrival stamped earlier is taken as arriving at it, or the
        # FIFOs, which are in arrival order, would no longer be in deadline order.
        self._clock = -math.inf
        self._next_seq = 0
        self._waiting: dict[str, _Waiting] = {}
        self._by_interest: dict[tuple[int, _InterestKey], OrderedDict[str, _Waiting]] = {}
        self._open: dict[int, OrderedDict[str, _Waiting]] = {mode: OrderedDict() for mode in _MODES}
        self._relaxed: dict[int, OrderedDict[str, _Waiting]] = {mode: OrderedDict() for mode in _MODES}
        self._pending: OrderedDict[str, _Waiting] = OrderedDict()

    @property
    def relax_after(self) -> float:
        """Seconds after which a user with tags or a language accepts anyone."""
        return self._relax_after

    def __len__(self) -> int:
        """Number of waiting users. O(1)."""
        return len(self._waiting)

    def __contains__(self, peer: object) -> bool:
        """True if peer (a peer id) is waiting. O(1)."""
        return peer in self._waiting

    def enqueue(self, ticket: Ticket, away: bool = False) -> list[Match]:
        """Serve relaxations due at ticket.enqueued_at, then pair the newcomer or let it wait.

        Returns a list, not a single match, because relaxations that fell due since the last
        tick are served first (older users first, as rule 4 asks), and they may pair among
        themselves. The newcomer's own match, if any, is last, with the newcomer as ``second``.

        Complexity: O(T + A) amortised for the newcomer (T its interests, A the waiting tickets
        it conflicts with and is scanned past), plus what ``tick`` costs for the due relaxations.

        Time never goes back here: an ``enqueued_at`` earlier than a time already seen is taken
        as that time (the ticket arrives now, after everyone already waiting). The shell passes
        monotonic time, so this only happens through a shell bug, and then the user is still
        served instead of being refused after the caller has already changed its own state.

        ``away=True`` puts the ticket in suspended (rule 6), as ``enqueue`` then ``suspend`` would
        if nobody were there to pair it with: it takes its place in arrival order and pairs with
        nobody until ``reinstate``. Loading tickets this way, in arrival order with their arrival
        times, rebuilds a queue that an earlier one held (a restart, a new cluster queue leader):
        a ticket that was still waiting there was not paired on its arrival, so replaying the
        arrivals pairs exactly who that queue would have paired by the same time.

        Raises:
            ValueError: If ticket.peer is already waiting, or ticket.enqueued_at is NaN (both are
                caller bugs). Nothing changes then.
        """
        if ticket.peer in self._waiting:
            raise ValueError(f"peer {ticket.peer!r} is already waiting")
        if math.isnan(ticket.enqueued_at):
            raise ValueError("enqueued_at is NaN")
        now = max(ticket.enqueued_at, self._clock)
        matches = self.tick(now)
        interests = _interest_keys(ticket)
        relax_at = now + self._relax_after
        newcomer = _Waiting(
            ticket=ticket,
            seq=self._next_seq,
            mode=_mode(ticket),
            interests=interests,
            relax_at=relax_at,
            accepts_anyone=not interests or relax_at <= now,
            away=away,
        )
        self._next_seq += 1
        partner = None if away else self._find_partner(newcomer)
        if partner is None:
            self._insert(newcomer)
        else:
            self._remove(partner)
            matches.append(Match(first=partner.ticket.peer, second=ticket.peer))
        return matches

    def cancel(self, peer: str) -> bool:
        """Take peer out of the queue; it will never be matched by this ticket.

        Call ``tick(now)`` first if relaxations may be due, so that a partner whose timer fired
        before the cancellation is honoured.

        Complexity: O(T), T the ticket's interests (at most 9), so O(1).

        Returns:
            True if peer was waiting, False if not (already matched, cancelled or unknown).
        """
        entry = self._waiting.get(peer)
        if entry is None:
            return False
        self._remove(entry)
        return True

    def waiting(self) -> list[Ticket]:
        """Every waiting ticket, in arrival order (for a snapshot; O(n log n))."""
        return [entry.ticket for entry in sorted(self._waiting.values(), key=lambda e: e.seq)]

    def suspend(self, peer: str) -> bool:
        """Rule 6: keep peer's place, but pair it with nobody until :meth:`reinstate`. O(1).

        Returns:
            True if peer was waiting, False if not.
        """
        entry = self._waiting.get(peer)
        if entry is None:
            return False
        entry.away = True
        return True

    def reinstate(self, peer: str, now: float) -> list[Match]:
        """Rule 6: peer is back. Serve relaxations due by now, then peer against the queue.

        Its match, if any, is last, with the one who arrived earlier as ``first``. Unknown or not
        suspended peers only get the tick. Complexity: that of ``tick``, plus O(T + A) for peer.
        """
        matches = self.tick(now)
        entry = self._waiting.get(peer)
        if entry is None or not entry.away:
            return matches
        entry.away = False
        partner = self._find_partner(entry)
        if partner is not None:
            self._remove(entry)
            self._remove(partner)
            first, second = (entry, partner) if entry.seq < partner.seq else (partner, entry)
            matches.append(Match(first=first.ticket.peer, second=second.ticket.peer))
        return matches

    def tick(self, now: float) -> list[Match]:
        """Relax every ticket whose wait has reached relax_after by now, and pair them.

        Due tickets are served one at a time, oldest first, each against the queue as it is
        then; so the result equals that of ticks fired exactly at each deadline.

        Complexity: O(R + sum of T + A over the R relaxations due), R the number due; O(1)
        when nothing is due. Each match made removes two tickets in O(T).

        Raises:
            ValueError: If now is NaN. A time earlier than one already seen does nothing.
        """
        if math.isnan(now):
            raise ValueError("now is NaN")
        self._clock = max(self._clock, now)
        matches: list[Match] = []
        while self._pending:
            entry = next(iter(self._pending.values()))
            if entry.relax_at > now:
                break
            del self._pending[entry.ticket.peer]
            entry.accepts_anyone = True
            partner = None if entry.away else self._find_partner(entry)
            if partner is None:
                self._relaxed[entry.mode][entry.ticket.peer] = entry
                continue
            self._remove(entry)
            self._remove(partner)
            first, second = (entry, partner) if entry.seq < partner.seq else (partner, entry)
            matches.append(Match(first=first.ticket.peer, second=second.ticket.peer))
        return matches

    def next_deadline(self) -> float | None:
        """When ``tick`` next has work to do (the oldest pending relaxation), or None. O(1)."""
        if not self._pending:
            return None
        return next(iter(self._pending.values())).relax_at

    def _find_partner(self, seeker: _Waiting) -> _Waiting | None:
        """The waiting ticket rule 4 pairs seeker with, or None; seeker itself is skipped."""
        best: _Waiting | None = None
        modes = _MEETS[seeker.mode]
        for key in seeker.interests:
            for mode in modes:
                fifo = self._by_interest.get((mode, key))
                if fifo is not None:
                    best = _earlier(best, _first_compatible(fifo.values(), seeker))
        if best is not None or not seeker.accepts_anyone:
            return best
        # Nobody shares an interest: the earliest of those who, like seeker, accept anyone.
        # Every FIFO is in arrival order, so their heads are compared.
        for mode in modes:
            best = _earlier(best, _first_compatible(self._open[mode].values(), seeker))
            best = _earlier(best, _first_compatible(self._relaxed[mode].values(), seeker))
        return best

    def _insert(self, entry: _Waiting) -> None:
        peer = entry.ticket.peer
        self._waiting[peer] = entry
        for key in entry.interests:
            fifo = self._by_interest.get((entry.mode, key))
            if fifo is None:
                fifo = self._by_interest[entry.mode, key] = OrderedDict()
            fifo[peer] = entry
        if not entry.interests:
            self._open[entry.mode][peer] = entry
        elif entry.accepts_anyone:
            self._relaxed[entry.mode][peer] = entry
        else:
            self._pending[peer] = entry

    def _remove(self, entry: _Waiting) -> None:
        peer = entry.ticket.peer
        del self._waiting[peer]
        for key in entry.interests:
            fifo = self._by_interest[entry.mode, key]
            del fifo[peer]
            if not fifo:
                # Forget unused interests, so memory follows who waits, not who ever waited.
                del self._by_interest[entry.mode, key]
        self._open[entry.mode].pop(peer, None)
        self._relaxed[entry.mode].pop(peer, None)
        self._pending.pop(peer, None)
