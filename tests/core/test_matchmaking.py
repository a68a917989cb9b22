"""Tests for xes.core.matchmaking: each policy rule by table, then properties against a naive model.

The naive model (`NaiveQueue`) restates the policy of docs/protocol.md with linear scans and no
indexes; the state machine checks that `MatchQueue` makes exactly the same matches, and also checks
the rules on their own (exactly once, cancelled never matched, avoid sets honoured, nobody left
waiting who could be paired, fairness), so that the model cannot hide a mistake it shares.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

import xes.core.matchmaking as matchmaking
from xes.core.matchmaking import Match, MatchQueue, Ticket


def make_ticket(
    peer: str,
    at: float = 0.0,
    tags: tuple[str, ...] = (),
    language: str | None = None,
    avoid: tuple[str, ...] = (),
    *,
    text_only: bool = False,
    accepts_text: bool = False,
) -> Ticket:
    """A valid ticket; tests pass only what their scenario is about."""
    return Ticket(
        peer=peer,
        tags=frozenset(tags),
        language=language,
        avoid=frozenset(avoid),
        enqueued_at=at,
        text_only=text_only,
        accepts_text=accepts_text,
    )


def text(peer: str, at: float = 0.0, tags: tuple[str, ...] = (), avoid: tuple[str, ...] = ()) -> Ticket:
    """A text-only user ("Text only": no microphone)."""
    return make_ticket(peer, at, tags, avoid=avoid, text_only=True)


def accepting(peer: str, at: float = 0.0, tags: tuple[str, ...] = (), avoid: tuple[str, ...] = ()) -> Ticket:
    """A voice user who ticked "Accept text chats"."""
    return make_ticket(peer, at, tags, avoid=avoid, accepts_text=True)


def test_exports() -> None:
    """The public names are exactly the three the shell uses."""
    assert sorted(matchmaking.__all__) == ["Match", "MatchQueue", "Ticket"]


# Each row: enqueue the arrivals in order, then tick at tick_at (if not None); expect these
# matches in this order, and these peers still waiting. relax_after is 10 s.
CASES = [
    pytest.param(
        [make_ticket("a", 0), make_ticket("b", 1)],
        None,
        [Match("a", "b")],
        [],
        id="no-preferences-pair-at-once-earlier-first",
    ),
    pytest.param(
        [make_ticket("a", 0, tags=("jazz",)), make_ticket("b", 1, tags=("jazz", "go"))],
        None,
        [Match("a", "b")],
        [],
        id="shared-tag-pairs-at-once",
    ),
    pytest.param(
        [make_ticket("a", 0, language="fr"), make_ticket("b", 1, tags=("x",), language="fr")],
        None,
        [Match("a", "b")],
        [],
        id="shared-language-pairs-at-once",
    ),
    pytest.param(
        [make_ticket("a", 0, tags=("fr",)), make_ticket("b", 1, language="fr")],
        None,
        [],
        ["a", "b"],
        id="a-tag-never-matches-a-language-of-the-same-spelling",
    ),
    pytest.param(
        [make_ticket("a", 0, tags=("jazz",)), make_ticket("b", 1)],
        9.99,
        [],
        ["a", "b"],
        id="tagged-user-refuses-strangers-before-relax-after",
    ),
    pytest.param(
        [make_ticket("a", 0, tags=("jazz",)), make_ticket("b", 1)],
        10.0,
        [Match("a", "b")],
        [],
        id="tagged-user-accepts-anyone-at-relax-after",
    ),
    pytest.param(
        [make_ticket("a", 0, tags=("jazz",)), make_ticket("b", 1, language="de")],
        10.5,
        [],
        ["a", "b"],
        id="both-must-have-relaxed",
    ),
    pytest.param(
        [make_ticket("a", 0, tags=("jazz",)), make_ticket("b", 1, language="de")],
        11.0,
        [Match("a", "b")],
        [],
        id="both-relaxed-pair",
    ),
    pytest.param(
        [make_ticket("a", 0, avoid=("b",)), make_ticket("b", 1)],
        100.0,
        [],
        ["a", "b"],
        id="never-someone-i-skipped",
    ),
    pytest.param(
        [make_ticket("a", 0, tags=("x",)), make_ticket("b", 1, tags=("x",), avoid=("a",))],
        100.0,
        [],
        ["a", "b"],
        id="never-someone-who-skipped-me-even-sharing-a-tag",
    ),
    pytest.param(
        [make_ticket("a", 0), make_ticket("b", 1, avoid=("a",)), make_ticket("c", 2)],
        None,
        [Match("a", "c")],
        ["b"],
        id="skip-over-the-avoided-to-the-next-earliest",
    ),
    pytest.param(
        [
            make_ticket("a", 0, tags=("x",)),
            make_ticket("b", 1, tags=("y",)),
            make_ticket("c", 2, tags=("y", "x")),
        ],
        None,
        [Match("a", "c")],
        ["b"],
        id="earliest-across-shared-tags",
    ),
    pytest.param(
        [
            make_ticket("a", 0, tags=("x",)),
            make_ticket("b", 1, tags=("y",)),
            make_ticket("c", 2, tags=("z",)),
        ],
        12.0,
        [Match("a", "b")],
        ["c"],
        id="relaxations-served-oldest-first",
    ),
    pytest.param(
        [
            make_ticket("a", 0, tags=("x",)),
            make_ticket("b", 1, tags=("y",)),
            make_ticket("c", 2.5, tags=("z",)),
            make_ticket("o", 5),
        ],
        12.5,
        [Match("a", "o"), Match("b", "c")],
        [],
        id="first-relaxed-takes-the-waiting-stranger",
    ),
    # Rule 3, modes: text only meets text only and voice that accepts text, never plain voice.
    pytest.param(
        [text("a", 0), text("b", 1)],
        None,
        [Match("a", "b")],
        [],
        id="text-only-pairs-with-text-only",
    ),
    pytest.param(
        [text("a", 0), make_ticket("v", 1)],
        100.0,
        [],
        ["a", "v"],
        id="text-only-never-with-voice-that-did-not-accept",
    ),
    pytest.param(
        [make_ticket("v", 0, tags=("jazz",)), text("a", 1, tags=("jazz",))],
        100.0,
        [],
        ["v", "a"],
        id="text-only-never-with-voice-that-did-not-accept-even-sharing-a-tag",
    ),
    pytest.param(
        [text("a", 0), accepting("v", 1)],
        None,
        [Match("a", "v")],
        [],
        id="text-only-pairs-with-voice-that-accepts",
    ),
    pytest.param(
        [make_ticket("v", 0), accepting("w", 1)],
        None,
        [Match("v", "w")],
        [],
        id="voice-that-accepts-text-still-meets-voice",
    ),
    pytest.param(
        [make_ticket("v", 0), accepting("w", 1, avoid=("v",)), text("a", 2)],
        None,
        [Match("w", "a")],
        ["v"],
        id="text-only-newcomer-skips-earlier-voice-to-the-earliest-who-accepts",
    ),
    pytest.param(
        [make_ticket("v", 0), text("a", 1), text("b", 2), make_ticket("w", 3)],
        None,
        [Match("a", "b"), Match("v", "w")],
        [],
        id="both-modes-keep-arrival-order-among-their-own",
    ),
    pytest.param(
        [accepting("w", 0, tags=("x",)), text("a", 1, tags=("y",)), text("b", 2, tags=("x",))],
        None,
        [Match("w", "b")],
        ["a"],
        id="shared-interest-first-across-modes-that-meet",
    ),
    pytest.param(
        [text("a", 0, tags=("x",)), make_ticket("v", 1)],
        10.0,
        [],
        ["a", "v"],
        id="a-relaxed-text-only-user-still-never-meets-plain-voice",
    ),
]


@pytest.mark.parametrize(("arrivals", "tick_at", "expected", "still_waiting"), CASES)
def test_policy_table(
    arrivals: list[Ticket],
    tick_at: float | None,
    expected: list[Match],
    still_waiting: list[str],
) -> None:
    """Each policy rule, one small scenario per row."""
    queue = MatchQueue(relax_after=10.0)
    matches: list[Match] = []
    for ticket in arrivals:
        matches += queue.enqueue(ticket)
    if tick_at is not None:
        matches += queue.tick(tick_at)
    assert matches == expected
    assert [t.peer for t in arrivals if t.peer in queue] == still_waiting
    assert len(queue) == len(still_waiting)


def test_shared_interest_preferred_over_an_earlier_relaxed_user() -> None:
    """A newcomer who accepts anyone still takes a later user sharing its tag first."""
    queue = MatchQueue(relax_after=0.0)
    # r and s avoid each other, so both wait: r accepts anyone, s shares the newcomer's tag.
    assert queue.enqueue(make_ticket("r", 0, tags=("x",), avoid=("s",))) == []
    assert queue.enqueue(make_ticket("s", 1, tags=("y",))) == []
    assert queue.enqueue(make_ticket("n", 2, tags=("y",))) == [Match("s", "n")]
    assert "r" in queue


def test_open_and_relaxed_compete_by_arrival() -> None:
    """Among users who accept anyone, an earlier relaxed one beats a later open one."""
    queue = MatchQueue(relax_after=10.0)
    queue.enqueue(make_ticket("a", 0, tags=("x",), avoid=("o",)))
    queue.enqueue(make_ticket("o", 1))
    assert queue.tick(10) == []  # a relaxed, but it avoids o
    assert queue.enqueue(make_ticket("n", 11)) == [Match("a", "n")]
    assert [p for p in "aon" if p in queue] == ["o"]


def test_enqueue_serves_due_relaxations_before_the_newcomer() -> None:
    """A late timer is no excuse: older users whose wait expired are served first."""
    queue = MatchQueue(relax_after=10.0)
    queue.enqueue(make_ticket("a", 0, tags=("x",)))
    queue.enqueue(make_ticket("b", 1, language="es"))
    # No tick at 10 or 11: the enqueue at 20 must act as if there had been.
    assert queue.enqueue(make_ticket("n", 20)) == [Match("a", "b")]
    assert "n" in queue
    assert queue.enqueue(make_ticket("m", 21)) == [Match("n", "m")]


def test_result_does_not_depend_on_late_ticks() -> None:
    """One late tick gives the same matches as ticks at every deadline."""
    arrivals = [
        make_ticket("a", 0, tags=("x",)),
        make_ticket("o", 5),
        make_ticket("b", 6, tags=("y",)),
        make_ticket("c", 7, tags=("z",)),
    ]
    on_time, late = MatchQueue(), MatchQueue()
    on_time_matches: list[Match] = []
    for ticket in arrivals:
        on_time_matches += on_time.enqueue(ticket)
        late.enqueue(ticket)
    while (deadline := on_time.next_deadline()) is not None:
        on_time_matches += on_time.tick(deadline)
    assert late.tick(100) == on_time_matches == [Match("a", "o"), Match("b", "c")]


def test_cancelled_ticket_is_never_matched() -> None:
    """cancel takes the user out at once; a second cancel says it was not waiting."""
    queue = MatchQueue()
    queue.enqueue(make_ticket("a", 0, tags=("x",)))
    assert queue.cancel("a") is True
    assert queue.cancel("a") is False
    assert queue.cancel("nobody") is False
    assert queue.enqueue(make_ticket("b", 1, tags=("x",))) == []
    assert queue.tick(100) == []
    assert len(queue) == 1 and "a" not in queue and "b" in queue


def test_requeued_peer_keeps_no_trace_of_its_old_ticket() -> None:
    """After cancel, the same id queued again waits its own full relax_after."""
    queue = MatchQueue(relax_after=10.0)
    queue.enqueue(make_ticket("a", 0, tags=("x",)))
    queue.cancel("a")
    queue.enqueue(make_ticket("a", 5, tags=("x",)))
    queue.enqueue(make_ticket("o", 6))
    assert queue.next_deadline() == 15.0
    assert queue.tick(14.9) == []
    assert queue.tick(15.0) == [Match("a", "o")]


def test_matched_users_leave_the_queue() -> None:
    """A matched user is not waiting any more, so it may queue again (after `next`)."""
    queue = MatchQueue()
    queue.enqueue(make_ticket("a", 0))
    assert queue.enqueue(make_ticket("b", 0)) == [Match("a", "b")]
    assert len(queue) == 0 and "a" not in queue and "b" not in queue
    assert queue.enqueue(make_ticket("a", 1, avoid=("b",))) == []
    assert queue.enqueue(make_ticket("b", 1)) == []
    assert len(queue) == 2


@pytest.mark.parametrize(
    "second",
    [
        pytest.param(make_ticket("a", 20), id="peer-already-waiting"),
        pytest.param(make_ticket("z", math.nan), id="time-is-nan"),
    ],
)
def test_refused_enqueue_changes_nothing(second: Ticket) -> None:
    """Validate first: a refused ticket leaves the queue as it was, due timers included."""
    queue = MatchQueue(relax_after=10.0)
    queue.enqueue(make_ticket("a", 1, tags=("x",)))
    queue.enqueue(make_ticket("o", 1))
    with pytest.raises(ValueError):
        queue.enqueue(second)
    assert len(queue) == 2 and queue.next_deadline() == 11.0


def test_an_arrival_stamped_before_the_clock_arrives_now() -> None:
    """Time never goes back: the late-stamped ticket queues behind everyone, relaxing from now.

    It once raised ValueError instead, after the signalling core had marked the user as queued.
    """
    queue = MatchQueue(relax_after=10.0)
    queue.enqueue(make_ticket("a", 5, tags=("x",)))
    assert queue.enqueue(make_ticket("b", 2, tags=("y",))) == []
    assert queue.next_deadline() == 15.0
    queue.cancel("a")
    assert queue.next_deadline() == 15.0  # b relaxes 10 s after the clock (5), not after its 2
    assert queue.enqueue(make_ticket("c", 3, tags=("x",))) == []
    assert queue.tick(15) == [Match("b", "c")]


def test_equal_arrival_times_keep_call_order() -> None:
    """Ties in enqueued_at are broken by the order of the enqueue calls."""
    queue = MatchQueue(relax_after=1.0)
    queue.enqueue(make_ticket("b", 3, tags=("x",)))
    queue.enqueue(make_ticket("a", 3, tags=("y",)))
    assert queue.tick(4) == [Match("b", "a")]


def test_next_deadline_follows_the_oldest_pending_ticket() -> None:
    """The shell arms its one timer here; users without preferences never need one."""
    queue = MatchQueue(relax_after=10.0)
    assert queue.next_deadline() is None
    queue.enqueue(make_ticket("o", 0))
    assert queue.next_deadline() is None
    queue.enqueue(make_ticket("a", 1, tags=("x",)))
    queue.enqueue(make_ticket("b", 2, tags=("y",), avoid=("a", "o")))
    assert queue.next_deadline() == 11.0
    queue.cancel("a")
    assert queue.next_deadline() == 12.0
    assert queue.tick(12) == []
    assert queue.next_deadline() is None


def test_tick_backwards_or_nan() -> None:
    """A tick earlier than the clock does nothing; NaN is refused."""
    queue = MatchQueue(relax_after=1.0)
    queue.tick(50)
    queue.enqueue(make_ticket("a", 50, tags=("x",)))
    assert queue.tick(3) == []
    with pytest.raises(ValueError):
        queue.tick(math.nan)
    assert queue.next_deadline() == 51.0


@pytest.mark.parametrize("relax_after", [-1.0, math.inf, math.nan])
def test_relax_after_must_be_finite_and_non_negative(relax_after: float) -> None:
    """A bad setting fails at start-up, not at the first deadline."""
    with pytest.raises(ValueError):
        MatchQueue(relax_after=relax_after)


def _clique_with_counted_scans(monkeypatch: pytest.MonkeyPatch, prefix: str, relax_after: float
                               ) -> tuple[MatchQueue, list[str]]:
    """200 voice users with tag "x" who all avoid one another, so all wait; and the list that
    records, from now on, every waiting entry a seeker's scan visits (counted, not timed)."""
    queue = MatchQueue(relax_after=relax_after)
    peers = [f"{prefix}{i}" for i in range(200)]
    for i, peer in enumerate(peers):
        queue.enqueue(make_ticket(peer, 0, tags=("x",), avoid=tuple(peers[:i])))
    assert len(queue) == 200
    visited: list[str] = []
    scan = matchmaking._first_compatible

    def counting_scan(fifo, seeker):  # type: ignore[no-untyped-def]
        def visit():  # type: ignore[no-untyped-def]
            for entry in fifo:
                visited.append(entry.ticket.peer)
                yield entry

        return scan(visit(), seeker)

    monkeypatch.setattr(matchmaking, "_first_compatible", counting_scan)
    return queue, visited


