"""A bare signalling relay: the floor that XES is measured against.

It speaks the smallest useful subset of docs/protocol.md (`hello`, `join` -> `joined` /
`peer-joined`, `signal` -> `signal {from}`, `leave` -> `left` / `peer-left`) with no validation,
no limits, no rate limiting, no rules, no TURN credentials and no heartbeat. Whatever XES costs on
top of this is the price of its checks and features, which is what the benchmark wants to see:

- the load generator's XES adapter drives it unchanged (a third column next to XES and PeerJS);
- the browser scenario serves a tiny page from bench/bare_page/ with it, to compare
  join-to-first-audio against XES's own page.

It trusts its clients completely: loopback benchmarks only, never a real deployment.

Usage: python bench/bare_relay.py [--host 127.0.0.1] [--port 0] [--page-dir DIR]
Prints `BARE READY http://HOST:PORT/` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import mimetypes
import os
import secrets
import signal
import time
from pathlib import Path

from picows import (
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

HERE = Path(__file__).resolve().parent


class Relay:
    """Rooms and peers: plain dicts, because there is nothing to check."""

    def __init__(self) -> None:
        self.peers: dict[str, Peer] = {}
        self.rooms: dict[str, dict[str, Peer]] = {}


class Peer(WSListener):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay
        self.id = secrets.token_urlsafe(16)  # 22 base64url characters, as XES ids are
        self.name = ""
        self.room: str | None = None
        self.transport: WSTransport | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport
        self.relay.peers[self.id] = self
        self.send({"type": "hello", "protocol": 1, "peer": self.id, "limits": {}})

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.leave("disconnected")
        self.relay.peers.pop(self.id, None)

    def send(self, message: dict[str, object]) -> None:
        if self.transport is not None:
            self.transport.send(WSMsgType.TEXT, json.dumps(message).encode())

    def leave(self, reason: str) -> None:
        if self.room is None:
            return
        room = self.relay.rooms.get(self.room, {})
        room.pop(self.id, None)
        if not room:
            self.relay.rooms.pop(self.room, None)
        for other in room.values():
            other.send({"type": "peer-left", "peer": self.id, "reason": reason})
        self.room = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        if frame.msg_type != WSMsgType.TEXT:
            return
        message = json.loads(frame.get_payload_as_bytes())
        kind = message.get("type")
        if kind == "signal":
            # The hot path: look the target up in the sender's room and stamp `from`.
            room = self.relay.rooms.get(self.room) if self.room else None
            target = room.get(message.get("to", "")) if room else None
            if target is not None:
                target.send({"type": "signal", "from": self.id, "data": message.get("data")})
        elif kind == "join" and self.room is None:
            self.room = str(message["room"])
            self.name = str(message.get("name", ""))
            room = self.relay.rooms.setdefault(self.room, {})
            present = list(room.values())
            room[self.id] = self
            self.send({
                "type": "joined", "room": self.room, "you": self.id,
                "host": present[0].id if present else self.id,
                "peers": [{"id": p.id, "name": p.name, "polite": False} for p in present],
                "rules": {"locked": False, "lobby": False, "password": False, "max_peers": 8},
                "ice_servers": ice_servers(self.id), "ice_expires_at": 0,
                "ice_transport_policy": ICE_POLICY, "match": False,
            })
            for other in present:
                other.send({"type": "peer-joined",
                            "peer": {"id": self.id, "name": self.name, "polite": True}})
        elif kind == "leave":
            room_id = self.room
            self.leave("left")
            if room_id is not None:
                self.send({"type": "left", "room": room_id})


# Filled in from the command line: what `joined` tells the page to use (TURN for relayed calls).
TURN_URL = ""
TURN_SECRET = b""
ICE_POLICY = "all"


def ice_servers(peer: str) -> list[dict[str, object]]:
    """TURN REST credentials (as coturn's use-auth-secret expects), the same scheme XES uses."""
    if not TURN_URL:
        return []
    username = f"{int(time.time()) + 3600}:{peer}"
    digest = hmac.new(TURN_SECRET, username.encode(), hashlib.sha1).digest()
    return [{"urls": [TURN_URL], "username": username,
             "credential": base64.b64encode(digest).decode()}]


def static_response(page_dir: Path, path: str) -> WSUpgradeResponse:
    """Serve one file of the tiny page; nothing else, nothing outside page_dir."""
    name = path.split("?", 1)[0].lstrip("/") or "index.html"
    target = (page_dir / name).resolve()
    if page_dir.resolve() not in target.parents or not target.is_file():
        refused: WSUpgradeResponse = WSUpgradeResponse.create_error_response(404, b"not found")
        return refused
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix in (".js", ".mjs"):
        kind = "text/javascript"  # browsers refuse to run an ES module served as anything else
    response: WSUpgradeResponse = WSUpgradeResponse.create_ok_response(
        target.read_bytes(), extra_headers={"Content-Type": kind, "Cache-Control": "no-store"})
    return response


async def serve(host: str, port: int, page_dir: Path) -> None:
    relay = Relay()

    def factory(request: WSUpgradeRequest) -> WSListener | WSUpgradeResponseWithListener:
        path = request.path.decode() if isinstance(request.path, bytes) else str(request.path)
        upgrade = request.headers.get("Upgrade", "")
        if path.split("?", 1)[0] == "/ws" and upgrade.lower() == "websocket":
            return Peer(relay)
        return WSUpgradeResponseWithListener(static_response(page_dir, path), None)

    server = await ws_create_server(factory, host, port)
    bound = server.sockets[0].getsockname()
    print(f"BARE READY http://{bound[0]}:{bound[1]}/", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    global TURN_URL, TURN_SECRET, ICE_POLICY
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--page-dir", type=Path, default=HERE / "bare_page")
    parser.add_argument("--turn-url", help="e.g. turn:127.0.0.1:3478?transport=udp")
    parser.add_argument("--turn-secret-file", type=Path, help="coturn's static-auth-secret")
    parser.add_argument("--relay-only", action="store_true",
                        help="recommend iceTransportPolicy 'relay' (a TURN-relayed call)")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop")
    args = parser.parse_args()
    if args.turn_url:
        TURN_URL = args.turn_url
        TURN_SECRET = args.turn_secret_file.read_text().strip().encode()
    ICE_POLICY = "relay" if args.relay_only else "all"
    if args.uvloop:
        import uvloop

        uvloop.install()
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(serve(args.host, args.port, args.page_dir))


if __name__ == "__main__":
    main()
