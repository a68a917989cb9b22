"""The signalling core, driven with plain method calls: no event loop, no sockets, no clock."""

from __future__ import annotations

import copy
import itertools
import json
import math
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from xes import errors
from xes.core.access import PasswordHash, hash_password
from xes.core.actions import Action, Send
from xes.core.matchmaking import Match
from xes.core.signalling import CoreSettings, ProvenIdentity, Signalling
from xes.core.timing import Now
from xes.core.turn import IceSettings, turn_credentials
from xes.protocol import messages as m

# The two clocks of xes.core.timing, deliberately far apart: mixing them up shows in the results.
NOW = Now(monotonic=5_000.0, unix=1_800_000_000.0)
ROOM = "R" * 22
TOKEN = "T" * 22  # the shell draws a fresh resume token per connection; the core only passes it on


def pid(n: int) -> str:
    """A valid 22-character peer id, readable in failures: P000…01."""
    return f"P{n:021d}"


def later(seconds: float, wall_step: float = 0.0) -> Now:
    """``seconds`` after NOW on both clocks, with the wall clock also stepped by ``wall_step``."""
    return Now(monotonic=NOW.monotonic + seconds, unix=NOW.unix + seconds + wall_step)


def room_ids() -> Iterator[str]:
    return (f"M{n:021d}" for n in itertools.count())


def make_core(**settings: Any) -> Signalling:
    return Signalling(CoreSettings(**settings), room_ids())


def to(actions: list[Action], peer: str) -> list[dict[str, Any]]:
    """The messages the actions send to one peer, decoded."""
    return [json.loads(a.payload) for a in actions if isinstance(a, Send) and a.to == peer]


def types(actions: list[Action], peer: str) -> list[str]:
    return [msg["type"] for msg in to(actions, peer)]


CHALLENGE = "c" * 43
# What a browser sends; the core never checks signatures (the shell does, then passes `proven`).
IDENTIFY = m.Identify(public_key="A" * 87, signature="B" * 86)


def connect(core: Signalling, peer: str) -> list[Action]:
    return core.connect(peer, TOKEN, CHALLENGE)


def identify(core: Signalling, peer: str, identity: str | None = None, now: Now = NOW,
             **proven: Any) -> list[Action]:
    """``peer`` proves ``identity`` (default: one of its own), as the shell reports it."""
    if peer not in core.clients:
        connect(core, peer)
    fields: dict[str, Any] = {"standing": None, "blocks": frozenset(), "network": None,
                              "created_today_on_network": 0, **proven}
    return core.handle(peer, IDENTIFY, now, proven=ProvenIdentity(identity or f"id-{peer}", **fields))


def join(core: Signalling, peer: str, room: str = ROOM, name: str | None = None,
         key: str | None = None, **fields: Any) -> list[Action]:
    """``key``: the identity this browser proves first (host bans use it)."""
    if peer not in core.clients:
        connect(core, peer)
    if key is not None:
        identify(core, peer, key)
    return core.handle(peer, m.Join(room=room, name=name or f"name-{peer[-2:]}", **fields), NOW)


def snapshot(core: Signalling) -> Any:
    """Everything observable about the core's state, to prove a refusal changed nothing."""
    rooms = {rid: (list(r.members), list(r.lobby), r.host, r.locked, r.lobby_on, r.max_peers,
                   sorted(r.banned_identities)) for rid, r in core.rooms.items()}
    clients = {cid: (c.room.id if c.room else None, c.knocking.id if c.knocking else None,
                     c.queued is not None, sorted(c.avoid), c.token_digest, c.detached_at, c.expires_at)
               for cid, c in core.clients.items()}
    return copy.deepcopy((rooms, clients, len(core.queue)))


# ---------------------------------------------------------------------------------------------- rooms

def test_connect_says_hello_with_the_peer_id_and_limits() -> None:
    core = make_core()
    [hello] = to(connect(core, pid(1)), pid(1))
    assert hello["type"] == "hello" and hello["peer"] == pid(1) and hello["protocol"] == 2
    assert hello["resume"] == TOKEN and hello["challenge"] == CHALLENGE
    assert hello["limits"]["max_message_bytes"] == 65_536 and hello["limits"]["max_peers"] == 8


def test_first_joiner_creates_the_room_and_is_host() -> None:
    core = make_core()
    [joined] = to(join(core, pid(1)), pid(1))
    assert joined["type"] == "joined" and joined["peers"] == [] and joined["host"] == pid(1)
    assert joined["you"] == pid(1) and joined["ice_transport_policy"] == "all" and not joined["match"]