def test_avoid_lists_do_not_make_a_newcomer_scan_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Scanning skips only the avoided and stops at the first compatible user.

    Counted, not timed: the entries the FIFO scans visit are counted through a wrapper.
    """
    # 200 users share tag "x" but avoid one another (a clique of skips), so all of them wait.
    queue, visited = _clique_with_counted_scans(monkeypatch, "p", relax_after=10.0)
    newcomer = make_ticket("n", 1, tags=("x",), avoid=("p0", "p1", "p2"))
    assert queue.enqueue(newcomer) == [Match("p3", "n")]
    assert visited == ["p0", "p1", "p2", "p3"]


def test_voice_users_who_refuse_text_do_not_make_a_text_only_newcomer_scan_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rule 3 by mode costs nothing per waiting voice user: a text-only newcomer never looks
    at the FIFOs of voice users who did not accept text. Counted, not timed."""
    # 200 voice users who avoid one another all wait, sharing tag "x" and accepting anyone.
    queue, visited = _clique_with_counted_scans(monkeypatch, "v", relax_after=0.0)
    assert queue.enqueue(text("a", 1, tags=("x",))) == []
    assert visited == []
    assert queue.enqueue(text("b", 2, tags=("x",))) == [Match("a", "b")]
    assert visited == ["a"]  # the first text-only user, first in its mode's FIFO of "x"


