"""A TCP proxy the test controls, to break a client's connection to the server on purpose.

It forwards every connection to one target, byte for byte, from its own thread (with its own event
loop), so synchronous tests (Playwright) and asyncio tests alike can drive it::

    with TcpProxy("127.0.0.1", server.port) as proxy:
        page.goto(f"http://127.0.0.1:{proxy.port}/r/...")  # the page's origin is the proxy
        proxy.cut(then="refuse")  # every connection reset at once (RST to both sides, no
                                  # close frame), and new ones reset as soon as they arrive
        time.sleep(10)
        proxy.restore()      # forward again

    proxy.black_hole()       # the sockets stay open but nothing passes either way (a dead Wi-Fi)

A reset (SO_LINGER 0) is what a real network cut looks like to the server once the kernel notices:
no close frame, the TCP connection simply gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

__all__ = ["TcpProxy"]

T = TypeVar("T")
Mode = Literal["forward", "refuse", "black-hole"]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST instead of a FIN: the peer sees the connection broken."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class TcpProxy:
    """Listens on 127.0.0.1 (an ephemeral port) and forwards to `target_host`:`target_port`."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "forward"
        self.port = 0
        self.accepted = 0
        """Connections accepted so far (refused ones included)."""
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> TcpProxy:
        self._thread.start()
        self.port = self._run(self._listen())
        return self

    def close(self) -> None:
        """Reset every connection, stop listening and end the thread."""
        if not self._thread.is_alive():
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what the test does ---------------------------------------------------------------------

    def cut(self, *, then: Mode | None = None) -> int:
        """Reset every open connection, both sides, and switch to mode `then` ("refuse",
        "black-hole") in the same step, so no reconnection slips in between. Returns how many
        connections were cut."""
        return self._run(self._cut(then))

    def refuse(self) -> None:
        """From now on, reset new connections as soon as they are accepted."""
        self._set_mode("refuse")

    def black_hole(self) -> None:
        """From now on, pass nothing: open connections stay open but go silent, new ones are
        accepted and never connected through."""
        self._set_mode("black-hole")

    def restore(self) -> None:
        """Forward again (connections cut meanwhile stay cut)."""
        self._set_mode("forward")

    @property
    def open_connections(self) -> int:
        return len(self._pairs)

    # -- inside the proxy's thread --------------------------------------------------------------

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def _set_mode(self, mode: Mode) -> None:
        async def set_it() -> None:
            self.mode = mode

        self._run(set_it())

    async def _listen(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "refuse":
            _reset(writer)
            return
        if self.mode == "black-hole":
            await self._swallow(reader, writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for side in pair:
                side.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await reader.read(65536):
                if self.mode == "black-hole":
                    continue  # dropped on the floor, like packets into a dead link
                writer.write(data)
                await writer.drain()
        # One side finished: end the other the same way (a FIN for a FIN), unless cut already.
        if not writer.transport.is_closing():
            with contextlib.suppress(OSError):
                writer.write_eof()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while await reader.read(65536):
                if self.mode == "forward":
                    break
        _reset(writer)

    async def _cut(self, then: Mode | None = None) -> int:
        if then is not None:
            self.mode = then
        pairs = list(self._pairs)
        for pair in pairs:
            for side in pair:
                _reset(side)
        return len(pairs)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()