def test_joiner_learns_who_is_there_and_the_room_learns_of_the_joiner() -> None:
    core = make_core()
    join(core, pid(1), name="Ada")
    join(core, pid(2), name="Bob")
    actions = join(core, pid(3), name="Cy")
    [joined] = to(actions, pid(3))
    assert [(p["id"], p["name"]) for p in joined["peers"]] == [(pid(1), "Ada"), (pid(2), "Bob")]
    for member in (pid(1), pid(2)):
        [notice] = to(actions, member)
        assert notice == {"type": "peer-joined", "peer": {"id": pid(3), "name": "Cy", "polite": True}}


@pytest.mark.parametrize(
    ("present_rolls_back", "newcomer_rolls_back", "present_polite", "newcomer_polite"),
    [(True, True, True, False), (False, True, False, True), (True, False, True, False),
     (False, False, False, True)],
)
def test_politeness_goes_to_the_side_that_can_roll_back(
        present_rolls_back: bool, newcomer_rolls_back: bool, present_polite: bool,
        newcomer_polite: bool) -> None:
    core = make_core()
    join(core, pid(1), rollback=present_rolls_back)
    actions = join(core, pid(2), rollback=newcomer_rolls_back)
    assert to(actions, pid(2))[0]["peers"][0]["polite"] is newcomer_polite
    assert to(actions, pid(1))[0]["peer"]["polite"] is present_polite


def test_names_are_trimmed() -> None:
    core = make_core()
    join(core, pid(1))
    actions = join(core, pid(2), name="  Grace  ")
    assert to(actions, pid(1))[0]["peer"]["name"] == "Grace"


def test_leave_tells_everyone_and_the_leaver() -> None:
    core = make_core()
    for n in (1, 2, 3):
        join(core, pid(n))
    actions = core.handle(pid(2), m.Leave(), NOW)
    assert to(actions, pid(2)) == [{"type": "left", "room": ROOM}]
    for member in (pid(1), pid(3)):
        assert to(actions, member) == [{"type": "peer-left", "peer": pid(2), "reason": "left"}]


def test_disconnect_tells_the_room_with_reason_disconnected() -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2))
    actions = core.disconnect(pid(2))
    assert to(actions, pid(1)) == [{"type": "peer-left", "peer": pid(2), "reason": "disconnected"}]
    assert pid(2) not in core.clients


def test_empty_rooms_disappear() -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2))
    core.handle(pid(1), m.Leave(), NOW)
    core.disconnect(pid(2))
    assert core.rooms == {}


def test_host_passes_to_the_longest_present_member() -> None:
    core = make_core()
    for n in (1, 2, 3):
        join(core, pid(n))
    actions = core.handle(pid(1), m.Leave(), NOW)
    assert {"type": "host", "peer": pid(2)} in to(actions, pid(3))
    assert core.rooms[ROOM].host == pid(2)


def test_the_ninth_gets_room_full_and_nothing_changes() -> None:
    core = make_core()
    for n in range(8):
        join(core, pid(n))
    connect(core, pid(9))
    before = snapshot(core)
    with pytest.raises(errors.RoomFull):
        join(core, pid(9))
    assert snapshot(core) == before


def test_one_room_at_a_time() -> None:
    core = make_core()
    join(core, pid(1))
    with pytest.raises(errors.AlreadyJoined):
        join(core, pid(1), room="S" * 22)


# ---------------------------------------------------------------------------------------------- relay

def test_route_signal_within_a_room() -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2))
    assert core.route_signal(pid(2), pid(1)) is core.clients[pid(1)]


@pytest.mark.parametrize("target", ["member of another room", "unknown", "self"])
def test_route_signal_refuses_anyone_outside_your_room(target: str) -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2))
    join(core, pid(3), room="S" * 22)
    to_peer = {"member of another room": pid(3), "unknown": pid(99), "self": pid(2)}[target]
    with pytest.raises(errors.PeerNotFound):
        core.route_signal(pid(2), to_peer)


def test_route_signal_before_joining() -> None:
    core = make_core()
    connect(core, pid(1))
    with pytest.raises(errors.NotJoined):
        core.route_signal(pid(1), pid(2))


def test_relayed_frame_stamps_the_sender_and_keeps_data_verbatim() -> None:
    data = b'{"description": {"type":"offer","sdp":"v=0\\r\\n"}, "from": "forged"}'
    frame = m.encode_signal(pid(7), msgspec.Raw(data))
    decoded = json.loads(frame)
    assert decoded["from"] == pid(7) and decoded["type"] == "signal"
    assert frame.endswith(data + b"}")


# ---------------------------------------------------------------------------------------------- rules

