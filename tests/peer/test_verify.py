"""Safety codes between Python peers (docs/verification.md): the same room code on both, the same
link code at both ends, announced by an event, and a data channel that carries them peer to peer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.peer.test_mesh import new_room_id
from xes.peer import Peer, SafetyCodeChanged, open_file_source
from xes.peer.connection import parse_data


async def wait_for_code(peer: Peer, timeout: float = 20.0) -> tuple[str, ...]:
    async with asyncio.timeout(timeout):
        async for event in peer.events():
            if isinstance(event, SafetyCodeChanged) and event.words is not None:
                return event.words
    raise AssertionError("the events ended without a safety code")


async def test_two_python_peers_show_one_room_code_and_one_link_code(
    xes_server: Any, tones: Callable[[float], Path]
) -> None:
    room = new_room_id()
    async with (
        Peer(xes_server.http_url, name="Ada", audio=open_file_source(tones(440), loop=True)) as ada,
        Peer(xes_server.http_url, name="Bob", audio=open_file_source(tones(660), loop=True)) as bob,
    ):
        await ada.join(room)
        await bob.join(room)
        ada_code, bob_code = await asyncio.gather(wait_for_code(ada), wait_for_code(bob))
        assert ada_code == bob_code == ada.safety_code == bob.safety_code
        assert len(ada_code) == 3
        [bob_seen_by_ada] = ada.members.values()
        [ada_seen_by_bob] = bob.members.values()
        assert ada.link_code(bob_seen_by_ada) == bob.link_code(ada_seen_by_bob) is not None
        assert ada.link_code(bob_seen_by_ada) != ada_code  # two different digests


def test_data_channel_messages_are_checked() -> None:
    """Only JSON objects with a lower-case type, within the size cap, get through."""
    assert parse_data('{"type": "commit", "commitment": "00"}') == {
        "type": "commit", "commitment": "00"}
    for raw in (b'{"type": "commit"}', "[1]", "{", '{"type": 5}', '{"type": "Commit"}',
                '{"x": 1}', '{"type": "chat", "text": "' + "a" * 20_000 + '"}'):
        assert parse_data(raw) is None, raw[:40]
