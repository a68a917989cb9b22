"""The inbox path's own Redis connection (`xes.server.redis_direct`), on a real redis-server: a
batch's replies come back in order, an error reply or a lost Redis never shifts a later batch's
replies onto the wrong commands, and the connection is made again by itself."""

from __future__ import annotations

import pytest
import redis

from tests.support.redis import RedisServer
from xes.server.redis_direct import DirectRedis


async def test_replies_stay_with_their_commands_after_an_error_or_a_restart(
        redis_server: RedisServer) -> None:
    direct = DirectRedis(redis_server.url)
    try:
        assert await direct.execute([("SET", "a", "1"), ("INCR", "a"), ("GET", "a")]) == \
            [b"OK", 2, b"2"]

        # The second command fails: the batch raises, and its third reply is not left behind
        # to answer the next batch.
        with pytest.raises(redis.ResponseError):
            await direct.execute([("SET", "b", "x"), ("INCR", "b"), ("GET", "b")])
        assert await direct.execute([("GET", "a")]) == [b"2"]

        redis_server.restart()  # empty again (persistence off)
        with pytest.raises(redis.ConnectionError):
            await direct.execute([("GET", "a")])
        assert await direct.execute([("SET", "a", "3"), ("GET", "a")]) == [b"OK", b"3"]
    finally:
        await direct.aclose()
