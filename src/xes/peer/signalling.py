"""The signalling WebSocket client: protocol messages in and out, nothing about rooms.

It speaks docs/protocol.md's transport: one text frame per JSON object, no ``Origin`` header
(we are not a browser), automatic pongs to the server's heartbeat pings. It uses picows's
client because the server already depends on picows, so the ``peer`` extra adds nothing for it.

Messages are the server's own structs (:mod:`xes.protocol.messages`): client messages are
encoded with :func:`~xes.protocol.messages.encode_client`, and every frame from the server is
decoded with :func:`~xes.protocol.messages.decode_server` into the ``ServerMessage`` union, or
``UnknownMessage`` for a type this client does not know (which the caller ignores).
"""

from __future__ import annotations

import asyncio
import logging
from typing import assert_never

import msgspec
import picows

from xes.peer.errors import ConnectionLost, ServerProtocolError, ServerUnreachable
from xes.protocol import messages as m
from xes.protocol.codes import CloseCode

__all__ = ["Incoming", "SignallingClient", "close_reason"]

logger = logging.getLogger(__name__)

Incoming = m.ServerMessage | m.UnknownMessage
"""One decoded server message."""


def close_reason(code: int | None) -> str:
    """Why the server closed the connection, in words, from its close code (None: no close frame)."""
    if code is None:
        return "the connection to the server broke"
    try:
        known = CloseCode(code)
    except ValueError:
        return f"the server closed the connection (close code {code})"
    match known:
        case CloseCode.NORMAL:
            reason = "the server closed the connection"
        case CloseCode.GOING_AWAY:
            reason = "the server stopped hearing from us (heartbeat lost)"
        case CloseCode.MESSAGE_TOO_BIG:
            reason = "a message was over the server's hard size cap"
        case CloseCode.TOO_MANY_ERRORS:
            reason = "too many refused messages in a row"
        case CloseCode.FLOOD:
            reason = "message rate over the server's limit"
        case CloseCode.NOT_READING:
            reason = "this client did not read the server's messages (over 1 MiB waiting)"
        case CloseCode.INTERNAL_ERROR:
            reason = "the server hit an unexpected error"
        case CloseCode.SERVICE_RESTART:
            reason = "the server is restarting"
        case CloseCode.REPLACED:
            reason = "another connection resumed this session"
        case _:
            assert_never(known)
    return f"{reason} (close code {code})"