# ---------------------------------------------------------------------------------------------
# Properties against a naive model.


def _interests(ticket: Ticket) -> set[tuple[str, str]]:
    keys = {("tag", tag) for tag in ticket.tags}
    if ticket.language is not None:
        keys.add(("language", ticket.language))
    return keys


def _conflict(a: Ticket, b: Ticket) -> bool:
    """Rule 3: an avoid set, or a text-only user and a voice user who did not accept text."""
    if a.peer in b.avoid or b.peer in a.avoid:
        return True
    return (a.text_only and not (b.text_only or b.accepts_text)) or (
        b.text_only and not (a.text_only or a.accepts_text))


@dataclass
class NaiveWaiting:
    """A waiting ticket in the model."""

    seq: int
    ticket: Ticket
    accepts_anyone: bool


@dataclass
class NaiveQueue:
    """The policy, restated with linear scans over a list in arrival order."""

    relax_after: float
    waiting: list[NaiveWaiting] = field(default_factory=list)
    clock: float = -math.inf
    next_seq: int = 0

    def may_pair(self, a: NaiveWaiting, b: NaiveWaiting) -> bool:
        if _conflict(a.ticket, b.ticket):
            return False
        shared = bool(_interests(a.ticket) & _interests(b.ticket))
        return shared or (a.accepts_anyone and b.accepts_anyone)

    def partner_for(self, seeker: NaiveWaiting) -> NaiveWaiting | None:
        legal = [w for w in self.waiting if w is not seeker and self.may_pair(seeker, w)]
        sharing = [w for w in legal if _interests(w.ticket) & _interests(seeker.ticket)]
        return min(sharing or legal, key=lambda w: w.seq, default=None)

    def tick(self, now: float) -> list[Match]:
        self.clock = max(self.clock, now)
        matches: list[Match] = []
        due = [
            w for w in self.waiting if not w.accepts_anyone and w.ticket.enqueued_at + self.relax_after <= now
        ]
        for entry in due:
            if entry not in self.waiting:
                continue
            entry.accepts_anyone = True
            partner = self.partner_for(entry)
            if partner is not None:
                self.waiting.remove(entry)
                self.waiting.remove(partner)
                first, second = sorted([entry, partner], key=lambda w: w.seq)
                matches.append(Match(first.ticket.peer, second.ticket.peer))
        return matches

    def enqueue(self, ticket: Ticket) -> list[Match]:
        matches = self.tick(ticket.enqueued_at)
        newcomer = NaiveWaiting(
            seq=self.next_seq,
            ticket=ticket,
            accepts_anyone=not _interests(ticket) or self.relax_after == 0,
        )
        self.next_seq += 1
        partner = self.partner_for(newcomer)
        if partner is None:
            self.waiting.append(newcomer)
        else:
            self.waiting.remove(partner)
            matches.append(Match(partner.ticket.peer, ticket.peer))
        return matches


