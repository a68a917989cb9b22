"""The server never carries audio: it opens no UDP socket, and during a live three-person call the
bytes it moves stay flat while the browsers exchange audio among themselves. Its log holds no
address, SDP or candidate.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.browser.test_call import CONNECT_TIMEOUT_MS, NAMES, TONES, join, open_new_room, tones_by_name
from tests.conftest import XesServerProcess, require_binary
from tests.support.browser import wait_channels_open

pytestmark = pytest.mark.browser

_BYTES = re.compile(r"bytes_(sent|received):(\d+)")


def every_channel_open(pages: list[Page]) -> None:
    """Wait until each page's data channel to every other page is open. The channels come in a
    second offer once each voice flows, through the server; a link's safety code is checked over
    its channel, so every link verified means every channel is open at both ends, and the
    server's signalling for the call is over (the server's byte counts can be read)."""
    for page in pages:
        wait_channels_open(page, links=len(pages) - 1)


def server_tcp_bytes(port: int) -> tuple[int, list[int]]:
    """Bytes moved (both ways) on the server's open connections, and the client ports seen."""
    out = subprocess.run(
        [require_binary("ss"), "-tinH", "state", "established", f"( sport = :{port} )"],
        check=True, capture_output=True, text=True).stdout
    total = sum(int(n) for _, n in _BYTES.findall(out))
    peers = [int(p) for p in re.findall(r"127\.0\.0\.1:\d+\s+127\.0\.0\.1:(\d+)", out)]
    return total, peers


def udp_sockets_of(pid: int) -> list[str]:
    """The UDP sockets a process holds, found through its file descriptors and /proc/net/udp*."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/udp", "/proc/net/udp6", "/proc/net/raw", "/proc/net/raw6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append(f"{table}: {line.strip()}")
    return found


def audio_packets_received(page: Page) -> int:
    total: int = page.evaluate(
        """async () => {
            let n = 0;
            for (const pc of window.xes.pcs().values()) {
                (await pc.getStats()).forEach(r => {
                    if (r.type === 'inbound-rtp' && r.kind === 'audio') n += r.packetsReceived;
                });
            }
            return n;
        }""")
    return total


def test_the_server_carries_no_audio(xes_server: XesServerProcess, launch_tone_browser: Any) -> None:
    pages = [launch_tone_browser(tone).new_page() for tone in TONES]
    room_url = open_new_room(pages[0], xes_server)
    for page, name in zip(pages, NAMES, strict=True):
        join(page, room_url, name)
    for page in pages:
        expect(page.get_by_role("list", name="Participants").get_by_text("Direct", exact=True)
               ).to_have_count(2, timeout=CONNECT_TIMEOUT_MS)
    # Audio is flowing in every direction (proved by frequency) ...
    for page, own in zip(pages, NAMES, strict=True):
        others = {n: t for n, t in zip(NAMES, TONES, strict=True) if n != own}
        assert tones_by_name(page, others) == {n: [t] for n, t in others.items()}
    every_channel_open(pages)

    setup_bytes, client_ports = server_tcp_bytes(xes_server.port)
    packets_before = [audio_packets_received(p) for p in pages]
    time.sleep(5)
    steady_bytes, _ = server_tcp_bytes(xes_server.port)
    packets_after = [audio_packets_received(p) for p in pages]
    audio = [after - before for before, after in zip(packets_before, packets_after, strict=True)]
    print(f"\nserver moved {setup_bytes} bytes of signalling for the 3-person call setup "
          f"(3 WebSockets), then {steady_bytes - setup_bytes} bytes in 5 s of call while the "
          f"browsers received {audio} audio packets from each other")

    assert len(client_ports) == 3
    # ... while the server's own traffic stays flat. Audio would be ~50 packets/s per stream.
    assert all(n >= 100 for n in audio), audio
    assert steady_bytes - setup_bytes < 2_000
    assert setup_bytes < 200_000
    assert udp_sockets_of(xes_server.process.pid) == []

    # Nothing identifying in the log: no client address or port, no SDP, no candidate.
    log = xes_server.log
    for port in client_ports:
        assert f":{port}" not in log
    for secret in ("v=0", "candidate", "a=fingerprint", "typ host", "sdp"):
        assert secret not in log
