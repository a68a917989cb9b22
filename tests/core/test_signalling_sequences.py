"""Random sequences of facts into the signalling core: only refusals, and a refusal changes nothing.

Whatever clients send, in whatever order, and however the shell's clocks move (the wall clock
stepping either way; even a monotonic reading going back, which would be a shell bug), every
call either returns actions or raises a SignallingError with the state exactly as before. After
every step the state is consistent: rooms, lobbies, hosts and the queue agree with each client.
"""

from __future__ import annotations

from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_signalling import CHALLENGE, NOW, TOKEN, identify, make_core, pid, snapshot
from xes.core.access import PasswordHash
from xes.core.signalling import Signalling
from xes.core.timing import Now
from xes.errors import SignallingError
from xes.protocol import messages as m

PEERS = [pid(n) for n in range(1, 6)]
ROOMS = ["A" * 22, "B" * 22]
peers = st.sampled_from(PEERS)

joins = st.builds(m.Join, room=st.sampled_from(ROOMS), name=st.just("x"),
                  password=st.none() | st.sampled_from(["pw", "no"]), rollback=st.booleans())
matches = st.builds(m.MatchRequest, name=st.just("s"), tags=st.sampled_from([[], ["jazz"], ["chess"]]),
                    rollback=st.booleans())
# Joining and matching come first and twice: most other messages need them to do anything.
client_messages: st.SearchStrategy[m.ClientMessage] = st.one_of(
    joins, matches, joins, matches,
    st.just(m.Leave()),
    st.builds(m.Signal, to=peers, data=st.just(msgspec.Raw(b"{}"))),
    st.just(m.IceRefresh()),
    st.builds(m.SetRules, locked=st.sampled_from([m.UNSET, True, False]),
              lobby=st.sampled_from([m.UNSET, True, False]),
              password=st.sampled_from([m.UNSET, None, "pw"]),
              max_peers=st.sampled_from([m.UNSET, 2, 3, 8])),
    st.builds(m.Admit, peer=peers), st.builds(m.Decline, peer=peers),
    st.builds(m.Remove, peer=peers), st.builds(m.Ban, peer=peers),
    st.just(m.Next()), st.builds(m.Block, peer=peers), st.just(m.Stop()),
    st.builds(m.Rate, peer=peers, good=st.booleans()),
    st.builds(m.Report, peer=peers, reason=st.sampled_from(["under-18", "other"])),
)
steps = st.lists(st.tuples(
    peers,
    st.one_of(client_messages, st.just("connect"), st.just("disconnect"), st.just("tick"),
              st.just("detach"), st.just("resume")),
    st.sampled_from([0.0, 0.0, 1.0, 4.0, 11.0, -1.0]),   # monotonic step (-1: a shell bug)
    st.sampled_from([0.0, 1.0, -1.0, 3600.0, -3600.0]),  # wall-clock step (NTP, manual change)
), max_size=60)


RESUMER = "N" * 22  # the provisional id of a connection that resumes a session


def fake_hash(password: str, salt: bytes) -> PasswordHash:
    """What the shell's scrypt worker returns, without the 40 ms per hash."""
    return PasswordHash(salt, password.encode())


def apply(core: Signalling, peer: str, fact: Any, now: Now) -> None:
    if fact == "connect":
        if peer not in core.clients:
            identify(core, peer)
    elif fact == "disconnect":
        core.disconnect(peer)
    elif fact == "tick":
        core.tick(now)
    elif fact == "detach":
        core.detach(peer, now)
    elif fact == "resume":
        client = core.clients.get(peer)
        if client is not None and client.detached_at is not None:
            core.connect(RESUMER, TOKEN, CHALLENGE)
            core.resume(RESUMER, m.Resume(peer=peer, token=TOKEN, last_seq=0), TOKEN, now)
    elif peer in core.clients:
        password = None
        if isinstance(fact, m.Join) and fact.password is not None:
            salt = core.password_salt(fact.room)
            password = fake_hash(fact.password, salt) if salt is not None else None
        elif isinstance(fact, m.SetRules) and isinstance(fact.password, str):
            password = fake_hash(fact.password, b"s" * 16)
        if isinstance(fact, m.Signal):
            core.route_signal(peer, fact.to)
        else:
            core.handle(peer, fact, now, password=password)


def assert_consistent(core: Signalling) -> None:
    for rid, room in core.rooms.items():
        assert room.id == rid and (room.members or room.lobby)
        assert len(room.members) <= room.max_peers or room.match
        for cid, client in room.members.items():
            assert core.clients[cid] is client and client.room is room and client.knocking is None
        for cid, client in room.lobby.items():
            assert core.clients[cid] is client and client.knocking is room and client.room is None
        if room.members and not room.match:
            assert room.host in room.members
    for cid, client in core.clients.items():
        assert not (client.room is not None and client.knocking is not None)
        for room in (client.room, client.knocking):
            assert room is None or core.rooms.get(room.id) is room
        if cid in core.queue:
            assert client.queued is not None and client.room is None and client.knocking is None
        elif client.queued is not None and client.room is None:
            raise AssertionError(f"{cid} is marked queued but is in no queue and no match room")
        # A detached stranger's ticket is suspended (never matched), an attached one's is not.
        waiting = core.queue._waiting.get(cid)
        assert waiting is None or waiting.away == (client.detached_at is not None)


@settings(max_examples=200, deadline=None)
@given(steps)
def test_any_sequence_only_refuses_and_a_refusal_changes_nothing(
        sequence: list[tuple[str, Any, float, float]]) -> None:
    core = make_core(match_relax_seconds=10)
    for peer in PEERS:
        identify(core, peer)
    monotonic, unix = NOW.monotonic, NOW.unix
    for peer, fact, mono_step, wall_step in sequence:
        monotonic, unix = monotonic + mono_step, unix + mono_step + wall_step
        before = snapshot(core)
        try:
            apply(core, peer, fact, Now(monotonic=monotonic, unix=unix))
        except SignallingError:
            assert snapshot(core) == before, fact
        assert_consistent(core)
