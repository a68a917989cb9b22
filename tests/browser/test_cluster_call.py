"""Browsers on different nodes of a cluster (issue 14), in real Chromium with a tone each.

Three people in one room, each reaching a different `xes serve --redis` node, hear each other.
Then the node holding one of them's socket is killed (`kill -9`) mid-call, and after it the node
owning the room: each time the pages concerned resume their sessions on a live node within the
grace; nobody's participant list drops anyone, no link is replaced, every tone is still heard
after each kill; and a newcomer can still join, on the last node, and is heard.

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


def wait_for_a_new_connection(balancer: TcpProxy, before: int, deadline: float) -> None:
    while balancer.accepted == before:
        assert time.time() < deadline, "the page did not connect again within the grace"
        time.sleep(0.05)


def kill_mid_call(cluster: XesCluster, node: int, pages: dict[str, Page], ids: dict[str, str],
                  resuming: dict[str, TcpProxy]) -> None:
    """`kill -9` one node mid-call. Each page in `resuming` (with the balancer it goes through)
    must connect again and resume its session within the grace; then the call must have gone on
    for everyone as if nothing happened (test_resume's check_call_went_on: same ids, same links,
    nobody dropped from any list, every tone heard after it, under a second of audio lost)."""
    before = audio_counters(pages)
    connections = {name: balancer.accepted for name, balancer in resuming.items()}
    began = time.time()
    cluster.kill(node)
    for name, balancer in resuming.items():
        wait_for_a_new_connection(balancer, connections[name], began + GRACE)
        pages[name].wait_for_function("() => window.xes.signallingState === 'open'", polling=50,
                                      timeout=CONNECT_TIMEOUT_MS)
    resumed_after = time.time() - began
    print(f"\nnode {node} killed: {', '.join(resuming)} resumed on other nodes within "
          f"{resumed_after:.2f} s")
    assert resumed_after < GRACE
    time.sleep(max(0.0, began + CUT_SECONDS / 2 - time.time()))
    during = audio_counters(pages)
    # By now every live node has noticed the death (and would have told the room, were it
    # going to): check_call_went_on looks at everything since the kill.
    time.sleep(max(0.0, began + max(NOTICED_WITHIN, CUT_SECONDS) - time.time()))
    lost = check_call_went_on(pages, ids, Cut(began, resumed_after, before, during))
    print(f"at most {lost:.0f} ms of audio lost around the kill")


def test_three_nodes_one_call_and_killed_nodes_go_unnoticed(
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
    by_name = dict(zip(pages, balancers, strict=True))

    # The node holding Cy's socket: Cy resumes on the second node, the owner keeps the room.
    kill_mid_call(cluster, 2, pages, ids, {"Cy": by_name["Cy"]})
    # The node owning the room (and holding Ada's socket): the last node takes the room over,
    # every page resumes there (Bob's and Cy's sockets are closed with 1012: their home died).
    kill_mid_call(cluster, 0, pages, ids, by_name)

    newcomer = tone_person(NEWCOMER_TONE)
    join(newcomer, via(origins[1]), NEWCOMER)
    assert tones_by_name(newcomer, TONES) == {name: [tone] for name, tone in TONES.items()}
    for page in pages.values():
        assert tones_by_name(page, {NEWCOMER: NEWCOMER_TONE})[NEWCOMER] == [NEWCOMER_TONE]
