"""A small protocol client for integration tests, on the independent `websockets` library."""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from xes.peer.identity import PeerIdentity
from xes.protocol import messages as m

WAIT = 5.0


def new_room() -> str:
    return secrets.token_urlsafe(16)


class Client:
    """One signalling connection; ``peer`` is the id from ``hello``, ``token`` its resume token.

    Every message after ``hello`` must carry the next ``seq`` (docs/protocol.md, "Sessions"):
    :meth:`recv` checks it, keeps it in ``last_seq`` and hands the message back without it, so
    tests compare messages as the protocol describes them.
    """

    opened: list[Client] = []  # closed after each test by tests/server/conftest.py

    def __init__(self, ws: ClientConnection, hello: dict[str, Any]) -> None:
        Client.opened.append(self)
        self.ws = ws
        self.hello = hello
        self.peer: str = hello["peer"]
        self.token: str = hello["resume"]
        self.last_seq = 0

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Client:
        ws = await websockets.connect(url, max_size=None, **kwargs)
        hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert hello["type"] == "hello"
        return cls(ws, hello)

    async def send(self, message: dict[str, Any] | str | bytes) -> None:
        await self.ws.send(message if isinstance(message, (str, bytes)) else json.dumps(message))

    async def recv(self, timeout: float = WAIT) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if message["type"] in ("hello", "resumed"):
            assert "seq" not in message, message
        else:
            assert message.get("seq") == self.last_seq + 1, (self.last_seq, message)
            self.last_seq = message.pop("seq")
        return message

    async def resume(self, url: str, last_seq: int | None = None,
                     token: str | None = None) -> tuple[Client, dict[str, Any]]:
        """Continue this client's session on a new connection (see :func:`resume_session`)."""
        return await resume_session(url, self.peer, token or self.token,
                                    self.last_seq if last_seq is None else last_seq)


    async def expect(self, kind: str, timeout: float = WAIT) -> dict[str, Any]:
        message = await self.recv(timeout)
        assert message["type"] == kind, message
        return message

    async def silent(self, for_seconds: float = 0.3) -> None:
        """Assert nothing arrives: "other members never notice"."""
        try:
            message = await asyncio.wait_for(self.ws.recv(), for_seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message: {message!r}")

    async def identify(self, identity: PeerIdentity | None = None) -> dict[str, Any]:
        """Prove ``identity`` (a fresh one by default) for this connection; the server's answer."""
        self.identity = identity or PeerIdentity.generate()
        await self.send(m.encode_client(self.identity.identify(self.hello["challenge"])).decode())
        return await self.recv()

    async def match(self, name: str = "stranger", **fields: Any) -> None:
        """Identify first if not yet, then queue for a stranger (the answer is left to read)."""
        if not hasattr(self, "identity"):
            answer = await self.identify()
            assert answer["type"] == "identified", answer
        await self.send({"type": "match", "name": name, **fields})

    async def join(self, room: str, name: str = "someone", **fields: Any) -> dict[str, Any]:
        await self.send({"type": "join", "room": room, "name": name, **fields})
        return await self.recv()

    async def close(self) -> None:
        await self.ws.close()


async def close_all_clients() -> None:
    while Client.opened:
        await Client.opened.pop().close()


async def resume_session(url: str, peer: str, token: str, last_seq: int
                         ) -> tuple[Client, dict[str, Any]]:
    """Send `resume` as the first message of a new connection: (the new client, its answer,
    ``resumed`` or ``error``). On success the new client has the session's id, the new token and
    ``last_seq``, so its :meth:`Client.recv` checks that the replay continues the stream."""
    fresh = await Client.connect(url)
    await fresh.send({"type": "resume", "peer": peer, "token": token, "last_seq": last_seq})
    answer = await fresh.recv()
    if answer["type"] == "resumed":
        fresh.peer, fresh.token, fresh.last_seq = answer["peer"], answer["resume"], last_seq
    return fresh, answer
