"""Sessions in the pure core (docs/protocol.md, "Sessions"): detach, grace, hearing, cap, resume,
the outbox's numbering and replay, and the queue's rule for detached strangers. No clock: every
time is a `Now` handed in."""

from __future__ import annotations

from typing import Any

import pytest

from tests.core.test_signalling import (
    CHALLENGE,
    NOW,
    ROOM,
    TOKEN,
    identify,
    join,
    later,
    make_core,
    pid,
    snapshot,
    to,
    types,
)
from xes.core.matchmaking import Match, MatchQueue, Ticket
from xes.core.outbox import Outbox
from xes.core.signalling import Signalling, StaleSession
from xes.errors import AlreadyJoined, SessionGone
from xes.protocol import messages as m

GRACE, CAP = 20.0, 120.0
NEW = "N" * 22        # the provisional id of the connection that resumes
ROTATED = "Z" * 22    # the token the shell draws for the resumed session


def trio() -> Signalling:
    core = make_core()
    for n in (1, 2, 3):
        join(core, pid(n))
    return core


def resume(core: Signalling, peer: str, token: str = TOKEN, last_seq: int = 0,
           at: float = 1.0) -> list[Any]:
    """Resume ``peer`` from a fresh connection (id NEW), ``at`` seconds after NOW."""
    core.connect(NEW, TOKEN, CHALLENGE)
    return core.resume(NEW, m.Resume(peer=peer, token=token, last_seq=last_seq), ROTATED, later(at))


def test_a_lost_member_is_away_not_gone() -> None:
    core = trio()
    actions = core.detach(pid(3), NOW)
    for other in (pid(1), pid(2)):
        assert to(actions, other) == [{"type": "peer-away", "peer": pid(3)}]
    assert to(actions, pid(3)) == []
    assert pid(3) in core.rooms[ROOM].members and core.rooms[ROOM].host == pid(1)
    # Signals to it are still routed: the shell keeps them in its outbox.
    assert core.route_signal(pid(1), pid(3)) is core.clients[pid(3)]
    assert core.next_deadline() == NOW.monotonic + GRACE


def test_a_session_that_stands_nowhere_ends_with_its_socket() -> None:
    core = make_core()
    core.connect(pid(1), TOKEN, CHALLENGE)
    assert core.detach(pid(1), NOW) == []
    assert pid(1) not in core.clients and core.next_deadline() is None


def test_the_grace_ends_a_detached_session_and_passes_the_host_role() -> None:
    core = trio()
    core.detach(pid(1), NOW)
    assert core.tick(later(GRACE - 0.001)) == []
    actions = core.tick(later(GRACE))
    for other in (pid(2), pid(3)):
        assert types(actions, other) == ["peer-left", "host"]
        assert to(actions, other)[0] == {"type": "peer-left", "peer": pid(1), "reason": "disconnected"}
    assert pid(1) not in core.clients and core.rooms[ROOM].host == pid(2)
    assert core.next_deadline() is None


def test_room_mates_hearing_it_extend_the_grace_up_to_the_cap() -> None:
    core = trio()
    stranger = pid(9)
    join(core, stranger, room="S" * 22)
    core.detach(pid(3), NOW)
    # Someone in another room cannot keep it alive; nor can a report about an attached member.
    core.handle(stranger, m.Hearing(peer=pid(3)), later(15))
    core.handle(pid(1), m.Hearing(peer=pid(2)), later(15))
    assert core.next_deadline() == NOW.monotonic + GRACE
    at = 15.0
    while at < CAP:  # a report every 10 s, up to the cap and beyond it
        assert core.tick(later(at)) == []
        core.handle(pid(1), m.Hearing(peer=pid(3)), later(at))
        assert core.next_deadline() == NOW.monotonic + min(at + GRACE, CAP)
        at += 10
    assert core.tick(later(CAP - 0.001)) == []
    actions = core.tick(later(CAP))  # a lone member cannot keep it past the cap
    assert types(actions, pid(1)) == ["peer-left"]


