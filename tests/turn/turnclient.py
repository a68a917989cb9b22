"""A minimal TURN client for tests: aioice's UDP TURN protocol, driven one request at a time.

It lets a test ask coturn exactly one question (may I allocate? may I relay to this peer?) and
see the STUN error code coturn answers with, which the browser only reports indirectly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aioice import stun
from aioice.turn import TurnClientUdpProtocol

__all__ = ["TurnRefused", "allocation", "turn_error_code"]

TurnRefused = stun.TransactionFailed


def turn_error_code(error: stun.TransactionFailed) -> int:
    """The STUN ERROR-CODE number (401, 403, ...) of a refused request."""
    code, _reason = error.response.attributes["ERROR-CODE"]
    return int(code)


@asynccontextmanager
async def allocation(
    server: tuple[str, int], username: str, password: str
) -> AsyncIterator[TurnClientUdpProtocol]:
    """Allocate a UDP relay on `server`; the allocation is deleted on exit.

    Raises:
        TurnRefused: If coturn refuses the Allocate (401 for bad or expired credentials).
    """
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            server, username=username, password=password, lifetime=600,
            channel_refresh_time=500,
        ),
        remote_addr=server,
    )
    try:
        await protocol.connect()
        try:
            yield protocol
        finally:
            await protocol.delete()
    finally:
        transport.close()
