"""Signalling-sized payloads, shared by the load generator and its tests.

Real call set-ups send two SDP descriptions (1-3 KB of JSON-escaped text: `\\r\\n` line ends are
escaped, which is work for every JSON parser on the path) and about twenty ICE candidates of
~200 bytes. The relay scenario cycles through PATTERN, which keeps that one-in-eleven ratio.

Every relayed payload ends with `"bench_t":<microseconds>}` (CLOCK_MONOTONIC, which all processes
on the machine share): the receiver finds it with one bytes.find instead of parsing the JSON, so
the generator spends its CPU on sending load, not on decoding it.
"""

from __future__ import annotations

import json

__all__ = ["MARK", "PATTERN", "SDP_SIZES", "body_heads", "candidate", "sdp"]

MARK = b'"bench_t":'

# Kinds of payload: 0, 1, 2 are SDP of ~1, ~2 and ~3 KB; 3 is a candidate.
SDP_SIZES = (1000, 2000, 3000)
CANDIDATE_KIND = 3
# One SDP then ten candidates, the SDP size rotating: 11 messages, like half a call set-up.
PATTERN: tuple[int, ...] = tuple(
    kind for sdp_kind in range(3) for kind in (sdp_kind,) + (CANDIDATE_KIND,) * 10
)

_SDP_HEAD = (
    "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
    "a=group:BUNDLE 0\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS 1d8bd5f7\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\nc=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:sXJ3\r\na=ice-pwd:yEclOTrLg1gEubBFefOqtmyV\r\n"
    "a=ice-options:trickle\r\na=fingerprint:sha-256 "
    "75:74:5A:A6:A4:E5:52:F4:A7:67:4C:01:C7:EE:91:3F:21:3D:A2:E3:53:7B:6F:30:86:F2:30:AA:65:FB:04:24"
    "\r\na=setup:actpass\r\na=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\na=sendrecv\r\n"
    "a=msid:1d8bd5f7 0f1b8a3c-5c2e-4e5f-9a7b-2f1d3c4b5a69\r\na=rtcp-mux\r\na=rtcp-rsize\r\n"
    "a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\na=rtpmap:63 red/48000/2\r\n"
    "a=fmtp:63 111/111\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:110 telephone-event/48000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\na=ssrc:3735928559 cname:Pz6vYw1Jt0bE0b3A\r\n"
)
_SDP_FILLER = "a=ssrc:3735928559 msid:1d8bd5f7 0f1b8a3c-5c2e-4e5f-9a7b-2f1d3c4b5a69\r\n"


def sdp(size: int, kind: str = "offer") -> dict[str, object]:
    """A Chrome-like audio SDP whose JSON encoding is about `size` bytes."""
    text = _SDP_HEAD
    # Pad with repeated ssrc lines (what a browser adds per track) until the JSON is big enough.
    for _ in range(200):
        if len(json.dumps({"description": {"type": kind, "sdp": text}})) >= size:
            break
        text += _SDP_FILLER
    encoded_overhead = len(json.dumps({"description": {"type": kind, "sdp": ""}}))
    text = text[: max(0, size - encoded_overhead)] if len(text) > size else text
    return {"description": {"type": kind, "sdp": text}}


def candidate(index: int = 0) -> dict[str, object]:
    """An ICE candidate as RTCIceCandidate.toJSON() gives it (~200 bytes as JSON)."""
    line = (
        f"candidate:84216304{index % 10} 1 udp 1677729535 203.0.113.{7 + index % 200} "
        f"{46154 + index} typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag sXJ3 "
        "network-id 1 network-cost 10"
    )
    return {"candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0,
                          "usernameFragment": "sXJ3"}}


def body_heads() -> list[bytes]:
    """Per kind, the payload JSON up to and including MARK; the sender appends `<t>}`."""
    heads: list[bytes] = []
    for kind in range(CANDIDATE_KIND + 1):
        data = sdp(SDP_SIZES[kind]) if kind < CANDIDATE_KIND else candidate()
        encoded = json.dumps(data, separators=(",", ":")).encode()
        heads.append(encoded[:-1] + b"," + MARK)  # drop the closing brace, open bench_t
    return heads