class _Listener(picows.WSListener):
    """Feeds whole text messages (as bytes) into an asyncio queue; ``None`` marks the end."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.close_code: int | None = None
        self._fragments: list[bytes] = []

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == picows.WSMsgType.CLOSE:
            payload = frame.get_payload_as_bytes()
            # Read the code from the payload: picows's enum has no members for 4xxx codes.
            if len(payload) >= 2:
                self.close_code = int.from_bytes(payload[:2], "big")
            transport.send_close(picows.WSCloseCode.OK)
            transport.disconnect()
            return
        if msg_type == picows.WSMsgType.TEXT:
            self._fragments = [frame.get_payload_as_bytes()]
        elif msg_type == picows.WSMsgType.CONTINUATION and self._fragments:
            self._fragments.append(frame.get_payload_as_bytes())
        else:
            return  # binary frames are not part of the protocol; pings are answered by picows
        if not frame.fin:
            return
        frame_bytes = b"".join(self._fragments)
        self._fragments = []
        self.inbox.put_nowait(frame_bytes)  # decoded by the reader, which can report errors

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.inbox.put_nowait(None)


class SignallingClient:
    """One WebSocket to an XES server.

    Use :meth:`connect`, then :meth:`send` and :meth:`receive`; :meth:`close` when done.
    """

    def __init__(self, transport: picows.WSTransport, listener: _Listener) -> None:
        self._transport = transport
        self._listener = listener
        self._hello: m.Hello | None = None

    @property
    def hello(self) -> m.Hello:
        """The server's ``hello`` message (``peer`` is our id, ``limits`` the limits in force)."""
        if self._hello is None:
            raise ServerProtocolError("no hello from the server yet")
        return self._hello

    @property
    def peer_id(self) -> str:
        """Our peer id for this connection, assigned by the server."""
        return self.hello.peer

    @classmethod
    async def connect(cls, ws_url: str, timeout: float = 10.0) -> SignallingClient:
        """Open the WebSocket and wait for the server's ``hello``.

        Raises:
            ServerUnreachable: If the connection or the handshake fails, or no ``hello`` comes
                within `timeout` seconds.
            ServerProtocolError: If the first message is not a protocol-1 ``hello``.
        """
        try:
            async with asyncio.timeout(timeout):
                transport, listener = await picows.ws_connect(
                    _Listener, ws_url, websocket_handshake_timeout=timeout,
                    max_frame_size=1 << 20,
                )
        except TimeoutError:
            raise ServerUnreachable(f"no answer from {ws_url} within {timeout:g} s") from None
        except picows.WSError as error:
            raise ServerUnreachable(f"{ws_url} refused the WebSocket: {error}") from None
        except OSError as error:
            raise ServerUnreachable(f"cannot reach {ws_url}: {error.strerror or error}") from None
        if not isinstance(listener, _Listener):
            # picows hands back no listener when the connection dies during the handshake.
            transport.disconnect(graceful=False)
            raise ServerUnreachable(f"{ws_url} closed the connection during the handshake")
        client = cls(transport, listener)
        try:
            async with asyncio.timeout(timeout):
                hello = await client.receive()
        except TimeoutError:
            client.abort()
            raise ServerUnreachable(f"{ws_url} sent no hello within {timeout:g} s") from None
        except ConnectionLost as error:
            raise ServerUnreachable(f"{ws_url} closed the connection at once: {error}") from None
        except ServerProtocolError as error:
            client.abort()
            raise ServerProtocolError(f"expected hello from {ws_url}: {error}") from None
        if not isinstance(hello, m.Hello):
            client.abort()
            raise ServerProtocolError(f"expected hello from {ws_url}, got {_type_of(hello)!r}")
        if hello.protocol != m.PROTOCOL_VERSION:
            client.abort()
            raise ServerProtocolError(
                f"{ws_url} speaks protocol {hello.protocol}; this client speaks "
                f"{m.PROTOCOL_VERSION}"
            )
        client._hello = hello
        return client

    def send(self, message: m.ClientMessage) -> None:
        """Send one client message.

        Raises:
            ConnectionLost: If the WebSocket is already closed.
        """
        if self._transport.is_disconnected or self._transport.is_close_frame_sent:
            raise ConnectionLost("the signalling connection is closed", self._listener.close_code)
        self._transport.send(picows.WSMsgType.TEXT, m.encode_client(message))

    async def receive(self) -> Incoming:
        """The next message from the server.

        Raises:
            ConnectionLost: When the WebSocket has closed (``close_code`` says why).
            ServerProtocolError: When a frame is not a message of docs/protocol.md (not JSON, or
                a known type with a missing or mistyped field). The connection stays usable.
        """
        frame = await self._listener.inbox.get()
        if frame is None:
            self._listener.inbox.put_nowait(None)  # later calls see the end too
            code = self._listener.close_code
            raise ConnectionLost(close_reason(code), code)
        try:
            return m.decode_server(frame)
        except msgspec.DecodeError as error:
            raise ServerProtocolError(f"unreadable message from the server: {error}") from None

    async def close(self) -> None:
        """Close the WebSocket politely (code 1000) and wait until it is down."""
        if not self._transport.is_disconnected:
            if not self._transport.is_close_frame_sent:
                self._transport.send_close(picows.WSCloseCode.OK)
            self._transport.disconnect()
            try:
                async with asyncio.timeout(2):
                    await self._transport.wait_disconnected()
            except TimeoutError:
                self._transport.disconnect(graceful=False)

    def abort(self) -> None:
        """Drop the connection at once, without a close handshake."""
        self._transport.disconnect(graceful=False)


def _type_of(message: Incoming) -> str:
    if isinstance(message, m.UnknownMessage):
        return message.type
    tag = type(message).__struct_config__.tag
    return tag if isinstance(tag, str) else type(message).__name__
