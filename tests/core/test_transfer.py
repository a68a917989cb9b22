"""One session, or one room with its sessions, moving between cluster nodes: pure core, no Redis."""

from __future__ import annotations

import json

import pytest

from tests.core.test_signalling import CHALLENGE, NOW, ROOM, join, later, make_core, pid, to
from tests.core.test_snapshot import LOBBY_ROOM, PASSWORD, act, busy_core, deliver, identity, token
from xes import errors
from xes.core.actions import Send
from xes.core.safety import Standing
from xes.core.signalling import Signalling
from xes.core.snapshot import (
    decode_room_transfer,
    decode_session_transfer,
    encode_transfer,
    export_room,
    export_session,
    import_room,
    import_session,
)
from xes.protocol import messages as m


def moved_session(source: Signalling, peer: str, target: Signalling) -> None:
    transfer = decode_session_transfer(encode_transfer(export_session(source, peer, NOW)))
    assert source.release(peer) is not None
    import_session(target, transfer)


def test_a_session_moves_with_its_identity_numbering_and_replay_and_joins_there() -> None:
    home, owner = busy_core(), make_core(max_peers=6)
    home.standings[identity(10)] = Standing(identity(10), created_at=NOW.unix, cooldowns=2)
    home.blocks[identity(10)] = {identity(11)}
    client = home.clients[pid(10)]
    seq = home.outbox(client).seq
    home.outbox(client).post(m.encode(m.Queued()))  # something to replay
    moved_session(home, pid(10), owner)
    assert pid(10) not in home.clients
    moved = owner.clients[pid(10)]
    assert moved.identity == identity(10) and moved.detached_at is None
    assert owner.standings[identity(10)].cooldowns == 2 and owner.blocks[identity(10)] == {identity(11)}
    assert owner.outbox(moved).seq == seq + 1 and owner.outbox(moved).since(seq) is not None
    # It carries on there as if it had always been there: it joins, and it resumes with its token.
    [joined] = to(join(owner, pid(10)), pid(10))
    assert joined["type"] == "joined" and joined["host"] == pid(10)
    owner.connect(pid(40), token(40), CHALLENGE)
    owner.detach(pid(10), NOW)
    actions = owner.resume(pid(40), m.Resume(peer=pid(10), token=token(10), last_seq=seq),
                           token(41), later(1))
    assert [msg["type"] for msg in to(actions, pid(10))][:2] == ["resumed", "queued"]


def test_only_a_session_standing_nowhere_moves_alone() -> None:
    home, owner = busy_core(), make_core()
    with pytest.raises(ValueError, match="moves with its room"):
        import_session(owner, export_session(home, pid(1), NOW))
    moved_session(home, pid(10), owner)
    with pytest.raises(ValueError, match="already here"):
        import_session(owner, export_session(owner, pid(10), NOW))


def test_a_room_taken_over_keeps_its_people_rules_bans_and_lobby_and_nobody_is_told() -> None:
    old = busy_core()
    deliver(old, old.handle(pid(10), m.Join(room=LOBBY_ROOM, name="second knocker"), NOW))
    seqs = {p: c.outbox.seq for p, c in old.clients.items() if c.outbox is not None}
    data = encode_transfer(export_room(old, ROOM, NOW))
    lobby = encode_transfer(export_room(old, LOBBY_ROOM, NOW))
    assert b"pw" not in data.replace(b"password", b"") and token(1).encode() not in data
    new = make_core(max_peers=6)
    room = import_room(new, decode_room_transfer(data), later(2))
    import_room(new, decode_room_transfer(lobby), later(2))
    assert list(room.members) == [pid(1), pid(2), pid(3)] and room.host == pid(1)
    assert room.rules() == m.Rules(locked=False, lobby=False, password=True, max_peers=5)
    assert list(new.rooms[LOBBY_ROOM].lobby) == [pid(5), pid(10)]
    assert all(c.detached_at is not None for c in new.clients.values())
    # The host resumes first: its room-mates, still away, are kept its peer-back.
    new.connect(pid(42), token(42), CHALLENGE)
    deliver(new, new.resume(pid(42), m.Resume(peer=pid(1), token=token(1), last_seq=seqs[pid(1)]),
                            token(43), later(3)))
    # A member resumes: numbering goes on above what it saw (the dead owner may have sent more
    # than the snapshot knew), and what this node made since the takeover (that peer-back) is
    # replayed numbered after it; its room-mates hear only peer-back.
    new.connect(pid(40), token(40), CHALLENGE)
    ahead = seqs[pid(2)] + 7
    actions = new.resume(pid(40), m.Resume(peer=pid(2), token=token(2), last_seq=ahead), token(41),
                         later(3))
    resumed = [json.loads(a.payload) for a in actions if isinstance(a, Send) and a.to == pid(2)]
    assert [msg["type"] for msg in resumed] == ["resumed", "peer-back"]
    assert resumed[0]["last_seq"] == ahead + 1 and resumed[1]["seq"] == ahead + 1
    assert {msg["type"] for p in (pid(1), pid(3)) for msg in to(actions, p)} == {"peer-back"}
    deliver(new, actions)
    assert new.clients[pid(2)].outbox.seq == ahead + 1  # type: ignore[union-attr]
    # A member that missed what the old owner sent before its snapshot cannot resume.
    new.connect(pid(46), token(46), CHALLENGE)
    with pytest.raises(errors.SessionGone):
        new.resume(pid(46), m.Resume(peer=pid(3), token=token(3), last_seq=seqs[pid(3)] - 1),
                   token(47), later(3))
    with pytest.raises(errors.Banned):
        join(new, pid(44), password="pw", key=identity(9))
    new.connect(pid(45), token(45), CHALLENGE)
    deliver(new, new.handle(pid(45), m.Join(room=ROOM, name="late", password="pw"), later(3),
                            password=PASSWORD))
    assert list(room.members)[-1] == pid(45)
    actions = act(new, pid(1), m.Ban(peer=pid(45)))
    assert {msg["type"] for msg in to(actions, pid(45))} == {"removed"}
    # Whoever does not come back ends after the grace, as after any lost socket.
    ended = new.tick(later(2 + new.settings.resume_grace_seconds + 1))
    assert {msg["type"] for msg in to(ended, pid(1))} == {"peer-left"} and pid(3) not in new.clients


def test_a_room_takeover_refuses_what_does_not_hold_together() -> None:
    old = busy_core()
    transfer = export_room(old, ROOM, NOW)
    new = make_core(max_peers=6)
    import_room(new, transfer, NOW)
    with pytest.raises(ValueError, match="already here"):
        import_room(new, transfer, NOW)
    broken = type(transfer)(format=transfer.format, room=transfer.room, sessions=transfer.sessions[1:])
    with pytest.raises(ValueError, match="hold together"):
        import_room(make_core(max_peers=6), broken, NOW)
    with pytest.raises(ValueError):
        decode_room_transfer(b"not a snapshot at all")


def test_a_released_room_leaves_nothing_behind() -> None:
    old = busy_core()
    gone = old.release_room(ROOM)
    assert {c.id for c in gone} == {pid(1), pid(2), pid(3)}
    assert ROOM not in old.rooms and not {pid(1), pid(2), pid(3)} & set(old.clients)
    assert old.tick(later(old.settings.resume_grace_seconds + 1)) == []