PEERS = [f"p{i}" for i in range(8)]
TAGS = ["jazz", "go", "fr"]  # "fr" is also a language: the two must never match
LANGUAGES = [None, None, "fr", "en"]
STEPS = [0.0, 0.0, 0.5, 1.0, 2.5, 5.0, 9.5, 10.0, 10.5, 25.0]

# (peer, tags, language, avoid, text_only, accepts_text): a ticket but for its time, which the
# test's clock supplies.
ticket_specs = st.tuples(
    st.sampled_from(PEERS),
    st.frozensets(st.sampled_from(TAGS), max_size=2),
    st.sampled_from(LANGUAGES),
    st.frozensets(st.sampled_from(PEERS), max_size=3),
    st.booleans(),
    st.booleans(),
)
TicketSpec = tuple[str, frozenset[str], str | None, frozenset[str], bool, bool]


def ticket_from(spec: TicketSpec, at: float) -> Ticket:
    peer, tags, language, avoid, text_only, accepts_text = spec
    return Ticket(peer, tags, language, avoid, enqueued_at=at, text_only=text_only,
                  accepts_text=accepts_text)


class MatchQueueMachine(RuleBasedStateMachine):
    """Random arrivals, cancels and ticks: the queue must agree with the model at every step,
    and every match must obey the rules on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.queue = MatchQueue()
        self.model = NaiveQueue(relax_after=10.0)
        self.now = 0.0
        self.tickets: dict[str, Ticket] = {}

    @initialize(relax_after=st.sampled_from([0.0, 1.0, 10.0]))
    def start(self, relax_after: float) -> None:
        self.queue = MatchQueue(relax_after=relax_after)
        self.model = NaiveQueue(relax_after=relax_after)

    def waiting_peers(self) -> set[str]:
        return {peer for peer in PEERS if peer in self.queue}

    def check_matches(self, matches: list[Match], expected: list[Match], could: set[str]) -> None:
        """Same as the model; and, on their own: exactly once, only among those who could."""
        assert matches == expected
        peers = [peer for match in matches for peer in (match.first, match.second)]
        assert len(peers) == len(set(peers))
        # Cancelled or matched tickets are not waiting, so can't be among those who could.
        assert set(peers) <= could
        assert not set(peers) & self.waiting_peers()
        for match in matches:
            first, second = self.tickets[match.first], self.tickets[match.second]
            assert not _conflict(first, second)
            assert first.enqueued_at <= second.enqueued_at

    def advance(self, step: float) -> None:
        self.now += step
        could = self.waiting_peers()
        self.check_matches(self.queue.tick(self.now), self.model.tick(self.now), could)

    @rule(spec=ticket_specs, step=st.sampled_from(STEPS))
    def enqueue(self, spec: TicketSpec, step: float) -> None:
        self.now += step
        ticket = ticket_from(spec, self.now)
        if ticket.peer in self.queue:
            deadline = self.queue.next_deadline()
            with pytest.raises(ValueError):
                self.queue.enqueue(ticket)
            assert self.queue.next_deadline() == deadline
            return
        could = self.waiting_peers() | {ticket.peer}
        before = {w.ticket.peer: w for w in self.model.waiting}
        self.tickets[ticket.peer] = ticket
        expected = self.model.enqueue(ticket)
        self.check_matches(self.queue.enqueue(ticket), expected, could)
        self.check_newcomer_fairness(ticket, expected, before)

    def check_newcomer_fairness(
        self, ticket: Ticket, matches: list[Match], before: dict[str, NaiveWaiting]
    ) -> None:
        """Declaratively: the newcomer got the earliest eligible waiting user, if any."""
        # Users matched by relaxations due in the same call were no longer there for it.
        for match in matches:
            if ticket.peer not in (match.first, match.second):
                del before[match.first], before[match.second]
        newcomer_accepts_anyone = not _interests(ticket) or self.model.relax_after == 0
        eligible = [
            w
            for w in before.values()
            if not _conflict(w.ticket, ticket)
            and (_interests(w.ticket) & _interests(ticket) or (newcomer_accepts_anyone and w.accepts_anyone))
        ]
        sharing = [w for w in eligible if _interests(w.ticket) & _interests(ticket)]
        expected = min(sharing or eligible, key=lambda w: w.seq, default=None)
        own = [match for match in matches if match.second == ticket.peer]
        if expected is None:
            assert own == [] and ticket.peer in self.queue
        else:
            assert own == [Match(expected.ticket.peer, ticket.peer)]

    @rule(peer=st.sampled_from(PEERS), step=st.sampled_from(STEPS))
    def cancel(self, peer: str, step: float) -> None:
        self.advance(step)  # the shell ticks before it cancels
        was_waiting = peer in self.waiting_peers()
        assert self.queue.cancel(peer) is was_waiting
        assert peer not in self.queue
        self.model.waiting = [w for w in self.model.waiting if w.ticket.peer != peer]

    @rule(step=st.sampled_from(STEPS))
    def tick(self, step: float) -> None:
        self.advance(step)

    @precondition(lambda self: self.queue.next_deadline() is not None)
    @rule()
    def timer_fires(self) -> None:
        deadline = self.queue.next_deadline()
        assert deadline is not None
        self.advance(max(0.0, deadline - self.now))

    @rule()
    def settle(self) -> None:
        """No starvation: after tick(now >= last arrival + relax_after), no two waiting users
        could be paired: every two of them are kept apart by an avoid set."""
        self.advance(self.model.relax_after)
        assert self.queue.next_deadline() is None
        for a, b in itertools.combinations(self.model.waiting, 2):
            assert _conflict(a.ticket, b.ticket)

    @invariant()
    def nobody_waits_who_could_be_paired(self) -> None:
        """At rest, with relaxation judged from the clock rather than the model's flags."""

        def accepts_anyone(t: Ticket) -> bool:
            return not _interests(t) or t.enqueued_at + self.model.relax_after <= self.model.clock

        for a, b in itertools.combinations(self.model.waiting, 2):
            shared = _interests(a.ticket) & _interests(b.ticket)
            both_accept = accepts_anyone(a.ticket) and accepts_anyone(b.ticket)
            assert _conflict(a.ticket, b.ticket) or not (shared or both_accept)

    @invariant()
    def same_waiting_users_and_deadline(self) -> None:
        assert len(self.queue) == len(self.model.waiting)
        assert self.waiting_peers() == {w.ticket.peer for w in self.model.waiting}
        pending = [
            w.ticket.enqueued_at + self.model.relax_after for w in self.model.waiting if not w.accepts_anyone
        ]
        assert self.queue.next_deadline() == min(pending, default=None)


