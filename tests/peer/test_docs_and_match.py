"""docs/python.md's example runs as written, and `xes match` pairs the Python peer with a stranger."""

from __future__ import annotations

import asyncio
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.peer.test_cli import killed_on_exit, read_until
from tests.peer.test_mesh import new_room_id, wait_connected
from tests.peer.tones import read_wav, tone_share, wait_for_tone
from xes.peer import JoinRefused, Peer, PeerJoined, open_file_source

DOCS = Path(__file__).resolve().parents[2] / "docs" / "python.md"


def docs_example() -> str:
    """The first Python block of docs/python.md: the bot."""
    match = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert match, "docs/python.md lost its example"
    return match.group(1)


async def test_docs_example_bot_plays_records_and_leaves(
    xes_server: Any, tones: Callable[[float], Path], tmp_path: Path
) -> None:
    """The bot from the docs joins, plays its file to a member, records the member's tone to
    <peer id>.wav, and exits by itself once the member leaves."""
    script = tmp_path / "bot.py"
    script.write_text(docs_example())
    room = new_room_id()
    bot = await asyncio.create_subprocess_exec(
        sys.executable, str(script), f"{xes_server.http_url}/r/{room}", str(tones(440)),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with killed_on_exit(bot):
        async with Peer(xes_server.http_url, name="Ada",
                        audio=open_file_source(tones(660), loop=True)) as ada:
            # Ada joins once; the bot is either there already or arrives later. (Joining and
            # leaving until the bot is seen would race: the bot rightly exits when Ada leaves.)
            room_seen = await ada.join(room)
            if room_seen.peers:
                bot_member = room_seen.peers[0]
            else:
                async with asyncio.timeout(30):
                    async for event in ada.events():
                        if isinstance(event, PeerJoined):
                            bot_member = event.peer
                            break
            assert bot_member.name == "bot"
            assert await wait_for_tone(bot_member.listen(), 440) > 0
            await wait_connected(ada, 1)
            await asyncio.sleep(2)
            ada_id = ada.id
        output, errors = await asyncio.wait_for(bot.communicate(), 30)
    assert bot.returncode == 0, errors.decode()
    assert b"Ada connected direct" in output
    samples, rate = read_wav(tmp_path / f"{ada_id}.wav")
    assert tone_share(samples, rate, 660) > 0.8


async def test_match_pairs_the_command_with_a_stranger(
    xes_server: Any, tones: Callable[[float], Path]
) -> None:
    """`match --once`: queued, matched into a private room of two, audio both ways, and a
    clean exit when the stranger leaves."""
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xes.peer.cli", "match", "--server", xes_server.http_url,
        "--name", "Cli", "--tags", "chess", "--play", str(tones(880)), "--loop", "--once",
        "--allow-direct",  # this server has no relay: only consenting strangers meet
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert command.stdout is not None
    seen: list[str] = []
    async with killed_on_exit(command):
        await read_until(command.stdout, "waiting for a stranger", seen)
        async with Peer(xes_server.http_url, name="Stranger",
                        audio=open_file_source(tones(440), loop=True)) as stranger:
            room = await stranger.match(tags=["chess"], direct=True)
            assert room.match and [m.name for m in room.peers] == ["Cli"]
            assert await wait_for_tone(room.peers[0].listen(), 880) > 0
            await read_until(command.stdout, "connected, direct", seen)
        rest, errors = await asyncio.wait_for(command.communicate(), 30)
    output = "".join(seen) + rest.decode()
    assert command.returncode == 0, (output, errors)
    assert "matched in room" in output
    assert "peer left: Stranger" in output


async def test_match_without_consent_is_refused_where_there_is_no_relay(xes_server: Any) -> None:
    """This server has no relay: a Python stranger that did not pass `direct=True` (`xes match`
    without --allow-direct) is told why instead of waiting forever."""
    async with Peer(xes_server.http_url, name="Shy") as shy:
        with pytest.raises(JoinRefused) as refused:
            await asyncio.wait_for(shy.match(tags=["chess"]), 10)
    assert refused.value.code == "turn-unavailable"
