"""Ratings and cooldowns end to end: trusted identities rate one down; its next match is refused."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import XesServerProcess
from tests.server.wsclient import Client
from xes.core import safety
from xes.core.safety import Score, Standing
from xes.peer.identity import PeerIdentity
from xes.server.identity import identity_hash
from xes.server.storage import open_database

RATERS = 8  # of trust 0.9 each: enough to take a neutral identity below COOLDOWN_BELOW


def _seed_trusted(storage_args: list[str], raters: list[PeerIdentity]) -> None:
    """Scripted identities months old with a good record, stored before the server starts."""
    options = dict(zip(storage_args[::2], storage_args[1::2], strict=True))
    data_dir = Path(options["--data-dir"])
    secret = b"s" * 32
    (data_dir / "identity-secret").write_bytes(secret)
    (data_dir / "identity-secret").chmod(0o600)
    database = open_database(options.get("--database"), data_dir)
    mature_since = time.time() - 300 * 86_400  # mature, and seen within the retention period
    for rater in raters:
        raw = rater.raw_public_key()
        database.create_identity(Standing(identity_hash(secret, raw), created_at=mature_since,
                                          score=Score(good=40.0, as_of=time.time())),
                                 None, 0, mature_since)
    database.close()


async def test_trusted_bad_ratings_put_an_identity_in_a_cooldown_with_the_time_left(
        start_xes_server: Callable[..., XesServerProcess], storage_args: list[str]) -> None:
    raters = [PeerIdentity.generate() for _ in range(RATERS)]
    _seed_trusted(storage_args, raters)
    server = start_xes_server(args=storage_args)
    target = await Client.connect(server.ws_url)
    await target.match("Target", direct=True)
    await target.expect("queued")
    for rater_identity in raters:
        rater = await Client.connect(server.ws_url)
        identified = await rater.identify(rater_identity)
        assert identified["type"] == "identified" and identified["cooldown_until"] is None, identified
        await rater.match("Rater", direct=True)
        await rater.expect("queued")
        await rater.expect("joined")
        await target.expect("joined")
        await target.expect("peer-joined")
        await rater.send({"type": "rate", "peer": target.peer, "good": False})
        assert (await rater.expect("noted"))["ref"] == "rate"
        await rater.send({"type": "rate", "peer": target.peer, "good": False})
        assert (await rater.expect("error"))["code"] == "bad-field"  # once per call
        await rater.close()
        assert (await target.expect("peer-left"))["reason"] == "disconnected"
        await target.send({"type": "next"})
        answer = await target.recv()
        if answer["type"] == "error":
            break
        assert answer["type"] == "left"
        await target.expect("queued")
    else:
        raise AssertionError("no cooldown after every rater rated down")
    assert answer["code"] == "cooldown" and answer["ref"] == "next"
    assert safety.FIRST_COOLDOWN_SECONDS - 60 < answer["retry_after"] <= safety.FIRST_COOLDOWN_SECONDS
    assert "min" in answer["message"]
    # A new connection of the same identity is told at once, and refused too.
    again = await Client.connect(server.ws_url)
    identified = await again.identify(target.identity)
    assert identified["cooldown_until"] > time.time() + 3000
    await again.match("Target", direct=True)
    refused = await again.expect("error")
    assert refused["code"] == "cooldown" and refused["ref"] == "match" and refused["retry_after"] > 3000
    await asyncio.sleep(0)
