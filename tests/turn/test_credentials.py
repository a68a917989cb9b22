"""TURN credentials from `xes serve` work on a real coturn, expire, refresh, and stay secret.

The XES server and coturn never talk to each other: they only share a secret. These tests
prove the two sides agree (a credential the server hands out in `joined` and `ice-servers`
opens a coturn allocation), that the expiry is the configured TTL, and that the secret shows
neither on the command line (`ps`) nor in the server's log.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets

from tests.conftest import XesServerProcess

from .coturn import Coturn
from .turnclient import allocation

ROOM = "VHVyblRlc3RSb29tSWQxMg"  # 22 base64url characters


async def join_room(ws_url: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Open a signalling connection and join ROOM; returns (socket, hello, joined)."""
    ws = await websockets.connect(ws_url)
    hello = json.loads(await ws.recv())
    await ws.send(json.dumps({"type": "join", "room": ROOM, "name": "Ada"}))
    joined = json.loads(await ws.recv())
    assert joined["type"] == "joined", joined
    return ws, hello, joined


def turn_entry(ice_servers: list[dict[str, Any]]) -> dict[str, Any]:
    """The one entry with TURN URLs and credentials."""
    entries = [s for s in ice_servers if any(u.startswith("turn") for u in s["urls"])]
    assert len(entries) == 1, ice_servers
    return entries[0]


async def test_issued_credentials_open_coturn_expire_on_time_and_refresh(
    coturn: Coturn, start_xes_server: Callable[..., XesServerProcess], tmp_path: Path
) -> None:
    """`joined.ice_servers` carries `<expiry>:<peer id>` credentials coturn accepts, expiring
    after --turn-ttl; `ice-refresh` answers with fresh ones that coturn accepts too."""
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(coturn.secret + "\n")  # as `base64 > file` writes it: a newline
    server = start_xes_server(args=[
        "--turn-url", coturn.url("udp"), "--stun-url", f"stun:127.0.0.1:{coturn.port}",
        "--turn-secret-file", str(secret_file), "--turn-ttl", "120"])
    before = int(time.time())
    ws, hello, joined = await join_room(server.ws_url)
    try:
        turn = turn_entry(joined["ice_servers"])
        assert turn["urls"] == [coturn.url("udp")]
        expiry, peer = turn["username"].split(":", 1)
        assert peer == hello["peer"] == joined["you"]
        assert int(expiry) == joined["ice_expires_at"]
        assert before + 120 <= int(expiry) <= int(time.time()) + 120
        async with allocation(("127.0.0.1", coturn.port), turn["username"],
                              turn["credential"]) as relay:
            assert relay.relayed_address is not None

        await asyncio.sleep(1.1)  # so a refreshed expiry is visibly later
        await ws.send(json.dumps({"type": "ice-refresh"}))
        fresh = json.loads(await ws.recv())
        assert fresh["type"] == "ice-servers", fresh
        fresh_turn = turn_entry(fresh["ice_servers"])
        assert fresh["ice_expires_at"] > joined["ice_expires_at"]
        assert fresh_turn["username"] != turn["username"]
        async with allocation(("127.0.0.1", coturn.port), fresh_turn["username"],
                              fresh_turn["credential"]) as relay:
            assert relay.relayed_address is not None
    finally:
        await ws.close()


async def test_secret_stays_off_the_command_line_and_out_of_the_log(
    coturn: Coturn, start_xes_server: Callable[..., XesServerProcess], tmp_path: Path
) -> None:
    """Given by environment or by file, the secret is not in /proc/<pid>/cmdline (what `ps`
    shows), and neither it nor any issued credential appears in the server's output."""
    secret_file = tmp_path / "turn-secret"
    secret_file.write_text(coturn.secret)
    by_env = start_xes_server(args=["--turn-url", coturn.url("udp")],
                              env={"XES_TURN_SECRET": coturn.secret})
    by_file = start_xes_server(args=["--turn-url", coturn.url("udp"),
                                     "--turn-secret-file", str(secret_file)])
    for server in (by_env, by_file):
        ws, _hello, joined = await join_room(server.ws_url)
        credential = turn_entry(joined["ice_servers"])["credential"]
        async with allocation(("127.0.0.1", coturn.port), turn_entry(joined["ice_servers"])[
                "username"], credential):
            pass
        await ws.close()
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert coturn.secret.encode() not in cmdline
        await asyncio.sleep(0.2)  # let the log reader catch up with anything just written
        assert coturn.secret not in server.log
        assert credential not in server.log
