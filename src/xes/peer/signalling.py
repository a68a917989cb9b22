"""The signalling WebSocket client: JSON objects in and out, nothing about rooms.

It speaks docs/protocol.md's transport: one text frame per JSON object, no ``Origin`` header
(we are not a browser), automatic pongs to the server's heartbeat pings. It uses picows's
client because the server already depends on picows, so the ``peer`` extra adds nothing for it.

Messages are plain ``dict``s: :class:`xes.peer.peer.Peer` reads the few fields it needs and
ignores unknown ones, as the protocol asks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from typing import Any

import picows

from xes.peer.errors import ConnectionLost, ServerProtocolError, ServerUnreachable

__all__ = ["Message", "SignallingClient"]

logger = logging.getLogger(__name__)

Message = dict[str, Any]
"""One decoded protocol message: a JSON object with a string field ``type``."""

_CLOSE_REASONS = {
    1000: "the server closed the connection",
    1001: "the server is going away",
    1009: "a message was over the server's hard size cap",
    4002: "too many refused messages in a row",
    4008: "heartbeat lost",
    4029: "message rate over the server's limit",
}


class _Listener(picows.WSListener):
    """Feeds decoded frames into an asyncio queue; ``None`` marks the end of the stream."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self.close_code: int | None = None
        self._fragments: list[bytes] = []

    def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
        msg_type = frame.msg_type
        if msg_type == picows.WSMsgType.CLOSE:
            payload = frame.get_payload_as_bytes()
            # Read the code from the payload: picows's enum has no members for 4xxx codes.
            if len(payload) >= 2:
                self.close_code = struct.unpack("!H", payload[:2])[0]
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
        raw = b"".join(self._fragments)
        self._fragments = []
        try:
            message = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            logger.warning("! ignoring a frame that is not JSON (%d bytes)", len(raw))
            return
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            logger.warning("! ignoring a message without a string 'type'")
            return
        self.inbox.put_nowait(message)

    def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
        self.inbox.put_nowait(None)


class SignallingClient:
    """One WebSocket to an XES server.

    Use :meth:`connect`, then :meth:`send` and :meth:`receive`; :meth:`close` when done.
    """

    def __init__(self, transport: picows.WSTransport, listener: _Listener, hello: Message):
        self._transport = transport
        self._listener = listener
        self.hello = hello
        """The server's ``hello`` message (``peer`` is our id, ``limits`` the limits in force)."""

    @property
    def peer_id(self) -> str:
        """Our peer id for this connection, assigned by the server."""
        return str(self.hello["peer"])

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
        assert isinstance(listener, _Listener)
        client = cls(transport, listener, hello={})
        try:
            async with asyncio.timeout(timeout):
                hello = await client.receive()
        except TimeoutError:
            client.abort()
            raise ServerUnreachable(f"{ws_url} sent no hello within {timeout:g} s") from None
        except ConnectionLost as error:
            raise ServerUnreachable(f"{ws_url} closed the connection at once: {error}") from None
        if hello.get("type") != "hello" or not isinstance(hello.get("peer"), str):
            client.abort()
            raise ServerProtocolError(f"expected hello from {ws_url}, got {hello.get('type')!r}")
        if hello.get("protocol") != 1:
            client.abort()
            raise ServerProtocolError(
                f"{ws_url} speaks protocol {hello.get('protocol')!r}; this client speaks 1"
            )
        client.hello = hello
        return client

    def send(self, message: Message) -> None:
        """Send one message (a JSON object with ``type``).

        Raises:
            ConnectionLost: If the WebSocket is already closed.
        """
        if self._transport.is_disconnected or self._transport.is_close_frame_sent:
            raise ConnectionLost("the signalling connection is closed", self._listener.close_code)
        data = json.dumps(message, separators=(",", ":")).encode()
        self._transport.send(picows.WSMsgType.TEXT, data)

    async def receive(self) -> Message:
        """The next message from the server.

        Raises:
            ConnectionLost: When the WebSocket has closed (``close_code`` says why).
        """
        message = await self._listener.inbox.get()
        if message is None:
            self._listener.inbox.put_nowait(None)  # later calls see the end too
            code = self._listener.close_code
            reason = _CLOSE_REASONS.get(code or 0, "the connection to the server broke")
            suffix = f" (close code {code})" if code is not None else ""
            raise ConnectionLost(reason + suffix, code)
        return message

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