def _hash(password: str, salt: bytes = b"s" * 16) -> PasswordHash:
    return hash_password(password, salt)


def test_only_the_host_sets_rules() -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2))
    before = snapshot(core)
    for message in (m.SetRules(locked=True), m.Remove(peer=pid(1)), m.Ban(peer=pid(1)),
                    m.Admit(peer=pid(1)), m.Decline(peer=pid(1))):
        with pytest.raises(errors.NotHost):
            core.handle(pid(2), message, NOW)
    assert snapshot(core) == before


def test_lock_keeps_newcomers_out_and_everyone_sees_the_rules() -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2))
    actions = core.handle(pid(1), m.SetRules(locked=True), NOW)
    for member in (pid(1), pid(2)):
        assert to(actions, member)[0]["rules"]["locked"] is True
    with pytest.raises(errors.RoomLocked):
        join(core, pid(3))


def test_password_required_wrong_and_right() -> None:
    core = make_core()
    join(core, pid(1))
    core.handle(pid(1), m.SetRules(password="hunter2"), NOW, password=_hash("hunter2"))
    assert core.password_salt(ROOM) == b"s" * 16
    connect(core, pid(2))
    with pytest.raises(errors.PasswordRequired):
        join(core, pid(2))
    with pytest.raises(errors.WrongPassword):
        core.handle(pid(2), m.Join(room=ROOM, name="x", password="guess"), NOW, password=_hash("guess"))
    actions = core.handle(pid(2), m.Join(room=ROOM, name="x", password="hunter2"), NOW,
                          password=_hash("hunter2"))
    assert types(actions, pid(2)) == ["joined"]
    assert to(actions, pid(2))[0]["rules"]["password"] is True


def test_password_hash_is_salted_and_never_printed() -> None:
    a, b = hash_password("pw", b"a" * 16), hash_password("pw", b"b" * 16)
    assert a.digest != b.digest and not a.matches(b)
    assert "pw" not in repr(a) and a.digest.hex() not in repr(a)


def test_host_may_lower_but_not_raise_the_size() -> None:
    core = make_core(max_peers=8)
    join(core, pid(1))
    with pytest.raises(errors.BadField):
        core.handle(pid(1), m.SetRules(max_peers=9), NOW)
    core.handle(pid(1), m.SetRules(max_peers=2), NOW)
    join(core, pid(2))
    with pytest.raises(errors.RoomFull):
        join(core, pid(3))


def test_lobby_knock_admit_and_decline() -> None:
    core = make_core()
    join(core, pid(1))
    core.handle(pid(1), m.SetRules(lobby=True), NOW)
    actions = join(core, pid(2), name="Knocker")
    assert types(actions, pid(2)) == ["lobby"]
    assert to(actions, pid(1)) == [{"type": "knock", "peer": {"id": pid(2), "name": "Knocker"}}]
    actions = core.handle(pid(1), m.Admit(peer=pid(2)), NOW)
    assert types(actions, pid(2)) == ["joined"] and types(actions, pid(1)) == ["peer-joined"]
    join(core, pid(3))
    actions = core.handle(pid(1), m.Decline(peer=pid(3)), NOW)
    assert to(actions, pid(3))[0]["code"] == "declined"
    assert core.clients[pid(3)].knocking is None


def test_knocker_going_away_is_withdrawn() -> None:
    core = make_core()
    join(core, pid(1))
    core.handle(pid(1), m.SetRules(lobby=True), NOW)
    join(core, pid(2))
    actions = core.disconnect(pid(2))
    assert to(actions, pid(1)) == [{"type": "knock-withdrawn", "peer": pid(2)}]


def test_a_new_host_hears_the_knocks_still_waiting() -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2))
    core.handle(pid(1), m.SetRules(lobby=True), NOW)
    join(core, pid(3))
    actions = core.handle(pid(1), m.Leave(), NOW)
    assert "knock" in types(actions, pid(2))


def test_remove_takes_a_member_out_and_it_may_come_back() -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2))
    actions = core.handle(pid(1), m.Remove(peer=pid(2)), NOW)
    assert to(actions, pid(2)) == [{"type": "removed", "room": ROOM, "banned": False}]
    assert to(actions, pid(1)) == [{"type": "peer-left", "peer": pid(2), "reason": "removed"}]
    with pytest.raises(errors.NotJoined):
        core.route_signal(pid(2), pid(1))
    join(core, pid(2))