TestMatchQueueMachine = MatchQueueMachine.TestCase
TestMatchQueueMachine.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


@settings(max_examples=100, deadline=None)
@given(
    arrivals=st.lists(
        st.tuples(ticket_specs, st.sampled_from(STEPS)),
        max_size=len(PEERS),
        unique_by=lambda arrival: arrival[0][0],
    ),
    relax_after=st.sampled_from([0.0, 1.0, 10.0]),
)
def test_tick_timing_does_not_change_who_meets_whom(
    arrivals: list[tuple[TicketSpec, float]], relax_after: float
) -> None:
    """Ticks exactly at each deadline, or only when arrivals force them, make the same matches."""
    punctual, lazy = MatchQueue(relax_after), MatchQueue(relax_after)
    punctual_matches: list[Match] = []
    lazy_matches: list[Match] = []
    now = 0.0
    for spec, step in arrivals:
        now += step
        while (deadline := punctual.next_deadline()) is not None and deadline <= now:
            punctual_matches += punctual.tick(deadline)
        ticket = ticket_from(spec, now)
        punctual_matches += punctual.enqueue(ticket)
        lazy_matches += lazy.enqueue(ticket)
    punctual_matches += punctual.tick(now + relax_after)
    lazy_matches += lazy.tick(now + relax_after)
    assert punctual_matches == lazy_matches