def test_resume_continues_the_session_with_a_snapshot_and_a_new_token() -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2), rollback=False)
    join(core, pid(3))
    core.detach(pid(2), NOW)
    core.detach(pid(3), NOW)
    actions = resume(core, pid(2))
    resumed = to(actions, pid(2))[0]
    assert resumed["type"] == "resumed" and resumed["peer"] == pid(2)
    assert resumed["resume"] == ROTATED and resumed["last_seq"] == 0
    assert resumed["room"] == {
        "room": ROOM, "you": pid(2), "host": pid(1),
        "rules": {"locked": False, "lobby": False, "password": False, "max_peers": 8},
        # Toward pid(1) (present first, can roll back) pid(2) is impolite; toward pid(3), who
        # came later, pid(2) was the one present and cannot roll back: impolite too.
        "peers": [{"id": pid(1), "name": "name-01", "polite": False},
                  {"id": pid(3), "name": "name-03", "polite": False}],
        "ice_transport_policy": "all", "match": False, "away": [pid(3)], "knocks": []}
    assert resumed["lobby"] is None and resumed["queued"] is False
    assert to(actions, pid(1)) == [{"type": "peer-back", "peer": pid(2)}]
    assert to(actions, pid(3)) == [{"type": "peer-back", "peer": pid(2)}]  # kept for its resume
    assert all(not a.numbered for a in actions if a.to == pid(2))
    assert NEW not in core.clients and core.clients[pid(2)].detached_at is None
    # The old token is spent: a second resume with it is refused.
    before = snapshot(core)
    with pytest.raises(SessionGone):
        resume(core, pid(2))
    del core.clients[NEW]
    assert snapshot(core) == before


@pytest.mark.parametrize("case", ["wrong token", "unknown peer", "itself", "ended"])
def test_failed_resumes_are_one_answer_and_change_nothing(case: str) -> None:
    core = trio()
    core.detach(pid(3), NOW)
    if case == "ended":
        core.tick(later(GRACE))
    core.connect(NEW, TOKEN, CHALLENGE)
    before = snapshot(core)
    peer = {"unknown peer": pid(8), "itself": NEW}.get(case, pid(3))
    token = "W" * 22 if case == "wrong token" else TOKEN
    with pytest.raises(SessionGone) as refused:
        core.resume(NEW, m.Resume(peer=peer, token=token, last_seq=0), ROTATED, later(1))
    assert type(refused.value) is SessionGone and refused.value.ref == "resume"
    assert refused.value.message == "this session cannot be resumed: join or match afresh"
    assert snapshot(core) == before


def test_a_resume_that_is_not_the_first_message_is_refused() -> None:
    core = trio()
    with pytest.raises(AlreadyJoined):
        core.handle(pid(1), m.Resume(peer=pid(2), token=TOKEN, last_seq=0), NOW)


def test_the_replay_is_what_came_after_last_seq_and_a_gap_is_stale() -> None:
    core = trio()
    outbox = core.outbox(core.clients[pid(3)])
    for n in range(1, 4):
        outbox.post(f'{{"type":"x","n":{n}}}'.encode())
    core.detach(pid(3), NOW)
    actions = resume(core, pid(3), last_seq=1)
    mine = [a.payload for a in actions if a.to == pid(3)]
    assert mine[1:] == [b'{"type":"x","n":2,"seq":2}', b'{"type":"x","n":3,"seq":3}']
    assert b'"last_seq":3' in mine[0]
    # A client claiming a seq never sent, or one older than what is kept, cannot resume.
    core.detach(pid(3), later(2))
    del outbox.frames[0]
    for last_seq in (0, 4):
        with pytest.raises(StaleSession):
            resume(core, pid(3), token=ROTATED, last_seq=last_seq)
        del core.clients[NEW]


def test_a_detached_knocker_is_admitted_and_learns_it_on_resume() -> None:
    core = make_core()
    join(core, pid(1))
    core.handle(pid(1), m.SetRules(lobby=True), NOW)
    assert types(join(core, pid(2)), pid(2)) == ["lobby"]
    core.detach(pid(2), NOW)
    actions = core.handle(pid(1), m.Admit(peer=pid(2)), later(1))
    assert types(actions, pid(2)) == ["joined"]  # numbered into its outbox by the shell
    resumed = to(resume(core, pid(2), at=2), pid(2))[0]
    assert resumed["room"]["room"] == ROOM and resumed["lobby"] is None


def test_the_host_sees_knocks_waiting_in_its_snapshot() -> None:
    core = make_core()
    join(core, pid(1))
    core.handle(pid(1), m.SetRules(lobby=True), NOW)
    core.detach(pid(1), NOW)
    join(core, pid(2))
    resumed = to(resume(core, pid(1)), pid(1))[0]
    assert resumed["room"]["knocks"] == [{"id": pid(2), "name": "name-02"}]


def _queue(core: Signalling, peer: str, at: float = 0.0) -> list[Any]:
    if peer not in core.clients:
        core.connect(peer, TOKEN, CHALLENGE)
        identify(core, peer)
    return core.handle(peer, m.MatchRequest(name="Q", direct=True), later(at))


