"""A TCP proxy a test controls, to lose connections the way networks do.

Clients connect to ``proxy.port`` instead of the server; the proxy relays bytes both ways. Then:

- :meth:`TcpProxy.cut` with ``"reset"`` drops every open connection at once with a TCP reset
  (SO_LINGER 0) on both sides: no FIN, no WebSocket close frame; both ends learn at once that the
  connection is gone (a process killed, a NAT entry dropped and answered with RST).
- :meth:`TcpProxy.cut` with ``"blackhole"`` silently stops relaying and keeps the sockets open:
  neither end hears anything, as when Wi-Fi drops or a laptop sleeps. The server notices only by
  its heartbeat; the client only by its own timers. :meth:`TcpProxy.close` resets them later.
- ``refuse`` (a bool, settable at any time): new connections are reset at once, as while a
  network is down; set it back to False to let reconnects through.
- ``fallbacks``: where a new connection goes when the target refuses it (a server that died),
  tried in order, as a load balancer fails over to the next node of a cluster.

It runs its own event loop in a daemon thread, so sync tests (Playwright) and async tests use it
alike; every method is thread-safe. Use it as a context manager, or call :meth:`close`.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Sequence
from typing import Literal

__all__ = ["TcpProxy"]

_LINGER_ZERO = struct.pack("ii", 1, 0)  # close() then sends RST, not FIN


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        except OSError:
            pass  # already gone
    writer.transport.abort()


class TcpProxy:
    """Relays 127.0.0.1:``port`` to ``target_host``:``target_port``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int,
                 fallbacks: Sequence[tuple[str, int]] = ()) -> None:
        self.target = (target_host, target_port)
        self.fallbacks = list(fallbacks)
        self.refuse = False
        self.accepted = 0  # connections accepted and relayed so far
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._held: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="tcpproxy")
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0))
        self.port: int = self._server.sockets[0].getsockname()[1]

    def _call(self, coroutine):  # type: ignore[no-untyped-def]
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    @property
    def open_connections(self) -> int:
        """Connections being relayed now (not counting black-holed ones)."""
        return len(self._pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            _reset(writer)
            return
        for target in (self.target, *self.fallbacks):
            try:
                up_reader, up_writer = await asyncio.open_connection(*target)
                break
            except OSError:
                continue
        else:
            _reset(writer)
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        self.accepted += 1
        await asyncio.gather(self._pump(reader, up_writer, pair), self._pump(up_reader, writer, pair),
                             return_exceptions=True)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        try:
            while pair in self._pairs:
                data = await reader.read(65536)
                if pair not in self._pairs:
                    return  # cut meanwhile: these bytes are lost, as on a dead network
                if not data:  # an orderly FIN from one side: pass it on
                    if writer.can_write_eof():
                        writer.write_eof()
                    else:
                        writer.close()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            for side in pair:
                _reset(side)
            self._pairs.discard(pair)

    def cut(self, how: Literal["reset", "blackhole"] = "reset") -> int:
        """Lose every connection open now (see the module docstring); returns how many."""
        async def cut() -> int:
            pairs, self._pairs = list(self._pairs), set()
            for pair in pairs:
                if how == "reset":
                    for side in pair:
                        _reset(side)
                else:
                    self._held.append(pair)
            return len(pairs)
        result: int = self._call(cut())
        return result

    def close(self) -> None:
        """Stop listening and reset everything, black-holed connections included."""
        if self._loop.is_closed():
            return

        async def close() -> None:
            self._server.close()
            for pair in [*self._pairs, *self._held]:
                for side in pair:
                    _reset(side)
            self._pairs.clear()
            self._held.clear()
        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
