"""One Redis connection driven without redis-py's per-command machinery, for the inbox path.

A cluster node writes its inbox batches and reads its own inbox once per event-loop turn, so at
10,000 relayed messages a second it makes thousands of Redis calls a second. Through
``Redis.pipeline()`` and ``Redis.xread`` each call also builds a pipeline object, borrows and
returns a pooled connection, checks its health and runs a response callback; on this path that
machinery cost more CPU than sending the commands and parsing the replies (bench/README.md,
"Clusters"). Here a batch is packed, sent and its replies read on one connection of its own, and
the replies come back in Redis's own (RESP2) shapes. Everything else in the cluster keeps the
ordinary client: it runs a few times a second, not per message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.typing import EncodableT

__all__ = ["DirectRedis"]


class DirectRedis:
    """Commands sent in batches on one dedicated connection, made on first use and made anew
    after any failure (redis-py's URL forms and options apply, as for the ordinary client)."""

    def __init__(self, url: str) -> None:
        # The pool only parses the URL and builds connections: none is ever borrowed from it.
        self._factory = ConnectionPool.from_url(url, protocol=2)
        self._connection: AbstractConnection | None = None

    async def execute(self, commands: Sequence[Sequence[EncodableT]]) -> list[Any]:
        """Send ``commands`` in one write and return their replies, in order.

        Raises:
            redis.RedisError: Redis is away, or answered one of them with an error. The
                connection is dropped either way (replies left unread would answer the next
                batch), and the next call connects again.
        """
        connection = self._connection
        if connection is None:
            factory = self._factory
            connection = self._connection = factory.connection_class(**factory.connection_kwargs)
        try:
            await connection.send_packed_command(connection.pack_commands(commands),
                                                 check_health=False)
            return [await connection.read_response() for _ in commands]
        except BaseException:
            self._connection = None
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
            raise

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.disconnect(nowait=True)
