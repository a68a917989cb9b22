"""`/metrics` on the operator's port: what it counts, where it listens, what it never says."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.conftest import XesServerProcess, launch_xes_server
from tests.server.wsclient import Client, new_room
from tests.support.metrics import metrics_urls, scrape
from xes.cli import build_parser

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[XesServerProcess]:
    started = launch_xes_server(["--metrics-port", "0", "--node-id", "metrics-test"])
    yield started
    started.stop()


@pytest.fixture(scope="module")
def metrics_url(server: XesServerProcess) -> str:
    (url,) = metrics_urls(server.log)
    assert url.startswith("http://127.0.0.1:") and f":{server.port}/" not in url
    return url


async def test_metrics_count_what_happens(server: XesServerProcess, metrics_url: str) -> None:
    before = scrape(metrics_url)
    room = new_room()
    alice, bob = await Client.connect(server.ws_url), await Client.connect(server.ws_url)
    await alice.join(room, "Alice")
    await bob.join(room, "Bob")
    await alice.expect("peer-joined")
    for n in range(3):
        await alice.send({"type": "signal", "to": bob.peer, "data": {"candidate": f"c{n}"}})
        await bob.expect("signal")
    await alice.send(b"{not json")
    assert (await alice.expect("error"))["code"] == "bad-json"
    await alice.send({"type": "signal", "to": "nobody-at-all-xxxxxxxx", "data": {}})
    assert (await alice.expect("error"))["code"] == "peer-not-found"
    # A lost socket (close code 4000: the client resumes) detaches; the resume is counted.
    await bob.ws.close(4000)
    await alice.expect("peer-away")
    bob, answer = await bob.resume(server.ws_url)
    assert answer["type"] == "resumed"
    # Two strangers meet: one match.
    first, second = await Client.connect(server.ws_url), await Client.connect(server.ws_url)
    await first.match("First", direct=True)
    await first.expect("queued")
    await second.match("Second", direct=True)
    await second.expect("queued")
    await second.expect("joined")

    after = scrape(metrics_url)

    def grew(name: str) -> float:
        return after[name] - before.get(name, 0.0)

    assert grew("xes_connections_opened_total") == 5  # alice, bob twice, two strangers
    assert after["xes_connections"] >= 4
    assert grew("xes_relayed_messages_total") == 3
    assert grew('xes_errors_total{code="bad-json"}') == 1
    assert grew('xes_errors_total{code="peer-not-found"}') == 1
    assert grew('xes_errors_total{code="room-full"}') == 0  # every code is there from the start
    assert grew("xes_sessions_detached_total") == 1
    assert grew("xes_resumes_total") == 1
    assert grew("xes_matches_total") == 1
    assert after["xes_rooms"] >= 2
    assert after["xes_sessions"] >= after["xes_connections"]
    assert after['xes_info{node="metrics-test"}'] == 1
    assert after["process_resident_memory_bytes"] > 0
    assert "xes_redis_up" not in after  # no --redis: no Redis series at all


async def test_metrics_never_name_a_user(server: XesServerProcess, metrics_url: str) -> None:
    """Aggregates only: no peer id, room id, name or address in any series."""
    room = new_room()
    carol = await Client.connect(server.ws_url)
    await carol.join(room, "Carol Marker")
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        page = response.read().decode()
    for secret in (carol.peer, room, "Carol Marker", carol.token):
        assert secret not in page
    labels = {line.split("{", 1)[1].split("}", 1)[0] for line in page.splitlines()
              if "{" in line and not line.startswith("#")}
    assert all(label.split("=", 1)[0] in ("code", "node") for label in labels), labels


def test_metrics_are_not_on_the_public_port(server: XesServerProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(server.http_url + "/metrics", timeout=5)
    refused.value.close()
    assert refused.value.code == 404


def test_the_metrics_port_serves_healthz_and_nothing_else(metrics_url: str) -> None:
    base = metrics_url.removesuffix("/metrics")
    with urllib.request.urlopen(base + "/healthz", timeout=5) as response:
        assert (response.status, response.read()) == (200, b"ok\n")
    for path in ("/", "/ws", "/static/main.js"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path, timeout=5)
        refused.value.close()
        assert refused.value.code == 404


def test_metrics_listen_on_loopback_even_when_the_server_does_not() -> None:
    """An operator who opens --host to the world does not publish /metrics with it."""
    args = build_parser("serve").parse_args(["serve", "--host", "0.0.0.0", "--metrics-port", "9100"])
    assert (args.metrics_host, args.metrics_port) == ("127.0.0.1", 9100)
    assert build_parser("serve").parse_args(["serve"]).metrics_port is None  # off by default


def test_metrics_page_is_valid_exposition_format(metrics_url: str) -> None:
    """Every sample follows its own # HELP and # TYPE, with a known type and a number."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    typed: dict[str, str] = {}
    for line in lines:
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            assert not kind == "counter" or name.endswith("_total"), line
            typed[name] = kind
        elif line and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            assert name in typed, line
            float(line.rsplit(" ", 1)[1])
    assert json.dumps(typed)  # at least one family
    assert len(typed) >= 15
