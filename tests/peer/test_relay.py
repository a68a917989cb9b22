"""A Python peer in relay mode: every packet through a real coturn, credentials from xes serve."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.peer.test_mesh import new_room_id, wait_connected
from tests.peer.tones import wait_for_tone
from tests.turn.coturn import Coturn
from xes.peer import Peer, Route, open_file_source


async def test_relay_mode_goes_through_turn_and_audio_flows(
    start_xes_server: Callable[..., Any], coturn: Coturn, tones: Callable[[float], Path],
    tmp_path: Path, capsys: Any,
) -> None:
    """With --relay the Python peer gathers only a TURN relay candidate (from the credentials
    the server handed out in `joined`), the selected pair is relay, and tones cross both ways."""
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(coturn.secret + "\n")
    server = start_xes_server(args=["--turn-url", coturn.url(),
                                    "--turn-secret-file", str(secret_file)])
    room = new_room_id()
    async with Peer(server.http_url, name="Ada", relay=True,
                    audio=open_file_source(tones(440), loop=True)) as ada:
        ada_room = await ada.join(room)
        assert ada_room.peers == []
        assert [s.urls for s in ada.ice_servers] in ([[coturn.url()]], [coturn.url()])
        async with Peer(server.http_url, name="Bob", relay=True,
                        audio=open_file_source(tones(660), loop=True)) as bob:
            joined_at = time.monotonic()
            ada_at_bob = (await bob.join(room)).peers[0]
            heard_at = await wait_for_tone(ada_at_bob.listen(), 440, timeout=30)
            await wait_connected(bob, 1, timeout=30)
            await wait_connected(ada, 1, timeout=30)
            bob_at_ada = next(iter(ada.members.values()))
            assert await wait_for_tone(bob_at_ada.listen(), 660, timeout=30) > 0
            for member in (ada_at_bob, bob_at_ada):
                assert member.route is Route.RELAYED
                assert member.candidate_types == ("relay", "relay")
                assert member.link is not None
                local_sdp = member.link.peer_connection.localDescription.sdp
                assert "typ relay" in local_sdp and "typ host" not in local_sdp
                # The relayed address is one of this coturn's relay ports.
                relay_lines = [line for line in local_sdp.splitlines() if "typ relay" in line]
                assert all(int(line.split()[5]) in coturn.relay_ports() for line in relay_lines)
            assert ada_at_bob.connected_at is not None
            with capsys.disabled():
                print(f"\n[python<->python via TURN] newcomer join->connected "
                      f"{(ada_at_bob.connected_at - joined_at) * 1000:.0f} ms, join->first tone "
                      f"{(heard_at - joined_at) * 1000:.0f} ms")
