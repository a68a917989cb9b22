"""Sessions outlive their socket (docs/protocol.md, "Sessions"): a real `xes serve`, real sockets,
and connections lost through a TCP proxy the test controls (tests/support/tcpproxy.py).

The server runs with a short grace (3 s) and cap (6 s) so that expiry is quick to observe; the
rules are the same at 20 s and 120 s. Times are measured on this process's monotonic clock from
the moment the room learns of the loss (`peer-away`), which is when the server detached the
session: with a reset the server hears of the cut at once.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator

import pytest
import websockets

from tests.conftest import launch_xes_server
from tests.server.wsclient import Client, new_room, resume_session
from tests.support.cluster import Service, running_cluster
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.timeout(60)

GRACE, CAP = 3.0, 6.0
TOLERANCE = 1.0  # the bound: peer-left at grace ± 1 s


@pytest.fixture(scope="module", params=["one-process", "3-nodes-on-redis"])
def server(request: pytest.FixtureRequest) -> Iterator[Service]:
    """One `xes serve`, and a three-node cluster on Redis (tests/support/cluster.py) where each
    client, and each resume, lands on the next node: a session resumes on another node than the
    one its socket was lost on, and the rules are the same."""
    args = ["--resume-grace", str(GRACE), "--resume-cap", str(CAP), "--debug"]
    if request.param == "one-process":
        started = launch_xes_server(args)
        yield started
        started.stop()
    else:
        with running_cluster(request.getfixturevalue("postgres"), args=args) as cluster:
            yield cluster


@pytest.fixture
def proxy(server: Service) -> Iterator[TcpProxy]:
    with TcpProxy("127.0.0.1", server.port) as relay:
        yield relay


def proxied(proxy: TcpProxy) -> str:
    return f"ws://127.0.0.1:{proxy.port}/ws"


@pytest.fixture
def room() -> str:
    return new_room()


@pytest.fixture
async def trio(server: Service, proxy: TcpProxy, room: str
               ) -> AsyncIterator[tuple[Client, ...]]:
    """Ada (host) and Bob direct, Cy through the proxy, in ``room``, every link announced."""
    ada, bob = await Client.connect(server.ws_url), await Client.connect(server.ws_url)
    cy = await Client.connect(proxied(proxy))
    await ada.join(room, "Ada")
    await bob.join(room, "Bob")
    await ada.expect("peer-joined")
    assert (await cy.join(room, "Cy"))["type"] == "joined"
    for member in (ada, bob):
        await member.expect("peer-joined")
    yield ada, bob, cy


async def away(*members: Client, peer: str) -> float:
    """Every member is told `peer-away` for ``peer``; returns when the first heard it."""
    loop = asyncio.get_running_loop()
    heard = []
    for member in members:
        assert await member.expect("peer-away") == {"type": "peer-away", "peer": peer}
        heard.append(loop.time())
    return heard[0]


async def test_a_member_cut_without_a_close_frame_resumes_and_nobody_notices(
        server: Service, proxy: TcpProxy, trio: tuple[Client, ...]) -> None:
    ada, bob, cy = trio
    assert proxy.cut("reset") == 1
    await away(ada, bob, peer=cy.peer)
    for n in range(5):
        await ada.send({"type": "signal", "to": cy.peer, "data": {"n": n}})
    await bob.send({"type": "signal", "to": ada.peer, "data": {"still": "relayed"}})
    assert (await ada.expect("signal"))["data"] == {"still": "relayed"}

    back, resumed = await cy.resume(server.ws_url)
    assert resumed["type"] == "resumed" and resumed["peer"] == cy.peer and back.peer == cy.peer
    assert resumed["resume"] != cy.token
    assert resumed["last_seq"] == cy.last_seq + 5
    room = resumed["room"]
    assert room["you"] == cy.peer and room["host"] == ada.peer and room["away"] == []
    assert [(p["id"], p["name"]) for p in room["peers"]] == [(ada.peer, "Ada"), (bob.peer, "Bob")]
    assert resumed["lobby"] is None and resumed["queued"] is False
    # All five, in order, exactly once (Client.recv checks that seq goes up by one each time).
    for n in range(5):
        message = await back.expect("signal")
        assert message == {"type": "signal", "from": ada.peer, "data": {"n": n}}
    await back.silent()
    # The others saw it come back, and nothing else: no peer-left, no peer-joined.
    for member in (ada, bob):
        assert await member.recv() == {"type": "peer-back", "peer": cy.peer}
        await member.silent()
    # Normal traffic goes on, both ways, under the same id.
    await back.send({"type": "signal", "to": bob.peer, "data": {"from": "cy"}})
    assert await bob.recv() == {"type": "signal", "from": cy.peer, "data": {"from": "cy"}}
    await ada.send({"type": "signal", "to": cy.peer, "data": {"n": 5}})
    assert (await back.expect("signal"))["data"] == {"n": 5}


async def test_without_a_resume_the_room_is_told_when_the_grace_runs_out(
        proxy: TcpProxy, trio: tuple[Client, ...]) -> None:
    ada, bob, cy = trio
    proxy.cut("reset")
    detached = await away(ada, bob, peer=cy.peer)
    left = await ada.expect("peer-left", timeout=GRACE + 5)
    elapsed = asyncio.get_running_loop().time() - detached
    assert left == {"type": "peer-left", "peer": cy.peer, "reason": "disconnected"}
    assert await bob.recv() == left
    print(f"\npeer-left {elapsed:.2f} s after the cut (grace {GRACE} s)")
    assert abs(elapsed - GRACE) < TOLERANCE


async def test_failed_resumes_change_nothing_for_anyone(
        server: Service, proxy: TcpProxy, trio: tuple[Client, ...]) -> None:
    """Wrong token, unknown peer, a `resume` that is not the first message: refused, and the
    real owner can still resume (a wrong token locks nobody out)."""
    ada, bob, cy = trio
    proxy.cut("reset")
    await away(ada, bob, peer=cy.peer)
    gone = {"type": "error", "code": "session-gone",
            "message": "this session cannot be resumed: join or match afresh", "ref": "resume"}
    for _ in range(3):
        _, answer = await cy.resume(server.ws_url, token=ada.token)  # someone else's token
        assert answer == gone
    _, answer = await resume_session(server.ws_url, "U" * 22, cy.token, 0)  # unknown peer
    assert answer == gone
    late = await Client.connect(server.ws_url)
    await late.join(new_room(), "Late")
    await late.send({"type": "resume", "peer": cy.peer, "token": cy.token, "last_seq": 0})
    assert (await late.expect("error"))["code"] == "already-joined"
    for member in (ada, bob):
        await member.silent()
    back, resumed = await cy.resume(server.ws_url)
    assert resumed["type"] == "resumed" and resumed["peer"] == cy.peer


async def test_an_expired_session_cannot_be_resumed(
        server: Service, proxy: TcpProxy, trio: tuple[Client, ...], room: str) -> None:
    ada, bob, cy = trio
    proxy.cut("reset")
    await away(ada, bob, peer=cy.peer)
    await ada.expect("peer-left", timeout=GRACE + 5)
    await bob.expect("peer-left")
    fresh, answer = await cy.resume(server.ws_url)
    assert answer["type"] == "error" and answer["code"] == "session-gone"
    # It falls back to a normal join on the same connection, under its new id.
    joined = await fresh.join(room, "Cy")
    assert joined["type"] == "joined" and joined["you"] == fresh.peer != cy.peer
    for member in (ada, bob):
        assert (await member.expect("peer-joined"))["peer"]["id"] == fresh.peer


async def test_two_resumes_at_once_one_wins(
        server: Service, proxy: TcpProxy, trio: tuple[Client, ...]) -> None:
    """The first rotates the token, so the second, carrying the old one, is session-gone."""
    ada, bob, cy = trio
    proxy.cut("reset")
    await away(ada, bob, peer=cy.peer)
    first, second = await Client.connect(server.ws_url), await Client.connect(server.ws_url)
    resume = json.dumps({"type": "resume", "peer": cy.peer, "token": cy.token,
                         "last_seq": cy.last_seq})
    await asyncio.gather(first.send(resume), second.send(resume))
    answers = sorted([(await first.recv())["type"], (await second.recv())["type"]])
    assert answers == ["error", "resumed"]
    for member in (ada, bob):
        assert await member.recv() == {"type": "peer-back", "peer": cy.peer}
        await member.silent()


async def test_a_session_whose_replay_overflows_while_detached_ends_at_once(
        server: Service, proxy: TcpProxy, trio: tuple[Client, ...]) -> None:
    """256 KiB of replay: the fifth 64 KiB signal cannot be kept, so the session ends now
    (the room is told) rather than resume with a hole in it."""
    ada, bob, cy = trio
    proxy.cut("reset")
    detached = await away(ada, bob, peer=cy.peer)
    big = {"pad": "x" * 65_000}
    for _ in range(5):
        await ada.send({"type": "signal", "to": cy.peer, "data": big})
    left = await bob.expect("peer-left")
    assert left == {"type": "peer-left", "peer": cy.peer, "reason": "disconnected"}
    assert asyncio.get_running_loop().time() - detached < GRACE  # at once, not at the grace
    assert await ada.recv() == left
    _, answer = await cy.resume(server.ws_url)
    assert answer["type"] == "error" and answer["code"] == "session-gone"
    for member in (ada, bob):
        await member.silent()


async def test_a_resume_takes_over_a_socket_the_server_still_thinks_alive(
        server: Service, trio: tuple[Client, ...]) -> None:
    """A silent cut the server has not noticed yet: the resume wins, the old socket is closed
    with 4010, and the room notices nothing at all (it never saw the member away)."""
    ada, bob, cy = trio
    await ada.send({"type": "signal", "to": cy.peer, "data": {"n": 1}})
    await asyncio.sleep(0.2)  # delivered, but this client has not processed it
    back, resumed = await cy.resume(server.ws_url)
    assert resumed["type"] == "resumed" and resumed["last_seq"] == cy.last_seq + 1
    assert (await back.expect("signal"))["data"] == {"n": 1}
    await cy.expect("signal")  # the old socket had it too, then the close
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await cy.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4010
    assert closed.value.rcvd.reason == "replaced"
    for member in (ada, bob):
        await member.silent()


async def test_a_host_that_detaches_and_resumes_is_still_host(
        server: Service, proxy: TcpProxy) -> None:
    room = new_room()
    host = await Client.connect(proxied(proxy))
    guest = await Client.connect(server.ws_url)
    await host.join(room, "Host")
    await host.send({"type": "set-rules", "lobby": True})
    await host.expect("rules")
    await guest.join(room, "Guest")  # answered `lobby`
    assert (await host.expect("knock"))["peer"]["id"] == guest.peer
    await host.send({"type": "admit", "peer": guest.peer})
    await host.expect("peer-joined")
    await guest.expect("joined")
    late = await Client.connect(server.ws_url)
    proxy.cut("reset")
    assert await guest.expect("peer-away") == {"type": "peer-away", "peer": host.peer}
    # While the host is away, someone knocks: the knock waits for the host.
    assert (await late.join(room, "Late"))["type"] == "lobby"
    back, resumed = await host.resume(server.ws_url)
    room_state = resumed["room"]
    assert room_state["host"] == host.peer and room_state["rules"]["lobby"] is True
    assert room_state["knocks"] == [{"id": late.peer, "name": "Late"}]
    assert (await back.expect("knock"))["peer"]["id"] == late.peer  # replayed
    assert await guest.recv() == {"type": "peer-back", "peer": host.peer}
    await guest.silent()  # nobody was promoted: no `host` message
    await back.send({"type": "admit", "peer": late.peer})
    assert (await late.expect("joined"))["host"] == host.peer


async def test_a_queued_stranger_keeps_its_place_and_is_never_matched_while_away(
        server: Service, proxy: TcpProxy) -> None:
    """docs/protocol.md, "Queue and matches": a detached ticket keeps its place but is not
    eligible; on resume it is served at once."""
    away_one = await Client.connect(proxied(proxy))
    await away_one.match("Q", direct=True)
    await away_one.expect("queued")
    proxy.cut("reset")
    await asyncio.sleep(0.3)  # the server hears the reset
    other = await Client.connect(server.ws_url)
    await other.match("Q", direct=True)
    await other.expect("queued")
    await other.silent(0.5)  # not paired with someone who is not there
    back, resumed = await away_one.resume(server.ws_url)
    assert resumed["queued"] is True and resumed["room"] is None
    joined = await back.expect("joined")
    assert joined["match"] is True and [p["id"] for p in joined["peers"]] == []
    assert (await other.expect("joined"))["peers"][0]["id"] == away_one.peer


async def test_a_stranger_who_never_comes_back_is_never_matched(
        server: Service, proxy: TcpProxy) -> None:
    ghost = await Client.connect(proxied(proxy))
    await ghost.match("Q", direct=True)
    await ghost.expect("queued")
    proxy.cut("reset")
    await asyncio.sleep(0.3)
    waiting = await Client.connect(server.ws_url)
    await waiting.match("Q", direct=True)
    await waiting.expect("queued")
    await waiting.silent(GRACE + 0.5)  # the ghost's grace ran out meanwhile: nothing to see
    _, answer = await ghost.resume(server.ws_url)
    assert answer["code"] == "session-gone"
    newcomer = await Client.connect(server.ws_url)
    await newcomer.match("Q", direct=True)
    await newcomer.expect("queued")
    assert (await newcomer.expect("joined"))["peers"][0]["id"] == waiting.peer
    await waiting.expect("joined")


async def test_room_mates_still_hearing_a_member_keep_it_until_the_cap(
        server: Service, proxy: TcpProxy, trio: tuple[Client, ...]) -> None:
    """Ada reports every second that she still hears Cy: Cy outlives the grace (3 s), but not
    the cap (6 s after the cut). A stranger's reports count for nothing."""
    ada, bob, cy = trio
    stranger = await Client.connect(server.ws_url)
    await stranger.join(new_room(), "Stranger")
    proxy.cut("reset")
    detached = await away(ada, bob, peer=cy.peer)
    loop = asyncio.get_running_loop()

    async def report() -> None:
        while True:
            await ada.send({"type": "hearing", "peer": cy.peer})
            await stranger.send({"type": "hearing", "peer": cy.peer})
            await asyncio.sleep(1.0)

    reporting = asyncio.ensure_future(report())
    try:
        left = await bob.expect("peer-left", timeout=CAP + 5)
    finally:
        reporting.cancel()
    elapsed = loop.time() - detached
    assert left == {"type": "peer-left", "peer": cy.peer, "reason": "disconnected"}
    print(f"\nwith reports, peer-left {elapsed:.2f} s after the cut (grace {GRACE}, cap {CAP})")
    assert abs(elapsed - CAP) < TOLERANCE
    await stranger.silent()  # `hearing` is never answered