def test_ban_refuses_the_same_key_on_a_new_connection() -> None:
    core = make_core()
    key = "k" * 32
    join(core, pid(1))
    join(core, pid(2), key=key)
    actions = core.handle(pid(1), m.Ban(peer=pid(2)), NOW)
    assert to(actions, pid(2))[0]["banned"] is True
    core.disconnect(pid(2))
    with pytest.raises(errors.Banned):
        join(core, pid(3), key=key)
    with pytest.raises(errors.Banned):  # the banned connection itself, even with no key
        connect(core, pid(4))
        core.rooms[ROOM].banned_peers |= {pid(4)}
        join(core, pid(4))
    join(core, pid(5), key="another-key-entirely")


def test_bans_end_with_the_room() -> None:
    core = make_core()
    join(core, pid(1))
    join(core, pid(2), key="k" * 32)
    core.handle(pid(1), m.Ban(peer=pid(2)), NOW)
    core.handle(pid(1), m.Leave(), NOW)
    assert ROOM not in core.rooms
    join(core, pid(3), key="k" * 32)


def test_turning_the_lobby_off_lets_the_waiting_in() -> None:
    core = make_core()
    join(core, pid(1))
    core.handle(pid(1), m.SetRules(lobby=True), NOW)
    join(core, pid(2))
    actions = core.handle(pid(1), m.SetRules(lobby=False), NOW)
    assert "joined" in types(actions, pid(2))


# One admission rule for the three ways in: `join`, the host's `admit`, the host turning the lobby off.

def test_a_full_room_refuses_by_every_way_in() -> None:
    core = make_core()
    join(core, pid(1))
    core.handle(pid(1), m.SetRules(max_peers=2, lobby=True), NOW)
    join(core, pid(2))
    join(core, pid(3))
    core.handle(pid(1), m.Admit(peer=pid(2)), NOW)
    connect(core, pid(4))
    before = snapshot(core)
    with pytest.raises(errors.RoomFull) as admit_refused:
        core.handle(pid(1), m.Admit(peer=pid(3)), NOW)
    assert admit_refused.value.ref == "admit"
    with pytest.raises(errors.RoomFull) as join_refused:
        join(core, pid(4))
    assert join_refused.value.ref == "join" and snapshot(core) == before
    actions = core.handle(pid(1), m.SetRules(lobby=False), NOW)
    [declined] = to(actions, pid(3))
    assert declined["code"] == "declined" and "full" in declined["message"]
    assert list(core.rooms[ROOM].members) == [pid(1), pid(2)] and not core.rooms[ROOM].lobby


def test_a_ban_holds_by_every_way_in() -> None:
    """The banned browser's other tab, already knocking, is not let in by `admit` nor lobby-off."""
    core = make_core()
    join(core, pid(1))
    join(core, pid(2), key="k" * 32)
    core.handle(pid(1), m.SetRules(lobby=True), NOW)
    join(core, pid(3), key="k" * 32)  # the same browser knocks from a second tab
    core.handle(pid(1), m.Ban(peer=pid(2)), NOW)
    connect(core, pid(4))
    before = snapshot(core)
    with pytest.raises(errors.Banned) as admit_refused:
        core.handle(pid(1), m.Admit(peer=pid(3)), NOW)
    with pytest.raises(errors.Banned):
        join(core, pid(4), key="k" * 32)
    assert admit_refused.value.ref == "admit" and snapshot(core) == before
    actions = core.handle(pid(1), m.SetRules(lobby=False), NOW)
    assert to(actions, pid(3))[-1]["code"] == "declined" and pid(3) not in core.rooms[ROOM].members


def test_the_host_lets_knockers_into_a_locked_room_but_nobody_joins_it() -> None:
    """Lock and password guard `join`; a knocker passed them when it knocked, and the host's
    `admit` (or turning the lobby off) is the host's own choice."""
    core = make_core()
    join(core, pid(1))
    core.handle(pid(1), m.SetRules(lobby=True), NOW)
    join(core, pid(2))
    join(core, pid(3))
    core.handle(pid(1), m.SetRules(locked=True), NOW)
    with pytest.raises(errors.RoomLocked):
        join(core, pid(4))
    assert types(core.handle(pid(1), m.Admit(peer=pid(2)), NOW), pid(2)) == ["joined"]
    assert types(core.handle(pid(1), m.SetRules(lobby=False), NOW), pid(3)) == ["joined"]


# ---------------------------------------------------------------------------------------------- TURN

SECRET = b"coturn-shared-secret"


def test_turn_credentials_follow_the_rest_convention() -> None:
    username, credential = turn_credentials(SECRET, pid(1), 1_800_003_600)
    assert username == f"1800003600:{pid(1)}"
    # base64(HMAC-SHA1(secret, username)) computed independently:
    import base64
    import hashlib
    import hmac
    expected = base64.b64encode(hmac.new(SECRET, username.encode(), hashlib.sha1).digest()).decode()
    assert credential == expected