def test_a_detached_stranger_keeps_its_place_but_is_matched_only_once_back() -> None:
    core = make_core()
    _queue(core, pid(1))
    core.detach(pid(1), later(1))
    assert types(_queue(core, pid(2), at=2), pid(2)) == ["queued"]
    actions = resume(core, pid(1), at=3)
    assert types(actions, pid(1)) == ["resumed", "joined", "peer-joined"]
    assert to(actions, pid(1))[0]["queued"] is True
    # It waited longer, so it is in the room first and the newcomer offers.
    joined = to(actions, pid(2))[0]
    assert joined["type"] == "joined" and [p["id"] for p in joined["peers"]] == [pid(1)]


def test_a_detached_stranger_who_expires_leaves_the_queue_unmatched() -> None:
    core = make_core()
    _queue(core, pid(1))
    core.detach(pid(1), NOW)
    _queue(core, pid(2), at=1)
    assert core.tick(later(GRACE)) == []
    assert pid(1) not in core.queue and pid(1) not in core.clients
    assert types(_queue(core, pid(3), at=GRACE + 1), pid(2)) == ["joined", "peer-joined"]


def test_a_match_keeps_its_room_while_one_side_is_away() -> None:
    core = make_core()
    _queue(core, pid(1))
    _queue(core, pid(2))
    match_room = core.clients[pid(1)].room
    assert match_room is not None and match_room.match
    assert to(core.detach(pid(2), NOW), pid(1)) == [{"type": "peer-away", "peer": pid(2)}]
    assert types(resume(core, pid(2)), pid(1)) == ["peer-back"]
    assert core.clients[pid(2)].room is match_room


@pytest.mark.parametrize("settings", [{"resume_grace_seconds": 0.0},
                                      {"resume_grace_seconds": 30.0, "resume_cap_seconds": 20.0},
                                      {"replay_bytes": 1000}, {"replay_messages": 0}])
def test_session_limits_that_make_no_sense_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        make_core(**settings)


# ------------------------------------------------------------------ the outbox


def test_the_outbox_numbers_from_one_and_keeps_the_newest_within_its_bounds() -> None:
    outbox = Outbox(max_frames=3, max_bytes=1_000)
    frames = [outbox.post(b'{"type":"queued"}') for _ in range(5)]
    assert frames[0] == b'{"type":"queued","seq":1}' and frames[4] == b'{"type":"queued","seq":5}'
    assert outbox.first_seq == 3 and outbox.since(2) == frames[2:] and outbox.since(5) == []
    assert outbox.since(1) is None and outbox.since(6) is None
    small = Outbox(max_frames=100, max_bytes=60)
    for _ in range(4):
        small.post(b'{"type":"queued"}')
    assert small.size <= 60 and small.first_seq == 3


def test_a_detached_outbox_drops_only_what_came_before_the_detach() -> None:
    outbox = Outbox(max_frames=3, max_bytes=10_000)
    for _ in range(3):
        outbox.post(b'{"type":"a"}')
    outbox.hold()
    assert outbox.post(b'{"type":"b"}') is not None   # drops seq 1, from before the detach
    assert outbox.post(b'{"type":"b"}') is not None
    assert outbox.post(b'{"type":"b"}') is not None   # now all three are from while detached
    assert outbox.post(b'{"type":"b"}') is None       # would drop one: the session must end
    outbox.release()
    assert outbox.post(b'{"type":"c"}') is not None


# ------------------------------------------------------------------ the queue's rule 6


def _ticket(peer: str, at: float = 0.0, tags: frozenset[str] = frozenset()) -> Ticket:
    return Ticket(peer=peer, tags=tags, language=None, avoid=frozenset(), enqueued_at=at)


def test_a_suspended_ticket_is_skipped_and_served_on_reinstate() -> None:
    queue = MatchQueue(relax_after=10)
    assert queue.enqueue(_ticket("a")) == []
    assert queue.suspend("a") and not queue.suspend("nobody")
    assert queue.enqueue(_ticket("b", 1)) == []
    assert queue.enqueue(_ticket("c", 2)) == [Match(first="b", second="c")]
    assert queue.enqueue(_ticket("d", 3)) == []
    assert queue.reinstate("a", 4) == [Match(first="a", second="d")]  # its place: first
    assert len(queue) == 0


def test_a_suspended_ticket_relaxes_on_time_but_waits_to_be_served() -> None:
    queue = MatchQueue(relax_after=10)
    queue.enqueue(_ticket("a", 0, frozenset({"chess"})))
    queue.suspend("a")
    queue.enqueue(_ticket("b", 1))
    assert queue.tick(10) == []           # relaxed, but away
    assert queue.reinstate("a", 12) == [Match(first="a", second="b")]
