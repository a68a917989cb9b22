"""Pseudonymous identity and lasting blocks, against a real `xes serve` with SQLite in --data-dir."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import XesServerProcess
from tests.server.wsclient import Client
from xes.peer.identity import PeerIdentity
from xes.protocol import messages as m


async def test_a_copied_public_key_or_replayed_signature_cannot_take_an_identity(
        xes_server: XesServerProcess) -> None:
    ada_identity = PeerIdentity.generate()
    ada = await Client.connect(xes_server.ws_url)
    proof = ada_identity.identify(ada.hello["challenge"])
    assert (await ada.identify(ada_identity))["type"] == "identified"
    mallory = await Client.connect(xes_server.ws_url)
    # Ada's own signature, replayed on another connection (another challenge):
    await mallory.send(m.encode_client(proof).decode())
    refused = await mallory.expect("error")
    assert refused["code"] == "identity-refused" and refused["ref"] == "identify"
    # Ada's public key with a signature Mallory made with her own key:
    forged = PeerIdentity.generate().identify(mallory.hello["challenge"])
    await mallory.send(m.encode_client(m.Identify(public_key=proof.public_key,
                                                  signature=forged.signature)).decode())
    assert (await mallory.expect("error"))["code"] == "identity-refused"
    # Still nobody: a stranger is refused to it until it proves an identity of its own.
    await mallory.send({"type": "match", "name": "Mallory", "direct": True})
    assert (await mallory.expect("error"))["code"] == "identity-required"


async def _queue(url: str, identity: PeerIdentity, name: str) -> Client:
    client = await Client.connect(url)
    assert (await client.identify(identity))["type"] == "identified"
    await client.match(name, direct=True)
    await client.expect("queued")
    return client


async def _never_paired(url: str, ada: PeerIdentity, bob: PeerIdentity) -> None:
    """Alone together in the queue, the two wait; a third person is paired at once."""
    a = await _queue(url, ada, "Ada")
    b = await _queue(url, bob, "Bob")
    await a.silent(0.5)
    await b.silent(0.1)
    cy = await _queue(url, PeerIdentity.generate(), "Cy")
    assert (await cy.expect("joined"))["peers"][0]["id"] == a.peer  # the longest waiting
    await a.expect("joined")
    for client in (a, b, cy):
        await client.close()


async def test_a_block_lasts_across_connections_and_restarts(
        start_xes_server: Callable[..., XesServerProcess], storage_args: list[str]) -> None:
    server = start_xes_server(args=storage_args)
    ada, bob = PeerIdentity.generate(), PeerIdentity.generate()
    a = await _queue(server.ws_url, ada, "Ada")
    b = await _queue(server.ws_url, bob, "Bob")
    await b.expect("joined")
    await a.expect("joined")
    await a.expect("peer-joined")
    await a.send({"type": "block", "peer": b.peer})  # one way: only Ada blocks
    assert (await a.expect("left"))["type"] == "left"
    assert (await a.expect("queued"))["type"] == "queued"
    assert (await a.expect("noted"))["ref"] == "block"
    await a.close()
    await b.close()
    await _never_paired(server.ws_url, ada, bob)
    assert server.stop() == 0
    restarted = start_xes_server(args=storage_args)
    await _never_paired(restarted.ws_url, ada, bob)
    data_dir = Path(storage_args[1])
    assert (data_dir / "xes.sqlite3").exists() == ("--database" not in storage_args)
    assert (data_dir / "identity-secret").stat().st_mode & 0o077 == 0  # the secret: owner only


async def test_new_identities_per_network_are_limited_but_known_ones_come_back(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=["--new-identities-per-day", "2"])
    first = PeerIdentity.generate()
    for identity in (first, PeerIdentity.generate()):
        client = await Client.connect(server.ws_url)
        assert (await client.identify(identity))["type"] == "identified"
    third = await Client.connect(server.ws_url)
    refused = await third.identify()
    assert refused["code"] == "too-many-identities" and refused["ref"] == "identify"
    again = await Client.connect(server.ws_url)
    assert (await again.identify(first))["type"] == "identified"  # not new: never limited


async def test_behind_a_proxy_the_limit_counts_the_forwarded_networks(
        start_xes_server: Callable[..., XesServerProcess]) -> None:
    server = start_xes_server(args=["--new-identities-per-day", "1", "--trust-forwarded-for"])

    async def new_identity_from(address: str) -> str:
        client = await Client.connect(server.ws_url, additional_headers={
            "X-Forwarded-For": f"198.51.100.9, {address}"})  # the proxy's entry is the last
        return str((await client.identify())["type"])

    assert await new_identity_from("203.0.113.7") == "identified"
    assert await new_identity_from("203.0.113.7") == "error"
    assert await new_identity_from("2001:db8::1") == "identified"
    assert await new_identity_from("2001:db8::2") == "error"  # the same /64
