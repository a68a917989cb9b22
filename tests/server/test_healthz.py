"""`GET /healthz`, the liveness check docs/deploy.md tells load balancers and monitors to use."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable

import pytest

from tests.conftest import XesServerProcess
from tests.support.metrics import metrics_urls, scrape
from tests.support.redis import RedisServer

pytestmark = pytest.mark.timeout(30)


def test_healthz_answers_200_ok_in_plain_text(xes_server: XesServerProcess) -> None:
    with urllib.request.urlopen(xes_server.http_url + "/healthz", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.read() == b"ok\n"


def test_healthz_ignores_a_query_string(xes_server: XesServerProcess) -> None:
    """Some monitors add a cache-busting query; the check must still answer."""
    with urllib.request.urlopen(xes_server.http_url + "/healthz?probe=1", timeout=5) as response:
        assert (response.status, response.read()) == (200, b"ok\n")


def _health(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, refused.read()


def _until(url: str, status: int, within: float) -> bytes:
    """Poll /healthz until it answers ``status`` (the probe runs every second); its body."""
    deadline = time.monotonic() + within
    while True:
        code, body = _health(url)
        if code == status:
            return body
        assert time.monotonic() < deadline, (code, body)
        time.sleep(0.1)


@pytest.mark.timeout(60)
def test_healthz_follows_redis(start_xes_server: Callable[..., XesServerProcess],
                               redis_server: RedisServer) -> None:
    """With --redis, a node that cannot reach Redis says so (503 and why), on the public port
    for load balancers and on the metrics port; it recovers by itself when Redis is back."""
    server = start_xes_server(["--redis", redis_server.url, "--metrics-port", "0"])
    (metrics,) = metrics_urls(server.log)
    assert _health(server.http_url) == (200, b"ok\n")
    assert scrape(metrics)["xes_redis_up"] == 1
    assert scrape(metrics)["xes_redis_roundtrip_seconds"] > 0
    redis_server.stop(kill=True)
    # Within the probe's second, its one-second timeout and the poll: the bound docs/deploy.md gives.
    body = _until(server.http_url, 503, within=4)
    assert body.startswith(b"redis unreachable") and redis_server.url.encode() not in body
    assert _health(metrics.removesuffix("/metrics"))[0] == 503
    assert scrape(metrics)["xes_redis_up"] == 0
    redis_server.start()
    assert _until(server.http_url, 200, within=4) == b"ok\n"
    assert scrape(metrics)["xes_redis_up"] == 1
    assert "redis unreachable" in server.log and "redis answers again" in server.log
    assert "redis://" not in server.log and f":{redis_server.port}" not in server.log