async def test_reports_from_outside_the_room_do_not_extend_the_grace(
        server: Service, proxy: TcpProxy, trio: tuple[Client, ...]) -> None:
    ada, bob, cy = trio
    stranger = await Client.connect(server.ws_url)
    await stranger.join(new_room(), "Stranger")
    proxy.cut("reset")
    detached = await away(ada, bob, peer=cy.peer)
    for _ in range(4):
        await stranger.send({"type": "hearing", "peer": cy.peer})
        await asyncio.sleep(0.5)
    await ada.expect("peer-left", timeout=GRACE + 5)
    assert abs(asyncio.get_running_loop().time() - detached - GRACE) < TOLERANCE


async def test_a_client_close_with_a_resume_code_detaches_and_a_hang_up_ends(
        server: Service, trio: tuple[Client, ...]) -> None:
    ada, bob, cy = trio
    await cy.ws.close(4000, "reconnecting")
    await away(ada, bob, peer=cy.peer)
    back, resumed = await cy.resume(server.ws_url)
    assert resumed["type"] == "resumed"
    for member in (ada, bob):
        assert await member.recv() == {"type": "peer-back", "peer": cy.peer}
    await back.ws.close(1001)  # a page closing
    for member in (ada, bob):
        assert await member.recv() == {"type": "peer-left", "peer": cy.peer,
                                       "reason": "disconnected"}


