"""The server's log holds no address, no SDP and no message text: a whole call, both formats."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable

import pytest

from tests.conftest import XesServerProcess
from tests.server.wsclient import Client, new_room
from xes.server.logs import log_handler, scrub

pytestmark = pytest.mark.timeout(60)

CLIENT_ADDRESS = "127.0.0.3"           # the clients connect from here (loopback is a /8)
FORWARDED = "198.51.100.23"            # what the trusted proxy says the client's address is
IN_SDP = ("203.0.113.77", "2001:db8::77")
NAME, TEXT = "Alice Marker-7781", "secret-text-5521"
OFFER = {"sdp": {"type": "offer", "sdp": (
    "v=0\r\no=- 4611 2 IN IP4 203.0.113.77\r\ns=-\r\n"
    "a=candidate:1 1 udp 2122260223 203.0.113.77 50000 typ host\r\n"
    "a=candidate:2 1 udp 2122260223 2001:db8::77 50001 typ host\r\n")}}
# What xes serve prints on stdout for people (the log proper is on stderr, merged by the fixture).
_STDOUT_LINES = ("Relay: ", "XES is running.", "XES stopped.")


async def a_call(server: XesServerProcess) -> list[str]:
    """Everything a call does to a server, and a few mistakes; the secrets it handed over."""
    room = new_room()
    connect = {"local_addr": (CLIENT_ADDRESS, 0), "additional_headers": {"X-Forwarded-For": FORWARDED}}
    alice = await Client.connect(server.ws_url, **connect)
    bob = await Client.connect(server.ws_url, **connect)
    assert (await alice.identify())["type"] == "identified"  # reads the (forwarded) address
    await alice.join(room, NAME)
    await bob.join(room, "Bob")
    await alice.expect("peer-joined")
    await alice.send({"type": "signal", "to": bob.peer, "data": OFFER})
    await bob.expect("signal")
    await alice.send(f'{{"type": "chat", "text": "{TEXT} {IN_SDP[0]}"'.encode())  # broken JSON
    await alice.expect("error")
    await alice.send({"type": TEXT, "to": IN_SDP[0]})
    await alice.expect("error")
    await bob.ws.close(4000)           # lost: detached, then resumed
    await alice.expect("peer-away")
    bob, answer = await bob.resume(server.ws_url)
    assert answer["type"] == "resumed"
    return [room, alice.token, bob.token]


def forbidden_in(log: str, secrets: list[str]) -> list[str]:
    words = [CLIENT_ADDRESS, FORWARDED, *IN_SDP, NAME, TEXT, "v=0", "a=candidate", "sdp", *secrets]
    return [word for word in words if word in log]


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_a_call_leaves_no_address_nor_payload_in_the_log(
        start_xes_server: Callable[..., XesServerProcess], log_format: str) -> None:
    server = start_xes_server(["--log-format", log_format, "--trust-forwarded-for",
                               "--node-id", "logtest"], host="127.0.0.2")
    secrets = await a_call(server)
    assert server.stop() == 0  # the stop logs the snapshot it takes
    lines = [line for line in server.output if not line.startswith(_STDOUT_LINES)]
    assert lines, "the stop should have logged its snapshot"
    assert forbidden_in(server.log, secrets) == []
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        for entry in entries:
            assert {"ts", "level", "logger", "node", "msg"} <= entry.keys(), entry
            assert entry["node"] == "logtest" and entry["ts"].endswith("Z")
        assert any("snapshot of 2 session(s)" in entry["msg"] for entry in entries), entries


def test_scrub_blanks_addresses_and_keeps_times() -> None:
    assert scrub("from 192.0.2.1:5555 and [2001:db8::1]:443") == "from [address]:5555 and [[address]]:443"
    assert scrub("fe80::1%eth0, ::1, 2001:db8:0:0:1:0:0:1") == "[address], [address], [address]"
    assert scrub("at 12:34:56 in 0.5 s, version 1.2.3") == "at 12:34:56 in 0.5 s, version 1.2.3"


def _emit(handler: logging.Handler, stream: io.StringIO, message: str, *args: object,
          raised: BaseException | None = None) -> str:
    logger = logging.Logger("xes.test")  # not registered: the test's own, no global state
    logger.addHandler(handler)
    if raised is None:
        logger.warning(message, *args)
    else:
        try:
            raise raised
        except type(raised):
            logger.exception(message, *args)
    return stream.getvalue()


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_third_party_lines_lose_their_addresses(log_format: str) -> None:
    """picows, asyncio or redis-py may quote a peer: the handler blanks it outside --debug."""
    stream = io.StringIO()
    out = _emit(log_handler(log_format, False, "n1", stream), stream,
                "connection from %s", "192.0.2.44:6000",
                raised=ConnectionResetError("reset by 192.0.2.44"))
    assert "192.0.2.44" not in out and "[address]" in out
    if log_format == "json":
        entry = json.loads(out)
        assert entry["error"] == "ConnectionResetError" and "traceback" not in entry


def test_debug_keeps_everything() -> None:
    """--debug is the operator's explicit choice to see contents: nothing is blanked."""
    stream = io.StringIO()
    out = _emit(log_handler("json", True, "n1", stream), stream, "from %s", "192.0.2.44",
                raised=ValueError("x"))
    entry = json.loads(out)
    assert entry["msg"] == "from 192.0.2.44" and "ValueError" in entry["traceback"]
