"""The Redis the cluster tests stand on is real, and its restart loses everything (no persistence)."""

from __future__ import annotations

import redis

from tests.support.redis import RedisServer


def test_redis_restart_comes_back_empty(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.set("xes:probe", b"1")
    assert client.get("xes:probe") == b"1"
    client.close()
    redis_server.restart()
    client = redis.Redis.from_url(redis_server.url)
    assert client.get("xes:probe") is None
    client.close()