# ---------------------------------------------------------------------------------------------
# Loading tickets in order: how a queue is rebuilt (a new cluster queue leader, docs/architecture.md).


def test_an_away_arrival_keeps_its_place_and_pairs_with_nobody_until_back() -> None:
    queue = MatchQueue(relax_after=10.0)
    assert queue.enqueue(make_ticket("a", at=0.0), away=True) == []
    assert queue.enqueue(make_ticket("b", at=1.0)) == []  # a is away: b waits
    assert [t.peer for t in queue.waiting()] == ["a", "b"]
    assert queue.reinstate("a", 2.0) == [Match("a", "b")]  # a arrived first: it is first


def test_an_away_arrival_still_serves_the_relaxations_due() -> None:
    queue = MatchQueue(relax_after=10.0)
    queue.enqueue(make_ticket("a", at=0.0, tags=("jazz",)))
    queue.enqueue(make_ticket("b", at=1.0, tags=("go",)))
    assert queue.enqueue(make_ticket("c", at=20.0), away=True) == [Match("a", "b")]
    assert [t.peer for t in queue.waiting()] == ["c"]


QueueOp = tuple[str, TicketSpec, float]
queue_ops = st.lists(
    st.tuples(st.sampled_from(["enqueue", "enqueue", "cancel", "suspend", "reinstate", "tick"]),
              ticket_specs, st.sampled_from(STEPS)),
    max_size=30,
)


