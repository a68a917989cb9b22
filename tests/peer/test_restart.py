"""The Python peer as host across a server crash: it gets its room back with its host key."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tests.conftest import XesServerProcess
from tests.peer.test_mesh import new_room_id
from xes.peer import Peer

WAIT_S = 45.0  # the machine is shared: this waits, it does not measure


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S):
        while not condition():
            await asyncio.sleep(0.05)


async def test_the_peer_hosting_a_protected_room_is_host_again_after_a_crash(
        start_xes_server: Callable[..., XesServerProcess], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_xes_server(args=["--data-dir", str(data_dir)])
    room = new_room_id()
    async with Peer(server.http_url, name="Ada") as ada:
        await ada.join(room)
        first_id = ada.id
        assert ada.room is not None and ada.room.host == first_id
        ada.set_rules(password="open sesame")
        await until(lambda: ada.room is not None and ada.room.rules.password)

        server.process.kill()  # a crash: no snapshot, only the saved room
        await asyncio.to_thread(server.process.wait, 10)
        start_xes_server(args=["--port", str(server.port), "--data-dir", str(data_dir)])

        # Its session is gone, so it joins afresh, with the key it kept: host again, rules kept.
        await until(lambda: ada.room is not None and ada.id != first_id)
        assert ada.room is not None
        await until(lambda: ada.room is not None and ada.room.host == ada.id)
        assert ada.room.rules.password is True