def test_joined_carries_ice_servers_with_expiring_credentials() -> None:
    ice = IceSettings(stun_urls=("stun:t.example:3478",), turn_urls=("turn:t.example:3478?transport=udp",),
                      turn_secret=SECRET, ttl_seconds=600)
    core = make_core(ice=ice)
    [joined] = to(join(core, pid(1)), pid(1))
    stun, turn = joined["ice_servers"]
    assert stun == {"urls": ["stun:t.example:3478"]}
    assert turn["username"] == f"{int(NOW.unix) + 600}:{pid(1)}"
    assert joined["ice_expires_at"] == int(NOW.unix) + 600
    actions = core.handle(pid(1), m.IceRefresh(), later(500))
    [fresh] = to(actions, pid(1))
    assert fresh["type"] == "ice-servers" and fresh["ice_expires_at"] == int(NOW.unix) + 1100


def test_ice_refresh_without_servers_is_refused() -> None:
    core = make_core()
    join(core, pid(1))
    with pytest.raises(errors.TurnUnavailable):
        core.handle(pid(1), m.IceRefresh(), NOW)


def test_turn_without_a_secret_is_a_configuration_error() -> None:
    with pytest.raises(ValueError):
        IceSettings(turn_urls=("turn:x",))


# ---------------------------------------------------------------------------------------------- matchmaking

def match(core: Signalling, peer: str, now: Now = NOW, **fields: Any) -> list[Action]:
    """Queue `peer` for a stranger. Consenting to a direct connection unless `direct=False` is
    given, so that the pairing rules can be tested on a core without a relay."""
    if peer not in core.clients or core.clients[peer].identity is None:
        identify(core, peer)
    fields.setdefault("direct", True)
    return core.handle(peer, m.MatchRequest(name=f"s-{peer[-2:]}", **fields), now)


WITH_RELAY = IceSettings(turn_urls=("turn:t",), turn_secret=SECRET)


def test_two_strangers_meet_in_a_private_room_of_two() -> None:
    core = make_core(ice=WITH_RELAY)
    assert types(match(core, pid(1), direct=False), pid(1)) == ["queued"]
    actions = match(core, pid(2), direct=False)
    first, second = to(actions, pid(1)), to(actions, pid(2))
    assert [x["type"] for x in first] == ["joined", "peer-joined"]
    assert [x["type"] for x in second] == ["queued", "joined"]
    joined = second[1]
    assert joined["match"] is True and joined["peers"][0]["id"] == pid(1)
    assert joined["ice_transport_policy"] == "relay"  # strangers: relay by default when TURN exists
    with pytest.raises(errors.RoomLocked):  # private: nobody else gets in
        join(core, pid(3), room=joined["room"])


def test_a_text_only_stranger_is_marked_for_its_partner_and_meets_only_who_accepts_text() -> None:
    """`text_only` travels on the ticket: a voice user who did not accept text is never paired
    with a text-only one; one who did is, and each side learns who is text-only from
    `joined`/`peer-joined` (docs/protocol.md, "Text only"). Room entries do not carry the field."""
    core = make_core()
    assert types(match(core, pid(1), text_only=True), pid(1)) == ["queued"]
    assert types(match(core, pid(2)), pid(2)) == ["queued"]  # voice, did not accept text
    actions = match(core, pid(3), accept_text=True)
    first, third = to(actions, pid(1)), to(actions, pid(3))
    assert [x["type"] for x in third] == ["queued", "joined"]
    assert third[1]["peers"] == [
        {"id": pid(1), "name": f"s-{pid(1)[-2:]}", "polite": False, "text_only": True}]
    assert first[1]["peer"] == {"id": pid(3), "name": f"s-{pid(3)[-2:]}", "polite": True}
    assert pid(2) in core.queue and len(core.queue) == 1
    # The resumed snapshot of the room says it too.
    state = core._room_state(core.clients[pid(3)])
    assert state is not None and state.peers[0].text_only is True
    # A room is never text-only, whatever its members asked strangers for before.
    join(core, pid(4), room=ROOM)
    assert "text_only" not in to(join(core, pid(5), room=ROOM), pid(5))[0]["peers"][0]


