"""The snapshot a stop writes and the next start reads: pure core, no files, no sockets, no clock."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from tests.core.test_signalling import (
    CHALLENGE,
    IDENTIFY,
    NOW,
    ROOM,
    identify,
    join,
    later,
    make_core,
    pid,
    to,
)
from xes import errors
from xes.core.access import hash_password
from xes.core.actions import Action, Send
from xes.core.safety import Standing
from xes.core.signalling import Signalling
from xes.core.snapshot import (
    Snapshot,
    decode_snapshot,
    encode_snapshot,
    export_snapshot,
    import_snapshot,
)
from xes.protocol import messages as m

LOBBY_ROOM = "L" * 22
PASSWORD = hash_password("pw", b"s" * 16)


def token(n: int) -> str:
    return f"T{n:021d}"


def deliver(core: Signalling, actions: list[Action]) -> None:
    """What the shell does with each numbered send: stamp it into the session's outbox."""
    for action in actions:
        if isinstance(action, Send) and action.numbered and action.to in core.clients:
            core.outbox(core.clients[action.to]).post(action.payload)


def act(core: Signalling, peer: str, message: m.ClientMessage, **kwargs: Any) -> list[Action]:
    actions = core.handle(peer, message, NOW, **kwargs)
    deliver(core, actions)
    return actions


def identity(n: int) -> str:
    """What the shell makes of a proven public key: its keyed hash (the key never reaches the core)."""
    return f"{n:064x}"


def busy_core() -> Signalling:
    """A room with a password, a ban and three members (pid 3 detached), a lobby with a
    knocker, a stranger waiting and a matched pair."""
    core = make_core(max_peers=6)
    for n in range(1, 12):
        core.connect(pid(n), token(n), CHALLENGE)
        deliver(core, identify(core, pid(n), identity(n)))
    for n in (1, 2, 3, 9):
        deliver(core, core.handle(pid(n), m.Join(room=ROOM, name=f"n{n}"), NOW))
    act(core, pid(1), m.Ban(peer=pid(9)))
    act(core, pid(1), m.SetRules(password="pw", max_peers=5), password=PASSWORD)
    deliver(core, core.detach(pid(3), NOW))
    # The relay, as the shell does it: pid 3 is away, so the signal is kept for its resume.
    away = core.route_signal(pid(2), pid(3))
    core.outbox(away).post(m.encode_signal(pid(2), m.signal_to(pid(3), m.SignalData(candidate=None)).data))
    deliver(core, core.handle(pid(4), m.Join(room=LOBBY_ROOM, name="door"), NOW))
    act(core, pid(4), m.SetRules(lobby=True))
    deliver(core, core.handle(pid(5), m.Join(room=LOBBY_ROOM, name="knocker"), NOW))
    for n in (6, 7):  # accept anyone: matched at once
        deliver(core, core.handle(pid(n), m.MatchRequest(name=f"s{n}", direct=True), NOW))
    deliver(core, core.handle(pid(8), m.MatchRequest(name="s8", tags=["chess"], direct=True), NOW))
    assert pid(8) in core.queue and core.clients[pid(6)].room is core.clients[pid(7)].room
    return core


def restarted(core: Signalling, seconds_later: float = 3.0) -> tuple[Signalling, Snapshot]:
    snapshot = export_snapshot(core, NOW)
    fresh = make_core(max_peers=6)
    import_snapshot(fresh, decode_snapshot(encode_snapshot(snapshot)), later(seconds_later))
    return fresh, snapshot


def test_the_round_trip_keeps_everything_but_the_sockets() -> None:
    core = busy_core()
    fresh, before = restarted(core)
    after = export_snapshot(fresh, later(3.0))
    # Every session is now detached (for 0 s, or as long as it already was: the restart's own
    # downtime counts against nobody); waits and the rest are as they were.
    assert [s.id for s in after.sessions] == [s.id for s in before.sessions]
    for old, new in zip(before.sessions, after.sessions, strict=True):
        assert new == msgspec.structs.replace(old, detached_for=old.detached_for or 0.0)
    assert after.rooms == before.rooms and after.queue == before.queue
    room = fresh.rooms[ROOM]
    assert (room.host, list(room.members), room.rules()) == (
        pid(1), [pid(1), pid(2), pid(3)], m.Rules(locked=False, lobby=False, password=True, max_peers=5))
    assert list(fresh.rooms[LOBBY_ROOM].lobby) == [pid(5)]
    assert [t.peer for t in fresh.queue.waiting()] == [t.peer for t in before.queue] == [pid(8)]
    assert fresh.clients[pid(6)].room is fresh.clients[pid(7)].room is not None


def test_a_snapshot_holds_no_token_and_identities_only_as_their_hash() -> None:
    data = encode_snapshot(export_snapshot(busy_core(), NOW))
    for n in range(1, 12):
        assert token(n).encode() not in data
    assert IDENTIFY.public_key.encode() not in data and IDENTIFY.signature.encode() not in data
    assert b"pw" not in data.replace(b"password", b"")


