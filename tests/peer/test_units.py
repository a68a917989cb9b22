"""The Python peer's pure pieces: room links, SDP stripping, candidate parsing, loopback scope."""

from __future__ import annotations

import aioice.ice
import msgspec
import pytest

from xes.peer.connection import _UNUSABLE, _parse_candidate, _Unusable
from xes.peer.errors import RoomLinkError
from xes.peer.gathering import loopback_gathering
from xes.peer.links import is_loopback_url, resolve_room, websocket_url
from xes.peer.sdp import AUDIO_LEVEL_URI, ice_ufrag, media_sections, strip_audio_level
from xes.protocol import messages as m
from xes.protocol.messages import IceCandidate

ROOM = "Jf3kq8ZC0yB1o5uVhYx1Aw"


@pytest.mark.parametrize(("link", "server", "ws_url"), [
    (f"http://127.0.0.1:8000/r/{ROOM}", None, "ws://127.0.0.1:8000/ws"),
    (f"https://xes.example.org/r/{ROOM}/", None, "wss://xes.example.org/ws"),
    (f"http://127.0.0.1:8000/r/{ROOM}", "http://10.0.0.1:9000", "ws://10.0.0.1:9000/ws"),
    (ROOM, "http://127.0.0.1:8123/", "ws://127.0.0.1:8123/ws"),
    (ROOM, "ws://127.0.0.1:8123/custom", "ws://127.0.0.1:8123/custom"),
])
def test_room_links_resolve(link: str, server: str | None, ws_url: str) -> None:
    """A link carries its server; an explicit server wins; a bare id takes the given server."""
    target = resolve_room(link, server)
    assert (target.room_id, target.ws_url) == (ROOM, ws_url)


def test_bare_id_uses_environment_then_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XES_SERVER", raising=False)
    assert resolve_room(ROOM).ws_url == "ws://127.0.0.1:8000/ws"
    monkeypatch.setenv("XES_SERVER", "https://xes.example.org")
    assert resolve_room(ROOM).ws_url == "wss://xes.example.org/ws"


@pytest.mark.parametrize("bad", [
    "", "hello", ROOM[:-1], ROOM + "!", f"http://h/room/{ROOM}", f"http://h/r/{ROOM}/x",
    f"ftp://h/r/{ROOM}", "http:///r/" + ROOM, f"http://h:notaport/r/{ROOM}",
])
def test_wrong_links_are_refused_with_a_reason(bad: str) -> None:
    with pytest.raises(RoomLinkError, match="room|port|link"):
        resolve_room(bad, None if "://" in bad else "http://127.0.0.1:1")


def test_server_url_must_be_http_or_ws() -> None:
    with pytest.raises(RoomLinkError):
        websocket_url("127.0.0.1:8000")


def test_loopback_detection() -> None:
    assert is_loopback_url("ws://127.0.0.1:1/ws") and is_loopback_url("http://localhost:1")
    assert is_loopback_url("ws://[::1]:1/ws") and is_loopback_url("ws://127.8.9.1/ws")
    assert not is_loopback_url("wss://xes.example.org/ws")
    assert not is_loopback_url("ws://192.0.2.2:1/ws")


def test_audio_level_extmap_is_stripped_and_nothing_else() -> None:
    sdp = ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
           f"a=extmap:1 {AUDIO_LEVEL_URI}\r\n"
           f"a=extmap:7/sendrecv {AUDIO_LEVEL_URI} vad=on\r\n"
           "a=extmap:2 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
           "a=rtpmap:111 opus/48000/2\r\n")
    stripped = strip_audio_level(sdp)
    assert AUDIO_LEVEL_URI not in stripped
    assert stripped == ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
                        "a=extmap:2 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
                        "a=rtpmap:111 opus/48000/2\r\n")


def test_trickled_candidates_parse_like_a_browser_sends_them() -> None:
    line = "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host generation 0"
    parsed = _parse_candidate(IceCandidate(line, sdp_mid="0", sdp_mline_index=0))
    assert parsed is not None and parsed is not _UNUSABLE
    assert not isinstance(parsed, _Unusable)
    assert (parsed.ip, parsed.port, parsed.type, parsed.sdpMid) == ("127.0.0.1", 50000, "host", "0")
    assert _parse_candidate(None) is None  # end of candidates
    assert _parse_candidate(IceCandidate("", sdp_mid="0")) is None
    assert _parse_candidate(IceCandidate("candidate:garbage")) is _UNUSABLE


def test_loopback_gathering_is_scoped() -> None:
    """127.0.0.1 is listed only inside the block; outside, aioice behaves as shipped."""
    outside = aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert "127.0.0.1" not in outside
    with loopback_gathering(True):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)[0] == "127.0.0.1"
    with loopback_gathering(False):
        assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == outside


def test_media_sections_tell_an_answer_to_an_earlier_offer_with_the_same_ufrag() -> None:
    """docs/protocol.md, "A repeated offer": a renegotiation keeps the ufrag, so the sections
    (``a=mid``, in order) tell which offer an answer answers."""
    audio = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=ice-ufrag:Hbq7\r\n"
    both = audio + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n"
    assert media_sections(audio) == ["0"]
    assert media_sections(both) == ["0", "1"]
    assert media_sections(None) == [] and media_sections("v=0\r\n") == []
    assert ice_ufrag(audio) == ice_ufrag(both)


def test_an_answer_names_the_offer_it_answers_by_its_ice_ufrag() -> None:
    """`answers` (docs/protocol.md, "A repeated offer"): the offer's ufrag, on the wire only
    when set, and read back by a receiver; an SDP without a ufrag names nothing."""
    offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=ice-ufrag:Hbq7\r\na=ice-pwd:x\r\n"
    assert ice_ufrag(offer) == "Hbq7"
    assert ice_ufrag("v=0\r\n") is None and ice_ufrag(None) is None
    answer = m.SignalData(description=m.SessionDescription("answer", "v=0\r\n"), answers="Hbq7")
    wire = msgspec.json.encode(answer)
    assert b'"answers":"Hbq7"' in wire
    assert msgspec.json.decode(wire, type=m.SignalData).answers == "Hbq7"
    assert b"answers" not in msgspec.json.encode(m.SignalData(candidate=None))