def test_next_never_pairs_the_same_two_again() -> None:
    core = make_core()
    match(core, pid(1))
    match(core, pid(2))
    actions = core.handle(pid(1), m.Next(), NOW)
    assert types(actions, pid(1)) == ["left", "queued"]
    assert to(actions, pid(2)) == [{"type": "peer-left", "peer": pid(1), "reason": "left"}]
    actions = core.handle(pid(2), m.Next(), NOW)  # 2 re-queues: 1 is waiting but skipped it
    assert types(actions, pid(2)) == ["left", "queued"]
    actions = match(core, pid(3))
    assert "joined" in types(actions, pid(3))
    assert to(actions, pid(3))[-1]["peers"][0]["id"] == pid(1)  # the earliest waiting


def test_stop_leaves_the_queue() -> None:
    core = make_core()
    match(core, pid(1))
    actions = core.handle(pid(1), m.Stop(), NOW)
    assert types(actions, pid(1)) == ["unqueued"]
    assert len(core.queue) == 0
    with pytest.raises(errors.NotQueued):
        core.handle(pid(1), m.Stop(), NOW)


def test_nothing_of_a_match_is_kept_after_it_ends() -> None:
    core = make_core()
    match(core, pid(1))
    match(core, pid(2))
    core.disconnect(pid(1))
    core.disconnect(pid(2))
    assert core.rooms == {} and core.clients == {} and len(core.queue) == 0


def test_match_while_in_a_room_is_refused() -> None:
    core = make_core()
    join(core, pid(1))
    with pytest.raises(errors.AlreadyJoined):
        match(core, pid(1))


def test_tagged_strangers_relax_after_the_wait() -> None:
    core = make_core(match_relax_seconds=10)
    match(core, pid(1), tags=["chess"])
    actions = match(core, pid(2), now=later(1), tags=["jazz"])
    assert "joined" not in types(actions, pid(2))
    actions = core.tick(later(11))
    assert "joined" in types(actions, pid(1)) and "joined" in types(actions, pid(2))


def test_the_avoid_list_is_capped() -> None:
    core = make_core()
    connect(core, pid(1))
    for n in range(300):
        core.handle(pid(1), m.Block(peer=pid(1000 + n)), NOW)
    avoid = core.clients[pid(1)].avoid
    assert len(avoid) == 256 and avoid[-1] == pid(1299) and pid(1000) not in avoid


def test_a_monotonic_time_that_goes_back_neither_raises_nor_strands_the_user() -> None:
    """A monotonic time earlier than one already seen (a shell bug) must not raise after state
    changed.

    Once this raised a ValueError from the queue after `match` had already marked the user as
    queued: the user was in no queue, yet every later `match` said `already-joined`.
    """
    core = make_core()
    match(core, pid(1), tags=["chess"])
    match(core, pid(3), now=later(2), tags=["jazz"])
    actions = match(core, pid(2), now=later(1), tags=["chess"])  # 1 s before the last arrival
    assert types(actions, pid(2)) == ["queued", "joined"]
    assert to(actions, pid(2))[-1]["peers"][0]["id"] == pid(1)
    assert len(core.queue) == 1 and core.next_deadline() == NOW.monotonic + 12


def test_a_wall_clock_step_back_reaches_only_the_turn_expiry() -> None:
    """Issue: an NTP correction stepped the wall clock back 1 s between two `match` messages.

    The queue runs on the monotonic clock, which went on: the second user is queued and matched
    normally. The TURN credentials, checked by coturn against its wall clock, follow the wall
    clock: stamped 1 s earlier than before the step.
    """
    core = make_core(ice=IceSettings(turn_urls=("turn:t",), turn_secret=SECRET, ttl_seconds=600))
    assert types(match(core, pid(1)), pid(1)) == ["queued"]
    stepped = later(0.5, wall_step=-1.0)  # monotonic +0.5 s, wall clock -0.5 s
    actions = match(core, pid(2), now=stepped)
    assert types(actions, pid(2)) == ["queued", "joined"] and types(actions, pid(1))[0] == "joined"
    for peer in (pid(1), pid(2)):
        joined = next(x for x in to(actions, peer) if x["type"] == "joined")
        assert joined["ice_expires_at"] == int(stepped.unix) + 600
        assert joined["ice_servers"][0]["username"] == f"{int(stepped.unix) + 600}:{peer}"
    assert core.clients[pid(2)].room is not None and len(core.queue) == 0