def test_a_resumed_session_stays_identified_once_the_shell_loaded_its_standing() -> None:
    core = busy_core()
    core.handle(pid(6), m.Rate(peer=pid(7), good=True), NOW)  # a stranger rated: its partner is kept
    fresh, _ = restarted(core)
    # Sessions that stand somewhere: 9 was banned, 10 and 11 never joined anything.
    assert fresh.identities_to_load() == {identity(n) for n in range(1, 12) if n not in (9, 10, 11)}
    for ident in sorted(fresh.identities_to_load()):
        standing = Standing(ident, created_at=NOW.unix) if ident != identity(8) else None
        created = fresh.identity_loaded(ident, standing, (), later(3))
        # A standing whose write was lost is made again: the identity was proven before the stop.
        assert [type(a).__name__ for a in created] == (["CreateIdentity"] if standing is None else [])
    assert fresh.identities_to_load() == set()
    fresh.connect(pid(40), token(40), CHALLENGE)
    fresh.resume(pid(40), m.Resume(peer=pid(8), token=token(8), last_seq=0), token(41), later(4))
    assert fresh.clients[pid(8)].identity == identity(8)
    with pytest.raises(errors.IdentityRefused):  # no second identify: it still has one
        identify(fresh, pid(8), identity(8), later(4))
    fresh.connect(pid(42), token(42), CHALLENGE)
    fresh.resume(pid(42), m.Resume(peer=pid(6), token=token(6), last_seq=0), token(43), later(4))
    with pytest.raises(errors.BadField, match="already rated"):
        fresh.handle(pid(6), m.Rate(peer=pid(7), good=True), later(4))


def test_sessions_resume_with_their_token_and_their_replay() -> None:
    core = busy_core()
    last_seq = {peer: client.outbox.seq for peer, client in core.clients.items()
                if client.outbox is not None}
    fresh, _ = restarted(core)
    # pid 3 was detached before the stop: it missed the signal, which the replay brings.
    fresh.connect(pid(40), token(40), CHALLENGE)
    actions = fresh.resume(pid(40), m.Resume(peer=pid(3), token=token(3), last_seq=last_seq[pid(3)] - 1),
                           token(41), later(4))
    sent = to(actions, pid(3))
    assert sent[0]["type"] == "resumed" and sent[0]["room"]["host"] == pid(1)
    assert [msg["type"] for msg in sent[1:]] == ["signal"] and sent[1]["from"] == pid(2)
    # The host resumes: still host, still with its rules; its room-mates hear peer-back only.
    fresh.connect(pid(42), token(42), CHALLENGE)
    actions = fresh.resume(pid(42), m.Resume(peer=pid(1), token=token(1), last_seq=last_seq[pid(1)]),
                           token(43), later(4))
    [resumed] = to(actions, pid(1))
    assert resumed["room"]["rules"]["password"] is True and resumed["room"]["host"] == pid(1)
    assert {json.loads(a.payload)["type"] for a in actions if isinstance(a, Send) and a.to != pid(1)} \
        == {"peer-back"}
    # The banned key is still banned, the password still asked.
    fresh.connect(pid(44), token(44), CHALLENGE)
    with pytest.raises(errors.Banned):
        join(fresh, pid(44), key=identity(9))
    with pytest.raises(errors.PasswordRequired):
        join(fresh, pid(45))


def test_a_wrong_token_is_refused_and_unresumed_sessions_end_after_their_grace() -> None:
    core = busy_core()
    fresh, _ = restarted(core)
    fresh.connect(pid(40), token(40), CHALLENGE)
    with pytest.raises(errors.SessionGone):
        fresh.resume(pid(40), m.Resume(peer=pid(2), token=token(3), last_seq=0), token(41), later(4))
    grace = fresh.settings.resume_grace_seconds
    assert fresh.next_deadline() is not None
    actions = fresh.tick(later(3.0 + grace))
    assert pid(1) not in fresh.clients and pid(2) not in fresh.clients  # nobody came back
    assert ROOM not in fresh.rooms and not fresh.queue.waiting()
    assert all(not a.payload.startswith(b'{"type":"hello"') for a in actions)


def test_a_snapshot_goes_only_into_a_fresh_core_and_must_hold_together() -> None:
    snapshot = export_snapshot(busy_core(), NOW)
    used = make_core()
    join(used, pid(30))
    with pytest.raises(ValueError, match="fresh core"):
        import_snapshot(used, snapshot, NOW)
    broken = msgspec.structs.replace(snapshot, sessions=snapshot.sessions[1:])
    with pytest.raises(ValueError, match="hold together"):
        import_snapshot(make_core(), broken, NOW)
    with pytest.raises(ValueError, match="format"):
        import_snapshot(make_core(), msgspec.structs.replace(snapshot, format=99), NOW)
