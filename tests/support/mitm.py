"""A real man in the middle, for tests only: a malicious signalling proxy in front of `xes serve`
with an aiortc media relay of its own.

This is the one attack a signalling server can make on DTLS-SRTP: it stands where the server
stands, so browsers load the page from it and signal through it. For each link it is told to
intercept (by the two display names), it keeps the two browsers' descriptions and candidates away
from each other and instead answers each one itself, with a different aiortc connection and
certificate per side: Ada does DTLS with `toward_first`, Bob with `toward_second`. Audio frames
are forwarded both ways, so the call works and both sides hear each other. On the data channel it
relays the safety-code messages and does the best it can: it rewrites each side's attestation
about the intercepted link into what the other side expects (it knows every fingerprint, and both
nonces from the relayed reveals). What it cannot do is make the two ends' codes equal: each side
hashes the certificates it really talks to.

Everything else (other links, every other message, the page's files) passes through unchanged.
The proxy runs its own event loop in a thread, so sync Playwright tests can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Awaitable
from dataclasses import dataclass, field

import msgspec
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from av.frame import Frame
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from xes.core.verification import link_digest
from xes.peer.connection import DATA_CHANNEL_ID, DATA_CHANNEL_LABEL, _parse_candidate
from xes.peer.gathering import loopback_gathering
from xes.peer.verify import certificate_fingerprints
from xes.protocol import messages as m

__all__ = ["MitmProxy"]

_PASSED_HEADERS = ("Content-Type", "Content-Security-Policy", "Cache-Control", "ETag", "Location")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Pass redirects (``/new`` → ``/r/<id>``) on to the browser instead of following them."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


class ForwardedAudio(MediaStreamTrack):
    """An outgoing track that plays whatever the other side's incoming track delivers."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.source: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

    async def recv(self) -> Frame:
        source = await self.source
        try:
            return await source.recv()
        except MediaStreamError:
            self.stop()
            raise


@dataclass
class Side:
    """The middleman's connection toward one browser, impersonating the other one."""

    browser: str
    """The peer id of the browser this side talks to."""
    impersonates: str
    pc: RTCPeerConnection
    outgoing: ForwardedAudio
    channel: RTCDataChannel | None = None
    inbox: asyncio.Queue[dict[str, object]] = field(default_factory=asyncio.Queue)
    revealed_nonce: str | None = None
    """The nonce this side's browser revealed (relayed to the other browser)."""
    unsent: list[str] = field(default_factory=list)
    """Messages for this side's browser that came before its channel opened."""


class Interception:
    """One intercepted link: two aiortc connections, audio and data forwarded between them."""

    def __init__(self, proxy: MitmProxy, offerer: str, answerer: str) -> None:
        self.proxy = proxy
        self.sides = {
            offerer: self._side(offerer, answerer),
            answerer: self._side(answerer, offerer),
        }
        self.workers = [asyncio.ensure_future(proxy.guard(self._work(side)))
                        for side in self.sides.values()]

    def _side(self, browser: str, impersonates: str) -> Side:
        side = Side(browser, impersonates, RTCPeerConnection(RTCConfiguration(iceServers=[])),
                    ForwardedAudio())
        side.pc.addTrack(side.outgoing)

        @side.pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                other = self.sides[side.impersonates]
                if not other.outgoing.source.done():
                    other.outgoing.source.set_result(track)

        return side

    def _open_channel(self, side: Side) -> None:
        channel = side.pc.createDataChannel(DATA_CHANNEL_LABEL, negotiated=True, id=DATA_CHANNEL_ID)
        side.channel = channel

        @channel.on("message")
        def _message(raw: object) -> None:
            if isinstance(raw, str):
                self._relay(side, raw)

        @channel.on("open")
        def _opened() -> None:
            for raw in side.unsent:
                channel.send(raw)
            side.unsent.clear()

    def from_browser(self, browser: str, data: dict[str, object]) -> None:
        self.sides[browser].inbox.put_nowait(data)

    async def start_offer_toward(self, browser: str) -> None:
        """The middleman offers to `browser` as if it were the other one (the newcomer)."""
        side = self.sides[browser]
        self._open_channel(side)
        with loopback_gathering(True):
            await side.pc.setLocalDescription(await side.pc.createOffer())
        self._send(side, {"description": {"type": "offer", "sdp": side.pc.localDescription.sdp}})

    async def _work(self, side: Side) -> None:
        pending: list[dict[str, object]] = []
        while True:
            data = await side.inbox.get()
            if side.pc.signalingState == "closed":
                continue  # the browser hung up (its page closed); its late signals change nothing
            description = data.get("description")
            if isinstance(description, dict):
                kind, sdp = description["type"], description["sdp"]
                await side.pc.setRemoteDescription(RTCSessionDescription(sdp, kind))
                for candidate in pending:
                    await self._add_candidate(side, candidate)
                pending.clear()
                if kind == "offer":
                    # A browser offering to another browser adds the data channel in a second
                    # offer, once the voice flows (docs/verification.md): our end comes with it.
                    if side.channel is None and "\nm=application " in sdp:
                        self._open_channel(side)
                    with loopback_gathering(True):
                        await side.pc.setLocalDescription(await side.pc.createAnswer())
                    answer = {"type": "answer", "sdp": side.pc.localDescription.sdp}
                    self._send(side, {"description": answer})
            elif "candidate" in data:
                if side.pc.remoteDescription is None:
                    pending.append(data)
                else:
                    await self._add_candidate(side, data)

    @staticmethod
    async def _add_candidate(side: Side, data: dict[str, object]) -> None:
        raw = data.get("candidate")
        candidate = None if raw is None else msgspec.convert(raw, m.IceCandidate)
        parsed = _parse_candidate(candidate)
        if parsed is None or isinstance(parsed, RTCIceCandidate):
            await side.pc.addIceCandidate(parsed)

    def _send(self, side: Side, data: dict[str, object]) -> None:
        """Signal to the side's browser, stamped as coming from the one we impersonate."""
        self.proxy.inject(side.browser, {"type": "signal", "from": side.impersonates, "data": data})

    def _relay(self, side: Side, raw: str) -> None:
        """A data channel message from `side`'s browser, passed on to the other browser."""
        other = self.sides[side.impersonates]
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if message.get("type") == "reveal":
            side.revealed_nonce = message.get("nonce")
        elif message.get("type") == "attest":
            message["links"] = [self._forge(side, other, link) for link in message["links"]]
            raw = json.dumps(message)
        if other.channel is not None and other.channel.readyState == "open":
            other.channel.send(raw)
        else:
            other.unsent.append(raw)

    def _forge(self, side: Side, other: Side, link: dict[str, object]) -> dict[str, object]:
        """`side`'s browser attests its (intercepted) link to the other browser: rewrite it
        into what the other browser itself computed for that link."""
        if link.get("peer") != other.browser:
            return link
        fingerprints = certificate_fingerprints(other.pc)
        if fingerprints is None or side.revealed_nonce is None or other.revealed_nonce is None:
            return link
        middle, browser = fingerprints
        digest = link_digest((browser, other.revealed_nonce), (middle, side.revealed_nonce))
        return {"peer": other.browser, "fingerprints": [middle, browser], "digest": digest}

    async def close(self) -> None:
        for worker in self.workers:
            worker.cancel()
        for side in self.sides.values():
            side.outgoing.stop()
            await side.pc.close()