def test_relaxation_deadlines_follow_the_monotonic_clock_only() -> None:
    """A wall-clock jump (forward an hour, here) neither relaxes preferences nor delays them."""
    core = make_core(match_relax_seconds=10)
    match(core, pid(1), tags=["chess"])
    match(core, pid(2), now=later(1, wall_step=3600), tags=["jazz"])
    assert core.next_deadline() == NOW.monotonic + 10
    assert core.tick(later(10.9, wall_step=3600)) == []  # 2 relaxes 10 s after it came, at 11
    actions = core.tick(later(11, wall_step=-3600))
    assert "joined" in types(actions, pid(1)) and "joined" in types(actions, pid(2))


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_times_must_be_finite(bad: float) -> None:
    """A NaN or infinite reading is refused when the shell builds it, before the core sees it."""
    with pytest.raises(ValueError):
        Now(monotonic=bad, unix=NOW.unix)
    with pytest.raises(ValueError):
        Now(monotonic=NOW.monotonic, unix=bad)


# ---------------------------------------------------------------------------------------------- consent

def test_hello_says_whether_the_server_has_a_relay() -> None:
    for ice, relay in ((IceSettings(), False), (IceSettings(stun_urls=("stun:s",)), False),
                       (WITH_RELAY, True)):
        core = make_core(ice=ice)
        assert to(connect(core, pid(1)), pid(1))[0]["relay"] is relay


def test_without_a_relay_a_stranger_who_did_not_consent_is_refused_and_not_queued() -> None:
    """No relay means the only path is direct, which shows each their IP: never without consent."""
    core = make_core(ice=IceSettings(stun_urls=("stun:s",)))  # STUN finds addresses, relays nothing
    connect(core, pid(1))
    before = snapshot(core)
    with pytest.raises(errors.TurnUnavailable):
        match(core, pid(1), direct=False)
    assert snapshot(core) == before and len(core.queue) == 0


def test_without_a_relay_no_pair_is_formed_without_both_consenting() -> None:
    core = make_core()
    match(core, pid(1))  # consents
    before = snapshot(core)
    with pytest.raises(errors.TurnUnavailable) as refused:
        match(core, pid(2), direct=False)
    assert refused.value.ref == "match" and "direct" in str(refused.value)
    assert snapshot(core)[0] == before[0] and len(core.queue) == 1  # nothing queued, nobody paired
    assert core.clients[pid(2)].queued is None


def test_without_a_relay_two_consenting_strangers_are_paired_direct() -> None:
    core = make_core()
    match(core, pid(1), direct=True)
    actions = match(core, pid(2), direct=True)
    for peer in (pid(1), pid(2)):
        joined = next(x for x in to(actions, peer) if x["type"] == "joined")
        assert joined["ice_transport_policy"] == "all"


def test_a_refused_match_from_a_match_room_keeps_the_call() -> None:
    core = make_core()
    match(core, pid(1))
    match(core, pid(2))
    before = snapshot(core)
    with pytest.raises(errors.TurnUnavailable):
        match(core, pid(2), direct=False)
    assert snapshot(core) == before


@pytest.mark.parametrize(("first", "second", "policy"), [
    (False, False, "relay"), (True, False, "relay"), (False, True, "relay"), (True, True, "all"),
])
def test_with_a_relay_a_pair_goes_direct_only_if_both_consented(
        first: bool, second: bool, policy: str) -> None:
    core = make_core(ice=WITH_RELAY)
    match(core, pid(1), direct=first)
    actions = match(core, pid(2), direct=second)
    for peer in (pid(1), pid(2)):
        joined = next(x for x in to(actions, peer) if x["type"] == "joined")
        assert joined["ice_transport_policy"] == policy


def test_with_a_relay_next_keeps_each_ones_consent() -> None:
    """A re-queue after `next` pairs with the consent given in `match`, not a default."""
    core = make_core(ice=WITH_RELAY)
    match(core, pid(1), direct=True)
    match(core, pid(2), direct=False)
    core.handle(pid(2), m.Next(), NOW)  # 2 waits again; 1 is alone in the room
    core.handle(pid(1), m.Next(), NOW)  # 1 re-queues; it skipped 2, so waits
    actions = match(core, pid(3), direct=True)  # meets 2, the earliest waiting, who did not consent
    joined = next(x for x in to(actions, pid(3)) if x["type"] == "joined")
    assert joined["peers"][0]["id"] == pid(2) and joined["ice_transport_policy"] == "relay"
    actions = match(core, pid(4), direct=True)  # meets 1, who consented
    joined = next(x for x in to(actions, pid(4)) if x["type"] == "joined")
    assert joined["peers"][0]["id"] == pid(1) and joined["ice_transport_policy"] == "all"


# ---------------------------------------------------------------------------------------------- safety

def _matched_pair(core: Signalling) -> None:
    match(core, pid(1))
    match(core, pid(2))


