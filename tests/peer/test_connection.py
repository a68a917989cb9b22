"""Two Links wired to each other in one process, without a server: the aiortc rules in isolation."""

from __future__ import annotations

import asyncio
import contextlib

from aiortc import RTCConfiguration, RTCPeerConnection

from xes.peer.connection import Link, LinkState
from xes.protocol.messages import SessionDescription, SignalData


def make_link(name: str, outbox: list[SignalData], timeout: float = 15.0) -> Link:
    return Link(name, configuration=RTCConfiguration(iceServers=[]),
                send_signal=outbox.append, on_change=lambda link: None,
                on_track=lambda track: None, source=None, allow_loopback=True,
                connect_timeout=timeout)


async def next_signal(outbox: list[SignalData], timeout: float = 10) -> SignalData:
    async with asyncio.timeout(timeout):
        while not outbox:
            await asyncio.sleep(0.01)
    return outbox.pop(0)


async def wait_state(link: Link, state: LinkState, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while link.state is not state:
            await asyncio.sleep(0.02)


async def test_crossing_offer_is_ignored_and_our_offer_still_connects() -> None:
    """Glare: an offer arriving while ours is pending is dropped (we cannot roll back); the
    answer to our own offer then connects the link as usual."""
    a_out: list[SignalData] = []
    b_out: list[SignalData] = []
    a, b = make_link("B", a_out), make_link("A", b_out)
    intruder = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        a.offer()
        a_offer = await next_signal(a_out)
        assert a_offer.description is not None and a_offer.description.type == "offer"
        intruder.addTransceiver("audio")
        await intruder.setLocalDescription(await intruder.createOffer())
        a.handle_signal(SignalData(
            description=SessionDescription("offer", intruder.localDescription.sdp)
        ))
        await asyncio.sleep(0.2)
        assert a.peer_connection.signalingState == "have-local-offer"
        assert a_out == []  # no answer to the crossing offer
        b.handle_signal(a_offer)
        b_answer = await next_signal(b_out)
        assert b_answer.description is not None and b_answer.description.type == "answer"
        a.handle_signal(b_answer)
        await wait_state(a, LinkState.CONNECTED)
        await wait_state(b, LinkState.CONNECTED)
        assert a.candidate_types == ("host", "host")
    finally:
        await a.close()
        await b.close()
        await intruder.close()


async def test_link_that_never_connects_fails_after_its_own_timeout() -> None:
    """An offer nobody answers: the link reports FAILED after connect_timeout, not aiortc's
    minute, and says why."""
    outbox: list[SignalData] = []
    link = make_link("nobody", outbox, timeout=1.0)
    try:
        link.offer()
        await next_signal(outbox)
        await wait_state(link, LinkState.FAILED, timeout=5)
        assert link.failure == "not connected after 1 s"
        await link.close()  # waits for the closing the failure started; changes nothing else
        assert link.state is LinkState.FAILED
        assert link.peer_connection.connectionState == "closed"
    finally:
        await link.close()


def test_configuration_without_explicit_ice_servers_is_refused() -> None:
    """aiortc's default configuration means a public STUN server; Link refuses it."""
    import pytest

    with pytest.raises(ValueError, match="iceServers"):
        Link("x", configuration=RTCConfiguration(), send_signal=lambda data: None,
             on_change=lambda link: None, on_track=lambda track: None, source=None,
             allow_loopback=False)


def open_ice_sockets(link: Link) -> list[asyncio.BaseTransport]:
    """The link's ICE sockets (aioice's, reached through aiortc's private attributes)."""
    sockets = []
    for transceiver in link.peer_connection.getTransceivers():
        connection = transceiver.sender.transport.transport._connection
        sockets += [protocol.transport for protocol in connection._protocols
                    if protocol.transport is not None]
    return [socket for socket in sockets if not socket.is_closing()]


async def test_a_close_whose_caller_is_cancelled_still_closes_every_socket() -> None:
    """A peer shutting down cancels its receive loop, which may be closing a link right then.
    The closing goes on regardless, and a later close() waits for it: no ICE socket stays open."""
    outbox: list[SignalData] = []
    link = make_link("B", outbox)
    link.offer()
    await next_signal(outbox)  # the offer is made: its candidates' sockets are open
    sockets = open_ice_sockets(link)
    assert sockets
    interrupted = asyncio.ensure_future(link.close())
    await asyncio.sleep(0)
    interrupted.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await interrupted
    await link.close()
    assert [socket for socket in sockets if not socket.is_closing()] == []
    assert link.state is LinkState.CLOSED
