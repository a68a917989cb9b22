"""Browsers on different nodes of a cluster (issue 14), in real Chromium with a tone each.

Three people in one room, each reaching a different `xes serve --redis` node, hear each other.
Then the node holding one of them's socket is killed (`kill -9`) mid-call: that page resumes its
session on another node within the grace; nobody's participant list drops anyone, no link is
replaced, every tone is still heard after the kill, and a newcomer can still join and is heard.

Each page reaches the cluster through a TCP proxy of its own (tests/support/tcpproxy.py) standing
for a load balancer: it relays to that page's node, and fails over to the other nodes when that
node refuses a connection. All pages are contexts of one Chromium (tests/browser/conftest.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import pytest
from playwright.sync_api import Page

from tests.browser.test_call import CONNECT_TIMEOUT_MS, join, open_new_room, tones_by_name
from tests.browser.test_resume import (
    _WATCH_JS,
    CUT_SECONDS,
    TONES,
    Cut,
    Origin,
    audio_counters,
    check_call_went_on,
    wait_until_everyone_hears,
)
from tests.cluster.conftest import GRACE
from tests.support.cluster import XesCluster
from tests.support.tcpproxy import TcpProxy
from xes.server.cluster import NODE_TTL_MS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]

NEWCOMER, NEWCOMER_TONE = "Dee", 1320.0
# A dead node's liveness key expires after NODE_TTL_MS, and every node checks each second: past
# this (with slack for a loaded machine) every live node has acted on the death.
NOTICED_WITHIN = NODE_TTL_MS / 1000 + 3.0


@pytest.fixture
def balanced(start_cluster: Callable[..., XesCluster]) -> Iterator[tuple[XesCluster, list[TcpProxy]]]:
    """Three nodes, and per node a balancer in front of it that fails over to the others (the
    last node's to the middle one first, so that its clients resume on a node that does not own
    the room)."""
    cluster = start_cluster()
    nodes = [cluster.node(k) for k in range(3)]
    with ExitStack() as stack:
        balancers = [stack.enter_context(TcpProxy(
            "127.0.0.1", node.port,
            fallbacks=[("127.0.0.1", other.port) for other in reversed(nodes) if other is not node]))
            for node in nodes]
        yield cluster, balancers


def wait_for_a_new_connection(balancer: TcpProxy, before: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while balancer.accepted == before:
        assert time.monotonic() < deadline, "the page never connected again"
        time.sleep(0.05)


def test_three_nodes_one_call_and_a_killed_node_goes_unnoticed(
    balanced: tuple[XesCluster, list[TcpProxy]], tone_person: Callable[[float], Page]
) -> None:
    cluster, balancers = balanced
    origins = [Origin(f"http://127.0.0.1:{balancer.port}") for balancer in balancers]
    pages = {name: tone_person(tone) for name, tone in TONES.items()}  # Ada, Bob, Cy
    room_url = open_new_room(pages["Ada"], origins[0])

    def via(origin: Origin) -> str:
        return room_url.replace(origins[0].http_url, origin.http_url, 1)

    for (name, page), origin in zip(pages.items(), origins, strict=True):
        join(page, via(origin), name)  # Ada on the first node (its owner), Bob, Cy on the third
    wait_until_everyone_hears(pages)
    ids = {name: page.evaluate("window.xes.me.id") for name, page in pages.items()}
    for page in pages.values():
        page.evaluate(_WATCH_JS)

    before = audio_counters(pages)
    connections = balancers[2].accepted
    began = time.time()
    cluster.kill(2)  # Cy's node, mid-call
    wait_for_a_new_connection(balancers[2], connections, GRACE)
    pages["Cy"].wait_for_function("() => window.xes.signallingState === 'open'", polling=50,
                                  timeout=CONNECT_TIMEOUT_MS)
    resumed_after = time.time() - began
    print(f"\nCy's page resumed on another node {resumed_after:.2f} s after its node was killed")
    assert resumed_after < GRACE
    time.sleep(max(0.0, began + CUT_SECONDS / 2 - time.time()))
    during = audio_counters(pages)
    # By now every live node has noticed the death (and would have told the room, were it
    # going to): check_call_went_on looks at everything since the kill.
    time.sleep(max(0.0, began + max(NOTICED_WITHIN, CUT_SECONDS) - time.time()))
    lost = check_call_went_on(pages, ids, Cut(began, resumed_after, before, during))
    print(f"at most {lost:.0f} ms of audio lost around the kill")

    newcomer = tone_person(NEWCOMER_TONE)
    join(newcomer, via(origins[1]), NEWCOMER)
    assert tones_by_name(newcomer, TONES) == {name: [tone] for name, tone in TONES.items()}
    for page in pages.values():
        assert tones_by_name(page, {NEWCOMER: NEWCOMER_TONE})[NEWCOMER] == [NEWCOMER_TONE]