def test_rate_and_report_name_only_the_current_or_last_stranger_once() -> None:
    from xes.core.actions import SaveRating, SaveReport

    core = make_core()
    _matched_pair(core)
    with pytest.raises(errors.PeerNotFound):
        core.handle(pid(1), m.Rate(peer=pid(3), good=False), NOW)
    actions = core.handle(pid(1), m.Rate(peer=pid(2), good=False), NOW)
    [rating] = [a for a in actions if isinstance(a, SaveRating)]
    assert (rating.rating.rater, rating.rating.target, rating.rating.good) == (f"id-{pid(1)}", f"id-{pid(2)}",
                                                                                False)
    assert rating.rating.fresh and rating.rating.weight == 0.5 * 0.2
    with pytest.raises(errors.BadField):
        core.handle(pid(1), m.Rate(peer=pid(2), good=True), NOW)
    core.handle(pid(2), m.Stop(), later(42))  # the call ends after 42 s
    actions = core.handle(pid(1), m.Report(peer=pid(2), reason="under-18", text=" 13 "), later(100))
    [report] = [a for a in actions if isinstance(a, SaveReport)]
    assert (report.reason, report.text, report.call_seconds) == ("under-18", "13", 42.0)
    assert types(actions, pid(1)) == ["noted"]


def test_a_block_of_a_stranger_is_stored_and_keeps_the_identities_apart() -> None:
    from xes.core.actions import SaveBlock

    core = make_core()
    _matched_pair(core)
    actions = core.handle(pid(1), m.Block(peer=pid(2)), NOW)
    assert [a for a in actions if isinstance(a, SaveBlock)] == [SaveBlock(f"id-{pid(1)}", f"id-{pid(2)}",
                                                                          NOW.unix)]
    core.handle(pid(2), m.Stop(), NOW)
    core.disconnect(pid(2))
    # The same identity on a new connection, with the block loaded as the shell would:
    identify(core, pid(3), f"id-{pid(2)}", blocks=frozenset({f"id-{pid(1)}"}))
    assert "joined" not in types(match(core, pid(3)), pid(3))


def test_bans_and_cooldowns_refuse_match_with_the_time_left() -> None:
    import dataclasses

    from xes.core import safety

    core = make_core()
    identify(core, pid(1), "banned", standing=safety.Standing("banned", 0.0, banned=True))
    with pytest.raises(errors.IdentityBanned):
        match(core, pid(1))
    cooling = safety.Standing("cool", 0.0, cooldown_until=NOW.unix + 3480.5)
    identify(core, pid(2), "cool", standing=cooling)
    with pytest.raises(errors.Cooldown) as refused:
        match(core, pid(2))
    assert refused.value.retry_after == 3481 and "59 min" in refused.value.message  # rounded up
    core.standing_changed(dataclasses.replace(cooling, cooldown_until=None))
    assert types(match(core, pid(2)), pid(2)) == ["queued"]
    connect(core, pid(4))
    with pytest.raises(errors.IdentityRequired):
        core.handle(pid(4), m.MatchRequest(name="x", direct=True), NOW)


def test_in_cluster_mode_a_decided_match_starts_only_once_committed() -> None:
    """The queue's leader commits each match in Redis before the pair meets (docs/architecture.md,
    "Stranger queue across nodes"): until then nothing is sent and nobody is in a room."""
    core = make_core()
    core.defer_matches = True
    match(core, pid(1))
    actions = match(core, pid(2))
    assert types(actions, pid(2)) == ["queued"] and to(actions, pid(1)) == []
    assert core.decided == [Match(pid(1), pid(2))] and core.rooms == {}
    decided, core.decided = core.decided, []
    actions = core.start_decided(decided[0], NOW)
    assert types(actions, pid(1)) == ["joined", "peer-joined"]
    assert types(actions, pid(2)) == ["joined"]


def test_in_cluster_mode_a_side_that_left_before_the_commit_leaves_the_other_waiting() -> None:
    core = make_core()
    core.defer_matches = True
    match(core, pid(1))
    match(core, pid(2))
    core.disconnect(pid(1))  # hung up while the match was being committed
    assert core.start_decided(core.decided.pop(), NOW) == []
    assert pid(2) in core.queue and core.rooms == {}
    match(core, pid(3))  # 2 is served again: a newcomer meets it, once committed
    assert core.decided == [Match(pid(2), pid(3))]


def test_in_cluster_mode_a_match_whose_commit_failed_queues_both_again() -> None:
    core = make_core()
    core.defer_matches = True
    match(core, pid(1))
    match(core, pid(2))
    assert core.requeue_decided(core.decided.pop(), NOW) == []
    # Both wait again, in the order they come back: they meet once more (to be committed).
    assert core.decided == [Match(pid(1), pid(2))] and core.rooms == {}
