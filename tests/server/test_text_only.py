""""Text only" strangers through the real server (docs/protocol.md, "Text only").

A text-only user meets other text-only users and voice users who sent `accept_text`, never a
voice user who did not; the partner learns it from `text_only` on the peer entry. Waiting is proven
by who gets paired next, not by waiting for silence.
"""

from __future__ import annotations

from tests.conftest import XesServerProcess
from tests.server.wsclient import Client

# This server has no relay: only strangers who consent to a direct connection meet.
DIRECT = {"direct": True}


async def test_text_only_meets_text_only_and_never_a_voice_user_who_did_not_accept(
        xes_server: XesServerProcess) -> None:
    ada, bob, cy, dan = [await Client.connect(xes_server.ws_url) for _ in range(4)]
    await ada.match("Ada", text_only=True, **DIRECT)
    await ada.expect("queued")
    await bob.match("Bob", **DIRECT)  # voice, did not accept text: Ada and Bob both wait
    await bob.expect("queued")
    await cy.match("Cy", text_only=True, **DIRECT)
    await cy.expect("queued")
    # Cy is paired with Ada, who waited longest among those Cy may meet; Bob, earlier than Cy
    # and waiting alone since, was passed over.
    cy_joined = await cy.expect("joined")
    assert cy_joined["peers"] == [{"id": ada.peer, "name": "Ada", "polite": False, "text_only": True}]
    await ada.expect("joined")
    assert (await ada.expect("peer-joined"))["peer"]["text_only"] is True
    # Bob still waits, and meets the next voice user, with no text-only mark on either side.
    await dan.match("Dan", **DIRECT)
    await dan.expect("queued")
    dan_joined = await dan.expect("joined")
    assert dan_joined["peers"][0]["id"] == bob.peer and "text_only" not in dan_joined["peers"][0]
    await bob.expect("joined")
    assert "text_only" not in (await bob.expect("peer-joined"))["peer"]


async def test_a_voice_user_who_accepts_text_meets_a_text_only_user(
        xes_server: XesServerProcess) -> None:
    eve, fay = await Client.connect(xes_server.ws_url), await Client.connect(xes_server.ws_url)
    await eve.match("Eve", text_only=True, **DIRECT)
    await eve.expect("queued")
    await fay.match("Fay", accept_text=True, **DIRECT)
    await fay.expect("queued")
    joined = await fay.expect("joined")
    assert joined["match"] is True and joined["peers"][0]["text_only"] is True
    await eve.expect("joined")
    assert "text_only" not in (await eve.expect("peer-joined"))["peer"]  # Fay talks; Eve types


async def test_a_text_only_flag_that_is_not_a_boolean_is_a_bad_field(
        xes_server: XesServerProcess) -> None:
    client = await Client.connect(xes_server.ws_url)
    await client.match("Gus", text_only="yes", **DIRECT)
    refused = await client.expect("error")
    assert refused["code"] == "bad-field" and refused["ref"] == "match" and "text_only" in refused["message"]
    await client.send({"type": "stop"})
    assert (await client.expect("error"))["code"] == "not-queued"  # nothing was queued
