"""A stranger never learns your address without your consent: the real server, over WebSockets.

`hello.relay` tells a client whether this server has a relay; without one, a `match` that does not
consent to a direct connection is refused and queues nothing, so only consenting strangers meet.
"""

from __future__ import annotations

from collections.abc import Callable

from tests.conftest import XesServerProcess
from tests.server.wsclient import Client

TURN = ["--turn-url", "turn:127.0.0.1:3478?transport=udp"]


async def test_hello_says_there_is_no_relay_on_a_server_without_turn(
        xes_server: XesServerProcess) -> None:
    client = await Client.connect(xes_server.ws_url)
    assert client.hello["relay"] is False


async def test_hello_says_there_is_a_relay_when_turn_is_configured(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=TURN, env={"XES_TURN_SECRET": "s3cret-for-the-test"})
    client = await Client.connect(server.ws_url)
    assert client.hello["relay"] is True


async def test_without_a_relay_strangers_meet_only_if_both_consented(
        xes_server: XesServerProcess) -> None:
    ada, bob = await Client.connect(xes_server.ws_url), await Client.connect(xes_server.ws_url)
    await ada.match("Ada", direct=True)
    await ada.expect("queued")
    # Bob did not consent: refused, not queued, and Ada (who waits) is not paired with him.
    await bob.match("Bob")
    refused = await bob.expect("error")
    assert refused["code"] == "turn-unavailable" and refused["ref"] == "match"
    await ada.silent(0.3)
    await bob.send({"type": "stop"})
    assert (await bob.expect("error"))["code"] == "not-queued"
    # Once he consents, they meet, and the server lets the call go direct.
    await bob.match("Bob", direct=True)
    await bob.expect("queued")
    for client in (bob, ada):
        joined = await client.expect("joined")
        assert joined["match"] and joined["ice_transport_policy"] == "all"


async def test_with_a_relay_a_pair_without_both_consents_is_relay_only(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=TURN, env={"XES_TURN_SECRET": "s3cret-for-the-test"})
    ada, bob = await Client.connect(server.ws_url), await Client.connect(server.ws_url)
    await ada.match("Ada", direct=True)
    await ada.expect("queued")
    await bob.match("Bob")
    await bob.expect("queued")
    for client in (bob, ada):
        joined = await client.expect("joined")
        assert joined["ice_transport_policy"] == "relay"
        assert any(url.startswith("turn:") for s in joined["ice_servers"] for url in s["urls"])
