"""The shell's clocks: a wall-clock step must not reach the matchmaking queue.

This one test runs the server in the test's own process (real sockets, real picows, the real
core), because it has to step the wall clock that server reads: ``time.time`` is patched to go
back one second on every reading, as if NTP kept correcting it. The core's deadlines and queue
run on the monotonic clock (xes.core.timing), so matching works as usual; only the TURN
credential expiry, which coturn checks against its wall clock, follows the stepped clock.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from tests.server.wsclient import Client
from xes.core.signalling import CoreSettings
from xes.core.turn import IceSettings
from xes.server.app import XesServer
from xes.server.config import ServerSettings

pytestmark = pytest.mark.timeout(60)

TTL = 600


@pytest.fixture
async def in_process_server() -> AsyncIterator[str]:
    ice = IceSettings(turn_urls=("turn:127.0.0.1:3478",), turn_secret=b"not-a-real-secret",
                      ttl_seconds=TTL)
    server = XesServer(ServerSettings(port=0, core=CoreSettings(ice=ice)))
    port = await server.start()
    yield f"ws://127.0.0.1:{port}/ws"
    await server.stop()


async def test_a_wall_clock_stepping_back_does_not_break_matching(
        in_process_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ada, bob = [await Client.connect(in_process_server) for _ in range(2)]
    start = time.time()
    readings: list[float] = []

    def stepping_back() -> float:
        readings.append(start - len(readings))  # each reading 1 s before the previous one
        return readings[-1]

    monkeypatch.setattr(time, "time", stepping_back)
    await ada.match("Ada")
    await ada.expect("queued")
    await bob.match("Bob")
    await bob.expect("queued")
    joined = {name: await client.expect("joined") for name, client in (("ada", ada), ("bob", bob))}
    assert joined["ada"]["room"] == joined["bob"]["room"] and joined["bob"]["match"] is True
    stamped = {int(r) + TTL for r in readings}
    for message in joined.values():
        # The expiry comes from the stepped wall clock: a reading taken after the step.
        assert message["ice_expires_at"] in stamped
        assert message["ice_expires_at"] <= int(start) - 1 + TTL


async def test_a_wall_clock_jumping_forward_does_not_relax_preferences(
        in_process_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Preferences relax after 10 s of waiting on the monotonic clock, not on the wall clock."""
    ada, bob, cy = [await Client.connect(in_process_server) for _ in range(3)]
    await ada.match("Ada", tags=["chess"])
    await ada.expect("queued")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 3600)
    await bob.match("Bob")  # accepts anyone; Ada does not yet
    await bob.expect("queued")
    await ada.silent()
    await cy.match("Cy", tags=["chess"])
    await cy.expect("queued")
    assert (await cy.expect("joined"))["peers"][0]["id"] == ada.peer  # the shared interest
    await ada.expect("joined")
    await bob.silent(0.05)