def _drive(queue: MatchQueue, ops: list[QueueOp], now: float, away: set[str]) -> tuple[list[Match], float]:
    """Apply ops to queue (the shell ticks before a cancel); the matches made and the time after."""
    matches: list[Match] = []
    for kind, spec, step in ops:
        now += step
        peer = spec[0]
        if kind == "enqueue" and peer not in queue:
            matches += queue.enqueue(ticket_from(spec, now))
        elif kind == "cancel":
            matches += queue.tick(now)
            queue.cancel(peer)
        elif kind == "suspend" and queue.suspend(peer):
            away.add(peer)
        elif kind == "reinstate":
            away.discard(peer)
            matches += queue.reinstate(peer, now)
        else:
            matches += queue.tick(now)
        away &= {t.peer for t in queue.waiting()}
    return matches, now


@settings(max_examples=100, deadline=None)
@given(before=queue_ops, after=queue_ops, gap=st.sampled_from(STEPS),
       relax_after=st.sampled_from([0.0, 1.0, 10.0]))
def test_replaying_the_waiting_tickets_rebuilds_the_queue(
    before: list[QueueOp], after: list[QueueOp], gap: float, relax_after: float
) -> None:
    """The waiting tickets, loaded in arrival order with their arrival times and away flags into a
    fresh queue some time later, pair exactly whom the old queue pairs by then, and from then on
    both queues make the same matches."""
    old, away = MatchQueue(relax_after), set[str]()
    _, now = _drive(old, before, 0.0, away)
    now += gap
    rebuilt = MatchQueue(relax_after)
    replayed: list[Match] = []
    for ticket in old.waiting():
        replayed += rebuilt.enqueue(ticket, away=ticket.peer in away)
    replayed += rebuilt.tick(now)
    assert replayed == old.tick(now)
    assert rebuilt.waiting() == old.waiting()
    assert rebuilt.next_deadline() == old.next_deadline()
    assert _drive(rebuilt, after, now, set(away)) == _drive(old, after, now, set(away))