class MitmProxy:
    """The malicious server: `http_url` is where the browsers go instead of the real one.

    Args:
        upstream: The real server's http URL.
        intercept: The two display names whose link to take over.
    """

    def __init__(self, upstream: str, intercept: tuple[str, str]) -> None:
        self.upstream = upstream.rstrip("/")
        self.intercept_names = set(intercept)
        self.http_url = ""
        self.names: dict[str, str] = {}
        self.clients: dict[str, ServerConnection] = {}
        self.interceptions: dict[frozenset[str], Interception] = {}
        self.errors: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def __enter__(self) -> MitmProxy:
        self._thread.start()
        if not self._ready.wait(15):
            raise RuntimeError("the MITM proxy did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(15)

    @property
    def intercepted(self) -> int:
        """How many links were taken over so far."""
        return len(self.interceptions)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server: Server
        async with serve(self._client, "127.0.0.1", 0, process_request=self._http) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.http_url = f"http://127.0.0.1:{port}"
            self._ready.set()
            await self._stop.wait()
            for interception in self.interceptions.values():
                await interception.close()

    async def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.path == "/ws":
            return None
        status, headers, body = await asyncio.to_thread(self._fetch, request.path)
        passed = [(name, value.replace(self.upstream, self.http_url)) for name, value in headers
                  if name in _PASSED_HEADERS]
        return Response(status, "", Headers([*passed, ("Content-Length", str(len(body)))]), body)

    def _fetch(self, path: str) -> tuple[int, list[tuple[str, str]], bytes]:
        try:
            with _OPENER.open(self.upstream + path, timeout=10) as answer:
                return answer.status, list(answer.headers.items()), answer.read()
        except urllib.error.HTTPError as error:
            return error.code, list(error.headers.items()), error.read()

    async def _client(self, browser: ServerConnection) -> None:
        upstream_url = self.upstream.replace("http://", "ws://", 1) + "/ws"
        async with connect(upstream_url) as server:
            me: list[str] = []
            down = asyncio.ensure_future(self._downstream(server, browser, me))
            try:
                async for frame in browser:
                    await self._upstream(str(frame), server, me)
            finally:
                down.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await down

    async def _downstream(self, server: ClientConnection, browser: ServerConnection,
                          me: list[str]) -> None:
        async for frame in server:
            message = json.loads(frame)
            if message["type"] in ("hello", "joined") and (you := message.get(
                    "peer" if message["type"] == "hello" else "you")):
                me[:] = [you]
                self.clients[you] = browser
            if message["type"] == "joined":
                for peer in message["peers"]:
                    self.names[peer["id"]] = peer["name"]
            elif message["type"] == "peer-joined":
                self.names[message["peer"]["id"]] = message["peer"]["name"]
            await browser.send(frame)

    async def _upstream(self, frame: str, server: ClientConnection, me: list[str]) -> None:
        message = json.loads(frame)
        if message.get("type") in ("join", "match") and me:
            self.names[me[0]] = message.get("name", "")
        if message.get("type") == "signal" and me and self._targets(me[0], message["to"]):
            pair = frozenset((me[0], message["to"]))
            interception = self.interceptions.get(pair)
            data = message["data"]
            if interception is None:
                # The first signal of a link is the newcomer's offer (docs/protocol.md).
                interception = Interception(self, me[0], message["to"])
                self.interceptions[pair] = interception
                asyncio.ensure_future(self.guard(interception.start_offer_toward(message["to"])))
            interception.from_browser(me[0], data)
            return
        await server.send(frame)

    def _targets(self, sender: str, receiver: str) -> bool:
        return {self.names.get(sender), self.names.get(receiver)} == self.intercept_names

    async def guard(self, work: Awaitable[object]) -> None:
        """Run `work`, keeping any error for the test to report (a test double never hides one)."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a test double: record, the test reports it
            self.errors.append(repr(error))

    def inject(self, browser: str, message: dict[str, object]) -> None:
        """Send a message to a browser as if the server had sent it."""
        connection = self.clients.get(browser)
        if connection is not None:
            asyncio.ensure_future(self.guard(connection.send(json.dumps(message))))
