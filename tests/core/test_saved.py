"""Saving protected rooms and restoring them after a crash: pure core, no files, no clock."""

from __future__ import annotations

import itertools
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
    room_ids,
    to,
    types,
)
from xes import errors
from xes.core.access import hash_password
from xes.core.saved import SavedRoom, decode_saved, digest_secret, encode_saved
from xes.core.signalling import CoreSettings, Signalling
from xes.protocol import messages as m

# An identity as the shell proves it: already the keyed hash of a public key (the key never
# reaches the core), so the saved record may hold it.
BANNED_IDENTITY = "k" * 64
PASSWORD = hash_password("pw", b"s" * 16)


def protected_room(core: Signalling) -> str:
    """pid(1) hosts ROOM with every protection; pid(2) was banned. Returns the host's key."""
    [joined] = to(join(core, pid(1), key="h" * 20), pid(1))
    join(core, pid(2), key=BANNED_IDENTITY)
    core.handle(pid(1), m.Ban(peer=pid(2)), NOW)
    core.handle(pid(1), m.SetRules(locked=True, lobby=True, password="pw", max_peers=3), NOW,
                password=PASSWORD)
    key: str = joined["host_key"]
    return key


def restored(core: Signalling, restore_seconds: float = 120.0) -> Signalling:
    """A fresh core (a new process) that restored what ``core`` saved, through the file format."""
    # A new process draws new keys: unlike make_core's, they never repeat the old process's.
    fresh = Signalling(CoreSettings(restore_seconds=restore_seconds), room_ids(),
                       host_keys=(f"N{n:021d}" for n in itertools.count()))
    fresh.restore(decode_saved(encode_saved(core.saved_rooms())), NOW)
    return fresh


def refused(core: Signalling, peer: str, **fields: Any) -> str:
    """The code ``core`` refuses ``peer``'s join with (nothing changed: Signalling's rule 1)."""
    with pytest.raises(errors.Refused) as refusal:
        join(core, peer, **fields)
    return refusal.value.code


def test_the_saved_record_round_trips_and_holds_no_secret_in_the_clear() -> None:
    core = make_core()
    host_key = protected_room(core)
    [record] = core.saved_rooms()
    assert record == SavedRoom(id=ROOM, max_peers=3, locked=True, lobby=True,
                               password_salt=PASSWORD.salt, password_digest=PASSWORD.digest,
                               banned_identities=[BANNED_IDENTITY],
                               host_key_digest=digest_secret(host_key))
    data = encode_saved([record])
    assert decode_saved(data) == [record]
    for secret in (host_key, "h" * 20, pid(1), pid(2), "name-01"):
        assert secret.encode() not in data
    again = restored(core)
    assert again.saved_rooms() == [record]
    assert again.rooms[ROOM].rules() == m.Rules(locked=True, lobby=True, password=True, max_peers=3)


def test_open_rooms_and_matches_are_not_saved_and_plain_joins_cause_no_save() -> None:
    core = make_core()
    before = core.saved_version
    join(core, pid(1))
    join(core, pid(2))
    assert core.saved_rooms() == [] and core.saved_version == before
    core.handle(pid(1), m.SetRules(max_peers=4), NOW)
    assert core.saved_version > before and [r.id for r in core.saved_rooms()] == [ROOM]
    core.handle(pid(1), m.SetRules(max_peers=8), NOW)
    assert core.saved_rooms() == []  # nothing protects it any more: its record goes


@pytest.mark.parametrize("fields, code", [
    ({}, "room-locked"),
    ({"host_key": "x" * 22}, "room-locked"),  # a wrong key is just a joiner
])
def test_a_restored_room_refuses_newcomers_as_before(fields: dict[str, Any], code: str) -> None:
    core = restored(make_core_with_protected_room())
    assert refused(core, pid(7), **fields) == code
    assert core.rooms[ROOM].host is None


def make_core_with_protected_room() -> Signalling:
    core = make_core()
    protected_room(core)
    return core


def test_password_and_ban_hold_after_a_restore() -> None:
    old = make_core()
    join(old, pid(1))
    join(old, pid(2), key=BANNED_IDENTITY)
    old.handle(pid(1), m.Ban(peer=pid(2)), NOW)
    old.handle(pid(1), m.SetRules(password="pw"), NOW, password=PASSWORD)
    core = restored(old)
    assert refused(core, pid(7)) == "password-required"
    assert refused(core, pid(8), key=BANNED_IDENTITY, password="pw") == "banned"
    assert refused(core, pid(9), password="pw", key="o" * 20) == "wrong-password"
    # the right password (as the shell hashes it with the room's salt) lets a member in, not as host
    [joined] = to(core.handle(pid(9), m.Join(room=ROOM, name="nine", password="pw"), NOW,
                              password=PASSWORD), pid(9))
    assert joined["type"] == "joined" and joined["host"] is None and "host_key" not in joined


