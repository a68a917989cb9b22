"""`xes match --text-only` and `Peer.match(accept_text=True)`: a text chat between the Python
peers, over the link's data channel, with no audio on the link (docs/protocol.md, "Text only")."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.peer.test_cli import killed_on_exit, read_until
from tests.peer.test_mesh import wait_connected
from xes.peer import ChatReceived, Peer, open_file_source


async def test_the_text_only_command_chats_with_a_voice_peer_that_accepts_text(
    xes_server: Any, tones: Callable[[float], Path]
) -> None:
    """The command waits with --text-only; a voice peer that accepts text is paired with it and
    learns it is text only; lines typed into the command arrive as chat, chat sent to it is
    printed; the link has the data channel alone, though the voice peer has a track to send."""
    command = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xes.peer.cli", "match", "--server", xes_server.http_url,
        "--name", "Typist", "--text-only", "--once",
        "--allow-direct",  # this server has no relay: only consenting strangers meet
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert command.stdin is not None and command.stdout is not None
    seen: list[str] = []
    async with killed_on_exit(command):
        await read_until(command.stdout, "waiting for a stranger", seen)
        async with Peer(xes_server.http_url, name="Talker",
                        audio=open_file_source(tones(440), loop=True)) as talker:
            room = await talker.match(direct=True, accept_text=True)
            [typist] = room.peers
            assert typist.name == "Typist" and typist.text_only
            await wait_connected(talker, 1)
            await read_until(command.stdout, "connected, direct", seen)
            # The safety code needs both ends of the data channel open: typing before that would
            # rightly be refused ("not sent: nobody is connected yet").
            await read_until(command.stdout, "safety code:", seen)
            pc = typist.link.peer_connection if typist.link is not None else None
            assert pc is not None and pc.getTransceivers() == [] and pc.sctp is not None
            command.stdin.write(b"hello from the terminal\n")
            await command.stdin.drain()
            async with asyncio.timeout(20):
                async for event in talker.events():
                    if isinstance(event, ChatReceived):
                        assert (event.peer.name, event.text) == ("Typist", "hello from the terminal")
                        break
            assert talker.send_chat("  hello from Python  ") == 1
            await read_until(command.stdout, "chat from Talker", seen)
        command.stdin.close()
        rest, errors = await asyncio.wait_for(command.communicate(), 30)
    output = "".join(seen) + rest.decode()
    assert command.returncode == 0, (output, errors)
    assert "text only: no audio either way" in output
    assert "chat from Talker [" in output and output.rstrip().count("hello from Python") == 1
    assert "hearing" not in output  # no audio ever arrived at the text-only side
    assert "not sent" not in output