async def test_resume_tokens_are_never_logged_even_with_debug(
        server: Service, proxy: TcpProxy, trio: tuple[Client, ...]) -> None:
    """docs/privacy.md: the token is a secret. This server runs with --debug, which logs every
    message's contents; still no token, old or rotated, appears in its log."""
    ada, bob, cy = trio
    proxy.cut("reset")
    await away(ada, bob, peer=cy.peer)
    back, resumed = await cy.resume(server.ws_url)
    await back.send({"type": "hearing", "peer": ada.peer})
    await asyncio.sleep(0.3)
    log = server.log
    assert re.search(r"resume .* \(token not logged\)", log), "the resume was logged, redacted"
    for token in (ada.token, bob.token, cy.token, back.token, resumed["resume"]):
        assert token not in log


async def test_messages_lost_in_flight_on_a_silently_dead_socket_are_replayed(
        server: Service, proxy: TcpProxy, trio: tuple[Client, ...]) -> None:
    """A black hole: the server still writes to Cy's socket and hears no error, but nothing
    arrives. Cy reconnects before the heartbeat notices; what was lost is replayed, once."""
    ada, bob, cy = trio
    proxy.cut("blackhole")
    for n in range(2):
        await ada.send({"type": "signal", "to": cy.peer, "data": {"lost": n}})
    await asyncio.sleep(0.3)
    back, resumed = await cy.resume(server.ws_url)
    assert resumed["type"] == "resumed" and resumed["last_seq"] == cy.last_seq + 2
    for n in range(2):
        assert (await back.expect("signal"))["data"] == {"lost": n}
    await back.silent()
    for member in (ada, bob):  # it was never even away for them
        await member.silent()


def test_serve_refuses_a_grace_longer_than_its_cap() -> None:
    """The other nonsensical limits: tests/core/test_sessions.py (CoreSettings refuses them)."""
    with pytest.raises(RuntimeError, match="xes serve: the resume grace must be positive"):
        launch_xes_server(["--resume-grace", "30", "--resume-cap", "20"])