def test_the_host_gets_its_room_back_with_its_key_and_nobody_else_is_promoted() -> None:
    old = make_core()
    [first] = to(join(old, pid(1)), pid(1))
    old.handle(pid(1), m.SetRules(password="pw"), NOW, password=PASSWORD)
    core = restored(old)
    core.connect(pid(2), TOKEN, CHALLENGE)
    core.handle(pid(2), m.Join(room=ROOM, name="two", password="pw"), NOW, password=PASSWORD)
    assert core.rooms[ROOM].host is None
    actions = join(core, pid(11), host_key=first["host_key"])  # no password needed: it set it
    [joined] = to(actions, pid(11))
    assert joined["host"] == pid(11) and joined["host_key"] not in (None, first["host_key"])
    assert types(actions, pid(2)) == ["peer-joined", "host"]
    assert to(actions, pid(2))[1] == {"type": "host", "peer": pid(11)}  # the key only to the host
    assert core.next_deadline() is None  # back to an ordinary room
    # the old key is spent: a second copy of the page cannot take the role again
    core.handle(pid(11), m.Leave(), NOW)
    assert core.rooms[ROOM].host == pid(2)
    assert refused(core, pid(12), host_key=first["host_key"]) == "password-required"


def test_the_host_is_promoted_as_before_when_its_seat_is_full() -> None:
    old = make_core()
    [first] = to(join(old, pid(1)), pid(1))
    old.handle(pid(1), m.SetRules(max_peers=2), NOW)
    core = restored(old)
    join(core, pid(2))
    assert refused(core, pid(3)) == "room-full"  # the host's seat is kept
    assert to(join(core, pid(4), host_key=first["host_key"]), pid(4))[0]["host"] == pid(4)


def test_knocks_wait_for_the_returning_host() -> None:
    old = make_core()
    [first] = to(join(old, pid(1)), pid(1))
    old.handle(pid(1), m.SetRules(lobby=True), NOW)
    core = restored(old)
    assert types(join(core, pid(2)), pid(2)) == ["lobby"]
    core.handle(pid(2), m.Leave(), NOW)  # the last knocker leaving does not drop the room
    assert ROOM in core.rooms
    join(core, pid(3))
    actions = join(core, pid(4), host_key=first["host_key"])
    assert types(actions, pid(4)) == ["joined", "knock"]
    assert to(actions, pid(4))[1]["peer"]["id"] == pid(3)


def test_a_restored_room_nobody_returns_to_is_forgotten_at_its_deadline() -> None:
    old = make_core_with_protected_room()
    core = restored(old, restore_seconds=60)
    assert core.next_deadline() == NOW.monotonic + 60
    assert core.tick(later(59)) == [] and ROOM in core.rooms
    version = core.saved_version
    core.tick(later(60))
    assert ROOM not in core.rooms and core.saved_rooms() == [] and core.saved_version > version
    assert core.next_deadline() is None


def test_a_room_emptied_during_its_wait_is_kept_until_the_deadline() -> None:
    old = make_core()
    join(old, pid(1))
    old.handle(pid(1), m.SetRules(max_peers=5), NOW)
    core = restored(old, restore_seconds=60)
    join(core, pid(2))
    core.handle(pid(2), m.Leave(), NOW)
    assert core.rooms[ROOM].max_peers == 5  # not reopened by the next one to come
    core.tick(later(60))
    assert ROOM not in core.rooms


def test_without_its_host_the_role_passes_on_at_the_deadline() -> None:
    old = make_core()
    join(old, pid(1))
    old.handle(pid(1), m.SetRules(max_peers=5), NOW)
    core = restored(old, restore_seconds=60)
    join(core, pid(2))
    join(core, pid(3))
    actions = core.tick(later(60))
    assert core.rooms[ROOM].host == pid(2)
    [to_new_host] = to(actions, pid(2))
    assert to_new_host["type"] == "host" and to_new_host["peer"] == pid(2) and to_new_host["host_key"]
    assert to(actions, pid(3)) == [{"type": "host", "peer": pid(2)}]
    # the new host's key is what is saved now
    [record] = core.saved_rooms()
    assert record.host_key_digest == digest_secret(to_new_host["host_key"])


def test_a_host_key_counts_only_in_a_restored_room() -> None:
    core = make_core()
    [first] = to(join(core, pid(1)), pid(1))
    core.handle(pid(1), m.SetRules(locked=True), NOW)
    # the room is live, not restored: the key is no pass
    assert refused(core, pid(2), host_key=first["host_key"]) == "room-locked"
    assert core.rooms[ROOM].host == pid(1) and pid(2) not in core.rooms[ROOM].members


def test_a_match_room_has_no_host_key() -> None:
    core = make_core()
    for n in (1, 2):
        core.connect(pid(n), TOKEN, CHALLENGE)
        identify(core, pid(n))
        actions = core.handle(pid(n), m.MatchRequest(name=f"n{n}", direct=True), NOW)
    assert all("host_key" not in msg for n in (1, 2) for msg in to(actions, pid(n)))
    assert core.saved_rooms() == []
