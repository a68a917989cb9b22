"""Coalescing a connection's outgoing messages: one write per connection per event-loop turn.

picows writes every ``send`` to its socket at once: one ``send`` system call per WebSocket
message. A call set-up sends several messages to one connection within one turn of the event
loop (ten trickled candidates that arrived in one read, ``peer-left`` and ``left``, a resume's
replay), and each system call on loopback also runs the receiving side's TCP input, which costs
more than building the frames. So the shell queues a connection's messages for the rest of the
turn and writes them together, framed here (server frames are unmasked: a 2-, 4- or 10-byte
header per message, RFC 6455 section 5.2). A single message still goes through picows's own
``send``.

Order holds: a connection's messages leave in the order they were queued, and whatever closes a
connection writes its queue first (:meth:`Outgoing.flush`), so a close frame never overtakes a
message sent before it. Frames picows writes itself (pings, pongs, close frames) go through the
same socket after anything already written, and asyncio's transport keeps what the socket did not
take in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Final, Generic, Protocol, TypeVar

from picows import WSMsgType, WSTransport

__all__ = ["Outgoing", "text_frames"]

_TEXT: Final = WSMsgType.TEXT
# FIN + text opcode, then the length: 7 bits, or 126 and 16 bits, or 127 and 64 bits.
_SHORT_HEADERS: Final = tuple(bytes((0x81, size)) for size in range(126))


def text_frames(messages: list[bytes]) -> bytes:
    """The bytes of one unmasked, unfragmented WebSocket text frame per message, in order."""
    parts: list[bytes] = []
    for message in messages:
        size = len(message)
        if size < 126:
            parts.append(_SHORT_HEADERS[size])
        elif size < 65536:
            parts.append(b"\x81\x7e" + size.to_bytes(2, "big"))
        else:
            parts.append(b"\x81\x7f" + size.to_bytes(8, "big"))
        parts.append(message)
    return b"".join(parts)


class Sink(Protocol):
    """What :class:`Outgoing` queues for: a connection with its socket and its queue."""

    transport: WSTransport
    queued: list[bytes] | None


SinkT = TypeVar("SinkT", bound=Sink)


class Outgoing(Generic[SinkT]):
    """The connections with queued messages, written out once per event-loop turn.

    ``fail`` is told of an exception writing one connection's queue (that connection only: the
    others are still written).
    """

    __slots__ = ("_waiting", "_scheduled", "_fail")

    def __init__(self, fail: Callable[[SinkT, Exception], None]) -> None:
        self._waiting: list[SinkT] = []
        self._scheduled = False
        self._fail = fail

    def send(self, sink: SinkT, message: bytes) -> None:
        """Queue ``message`` (one text message) for ``sink``; it leaves at the end of this turn."""
        queued = sink.queued
        if queued is not None:
            queued.append(message)
            return
        sink.queued = [message]
        self._waiting.append(sink)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self.flush_all)

    def flush_all(self) -> None:
        """Write every waiting connection's queue (the loop calls this once per turn)."""
        self._scheduled = False
        # Writing may close a connection (over its outgoing limit), whose room is then told:
        # those messages queue anew, for the next turn.
        waiting, self._waiting = self._waiting, []
        for sink in waiting:
            try:
                self.flush(sink)
            except Exception as exc:
                self._fail(sink, exc)

    @staticmethod
    def flush(sink: Sink) -> None:
        """Write ``sink``'s queue now (before a close frame, or at the end of the turn)."""
        queued = sink.queued
        if queued is None:
            return
        sink.queued = None
        transport = sink.transport
        if transport.is_close_frame_sent or transport.is_disconnected:
            return  # as picows's own send: nothing after a close (the outbox keeps it for resume)
        if len(queued) == 1:
            transport.send(_TEXT, queued[0])
            return
        socket = getattr(transport, "underlying_transport", None)
        if socket is not None:
            socket.write(text_frames(queued))
        else:  # a cluster node's stand-in for a socket elsewhere (server.cluster): one by one
            for message in queued:
                transport.send(_TEXT, message)
