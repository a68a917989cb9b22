"""`xes call` as a user runs it: a subprocess, its exit status, what it prints, what it records.

Errors must be clear and early (wrong link, unreachable server, full room, unreadable file), and
Ctrl-C must leave the room cleanly so the others see `peer-left` with reason `left`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tests.peer.test_mesh import new_room_id, wait_connected
from tests.peer.tones import read_wav, tone_share, wait_for_tone
from xes.peer import Peer, PeerLeft, open_file_source

CALL = [sys.executable, "-m", "xes.peer.cli", "call"]


def run_call(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CALL, *args], capture_output=True, text=True, timeout=timeout)


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_wrong_link_is_a_usage_error() -> None:
    """A link whose path is not /r/<room id>, or a word that is no room id, exits 2 at once."""
    for target, expected in (
        ("http://127.0.0.1:9/rooms/abc", "not a room link"),
        ("hello", "not a room link or room id"),
        ("ftp://127.0.0.1/r/AAAAAAAAAAAAAAAAAAAAAA", "not a room link"),
    ):
        result = run_call(target)
        assert result.returncode == 2, result
        assert expected in result.stderr
        assert "Traceback" not in result.stderr


def test_the_xes_entry_point_runs_call() -> None:
    """`xes call` (the lead's entry point) reaches the same command."""
    xes = Path(sys.executable).with_name("xes")
    result = subprocess.run([str(xes), "call", "not a link"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "not a room link" in result.stderr


def test_unreachable_server_fails_clearly() -> None:
    """Nothing listens on the port: exit 1 with 'cannot reach', not a traceback."""
    result = run_call(f"http://127.0.0.1:{unused_port()}/r/{new_room_id()}", "--no-mic")
    assert result.returncode == 1, result
    assert "cannot reach ws://127.0.0.1:" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreadable_input_file_fails_before_connecting(tmp_path: Path) -> None:
    """A missing file and a file that is not audio both stop the command, exit 1."""
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not a WAV file\n")
    unreachable = f"http://127.0.0.1:{unused_port()}/r/{new_room_id()}"
    for path, expected in ((tmp_path / "missing.wav", "no such file"),
                           (not_audio, "cannot read audio file")):
        result = run_call(unreachable, "--play", str(path))
        assert result.returncode == 1, result
        assert expected in result.stderr
        assert "cannot reach" not in result.stderr  # checked before any connection
        assert "Traceback" not in result.stderr


async def test_full_room_is_refused(start_xes_server: Callable[..., Any]) -> None:
    """A room at its maximum turns the command away with the protocol's reason."""
    server = start_xes_server(args=["--max-peers", "2"])
    room = new_room_id()
    async with Peer(server.http_url, name="Ada") as ada, \
            Peer(server.http_url, name="Bob") as bob:
        await ada.join(room)
        await bob.join(room)
        process = await asyncio.create_subprocess_exec(
            *CALL, f"{server.http_url}/r/{room}", "--no-mic",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 1, (stdout, stderr)
    assert b"room-full" in stderr
    assert b"Traceback" not in stderr


@contextlib.asynccontextmanager
async def killed_on_exit(
    process: asyncio.subprocess.Process,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Kill `process` if it is still running when the block ends (an assertion failed in it),
    so that a failing test leaves no command behind."""
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str],
                     count: int = 1, timeout: float = 30) -> None:
    """Read lines into `seen` until `needle` appeared in `count` of them."""
    async with asyncio.timeout(timeout):
        while sum(needle in line for line in seen) < count:
            line = await stream.readline()
            if not line:
                raise AssertionError("the command ended early:\n" + "".join(seen))
            seen.append(line.decode())


async def test_call_sends_records_mixed_and_leaves_cleanly_on_sigint(
    xes_server: Any, tones: Callable[[float], Path], tmp_path: Path
) -> None:
    """The command joins Ada (440 Hz) and Bob (660 Hz), sends 880 Hz, prints each link as
    direct, records both into one mixed WAV, and on SIGINT leaves: exit 0, both see `left`."""
    room = new_room_id()
    mixed = tmp_path / "mixed.wav"
    async with Peer(xes_server.http_url, name="Ada",
                    audio=open_file_source(tones(440), loop=True)) as ada, \
            Peer(xes_server.http_url, name="Bob",
                 audio=open_file_source(tones(660), loop=True)) as bob:
        await ada.join(room)
        await bob.join(room)
        process = await asyncio.create_subprocess_exec(
            *CALL, f"{xes_server.http_url}/r/{room}", "--name", "Cli",
            "--play", str(tones(880)), "--loop", "--record", str(mixed),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert process.stdout is not None and process.stderr is not None
        seen: list[str] = []
        async with killed_on_exit(process):
            await read_until(process.stdout, "connected, direct (host -> host)", seen, count=2)
            await wait_connected(ada, 2)
            cli_at_ada = next(m for m in ada.members.values() if m.name == "Cli")
            assert await wait_for_tone(cli_at_ada.listen(), 880) > 0
            await asyncio.sleep(2.5)  # two seconds of both tones in the mixed file
            process.send_signal(signal.SIGINT)
            rest, errors = await asyncio.wait_for(process.communicate(), 30)
        output = "".join(seen) + rest.decode()
        assert process.returncode == 0, (output, errors)
        assert "left the room" in output
        assert "recorded" in output and str(mixed) in output
        for listener in (ada, bob):
            async with asyncio.timeout(10):
                async for event in listener.events():
                    if isinstance(event, PeerLeft) and event.peer.name == "Cli":
                        assert event.reason == "left"
                        break
    assert "here: Ada [" in output and ", Bob [" in output
    samples, rate = read_wav(mixed)
    assert len(samples) > 2 * rate
    for frequency in (440, 660):
        share = tone_share(samples, rate, frequency)
        assert share > 0.25, f"{frequency} Hz is only {share:.2f} of the mixed recording"
    assert tone_share(samples, rate, 880) < 0.05  # our own tone is not in what we heard
