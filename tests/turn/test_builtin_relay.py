"""`xes serve` given no TURN server starts its own relay (a local coturn), so the default install
keeps strangers' addresses from each other; `--no-turn` turns that off.

The real command, as a subprocess, with the coturn Debian installs; credentials the server hands
out are tried on that coturn with a real TURN client.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets

from tests.conftest import ROOT, XesServerProcess
from xes.peer.identity import PeerIdentity
from xes.protocol.messages import encode_client

from .turnclient import allocation


def children_named(pid: int, name: str) -> list[int]:
    """Processes whose parent is `pid` and whose command is `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "comm").read_text().strip()
        except OSError:
            continue
        if int(fields[1]) == pid and command == name:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def hello_and_match(ws_url: str, name: str) -> tuple[Any, dict[str, Any]]:
    """Connect, read `hello`, and queue for a stranger *without* consenting to a direct call."""
    ws = await websockets.connect(ws_url)
    hello = json.loads(await ws.recv())
    await ws.send(encode_client(PeerIdentity.generate().identify(hello["challenge"])).decode())
    assert json.loads(await ws.recv())["type"] == "identified"
    await ws.send(json.dumps({"type": "match", "name": name}))
    return ws, hello


async def next_of(ws: Any, kind: str) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if message["type"] == kind:
            return message
        assert message["type"] in ("queued", "peer-joined"), message


async def test_serve_without_turn_url_starts_a_relay_strangers_are_kept_on(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(builtin_relay=True)
    assert "Relay: built-in coturn at turn:127.0.0.1:" in server.log
    [coturn] = children_named(server.process.pid, "turnserver")
    # Its configuration holds the fresh secret: private directory, private file.
    config = Path(re.search(r"-c\x00([^\x00]+)", Path(f"/proc/{coturn}/cmdline").read_text())[1])
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700

    ada, ada_hello = await hello_and_match(server.ws_url, "Ada")
    bob, bob_hello = await hello_and_match(server.ws_url, "Bob")
    try:
        assert ada_hello["relay"] is True and bob_hello["relay"] is True
        for ws in (ada, bob):
            joined = await next_of(ws, "joined")
            assert joined["match"] and joined["ice_transport_policy"] == "relay"
            [turn] = [s for s in joined["ice_servers"] if s["urls"][0].startswith("turn:")]
            host, port = re.match(r"turn:([\d.]+):(\d+)\?", turn["urls"][0]).groups()  # type: ignore[union-attr]
            # coturn accepts the credentials: a relay allocation is made on it.
            async with allocation((host, int(port)), turn["username"], turn["credential"]) as relay:
                assert relay.relayed_address[0] == "127.0.0.1"
    finally:
        await ada.close()
        await bob.close()

    assert server.stop() == 0
    assert not alive(coturn), "the relay outlived the server"
    assert not config.parent.exists(), "the relay's secret outlived the server"


async def test_no_turn_serves_without_a_relay_and_says_so(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=["--no-turn"], builtin_relay=True)
    assert "Relay: none (--no-turn)" in server.log
    assert "only if both allow a direct connection" in server.log
    assert children_named(server.process.pid, "turnserver") == []
    ws = await websockets.connect(server.ws_url)
    try:
        assert json.loads(await ws.recv())["relay"] is False
    finally:
        await ws.close()


def test_no_turn_and_a_turn_url_are_refused_together() -> None:
    done = subprocess.run([sys.executable, "-m", "xes.cli", "serve", "--port", "0", "--no-turn",
                           "--turn-url", "turn:127.0.0.1:3478"], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 2 and "contradict" in done.stderr


async def test_scripts_serve_sh_runs_with_a_relay() -> None:
    """What the README's `bash scripts/serve.sh` starts has a relay: the start-up lines say so,
    and the page is told (`hello.relay`). Stopping it stops the relay."""
    process = subprocess.Popen(["bash", str(ROOT / "scripts" / "serve.sh"), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    try:
        lines = []
        for line in process.stdout:  # set-up lines first (the virtualenv is checked, coturn too)
            lines.append(line)
            if "XES is running" in line:
                break
        url = re.search(r"Open (http://[^/\s]+)/", lines[-1])
        assert url, "".join(lines)
        assert any(line.startswith("Relay: built-in coturn at turn:") for line in lines), lines
        [coturn] = children_named(process.pid, "turnserver")
        ws = await websockets.connect(url[1].replace("http://", "ws://") + "/ws")
        try:
            assert json.loads(await ws.recv())["relay"] is True
        finally:
            await ws.close()
    finally:
        process.terminate()
        process.wait(15)
        process.stdout.close()
    assert not alive(coturn)


def test_the_relay_does_not_outlive_a_killed_server(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    """Even a SIGKILL, which leaves the server no time to clean up, takes the relay with it."""
    server = start_xes_server(builtin_relay=True)
    [coturn] = children_named(server.process.pid, "turnserver")
    config = Path(re.search(r"-c\x00([^\x00]+)", Path(f"/proc/{coturn}/cmdline").read_text())[1])
    server.process.kill()
    server.process.wait(10)
    deadline = time.monotonic() + 10  # a wait for the kernel's signal, not a measurement
    while alive(coturn) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(coturn), "an orphaned relay outlived its server"
    shutil.rmtree(config.parent)  # left behind by the kill, as documented; private and now useless
