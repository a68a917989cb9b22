"""What a TURN relay sees: read a capture, unwrap TURN framing, classify the inner packets.

Theory of operation. A relayed call crosses coturn in three legs, all captured on loopback:

    browser A --(ChannelData or Send indication)--> coturn:TURN port
    coturn relay port A --(raw UDP)--> coturn relay port B            (relay <-> relay)
    coturn:TURN port --(ChannelData or Data indication)--> browser B

`unwrap` takes each captured datagram back to the packet the *browsers* exchanged, which is all
the relay can ever read: ChannelData carries it after a 4-byte header (RFC 8656 section 12.4),
Send/Data indications in their DATA attribute (sections 10 and 11), and the relay-to-relay leg
carries it bare. Everything else on the TURN port is TURN's own control traffic (Allocate,
Refresh, CreatePermission, ChannelBind) and is counted apart.

Inner packets are demultiplexed by their first byte as RFC 7983 section 7 does: 0-3 STUN (ICE
checks), 20-63 DTLS, 128-191 RTP/RTCP (RTCP when the second byte is 192-223, RFC 5761 section
4). Anything else would be something a relay could read that we did not expect.

The SRTP checks read only what SRTP leaves in clear: the RTP header and its extensions (RFC 3711
section 3.1; header extensions per RFC 8285). The payload's first byte is where plain Opus would
put its TOC byte (almost constant); under SRTP it is ciphertext, so its values spread out.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AUDIO_LEVEL_URI",
    "InnerPacket",
    "RelayView",
    "RtpHeader",
    "UdpDatagram",
    "classify",
    "first_byte_entropy",
    "parse_rtp_header",
    "read_pcap",
    "unwrap",
    "view_relay",
]

AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
STUN_MAGIC_COOKIE = 0x2112A442
STUN_SEND_INDICATION = 0x0016
STUN_DATA_INDICATION = 0x0017
STUN_ATTR_DATA = 0x0013

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276


@dataclass(frozen=True)
class UdpDatagram:
    """One captured IPv4 UDP datagram."""

    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


@dataclass(frozen=True)
class InnerPacket:
    """A packet the two peers exchanged, as the relay carried it."""

    kind: str  # "stun", "dtls", "rtp", "rtcp" or "other"
    data: bytes
    framing: str  # "channeldata", "send", "data" or "raw" (relay <-> relay)


@dataclass(frozen=True)
class RtpHeader:
    """The clear-text part of an (S)RTP packet."""

    payload_type: int
    sequence: int
    ssrc: int
    extension_profile: int | None
    extension_ids: tuple[int, ...]
    payload_offset: int


@dataclass
class RelayView:
    """Everything the relay saw in one capture, sorted out."""

    datagrams: int = 0
    turn_control: int = 0  # TURN's own requests and responses (Allocate, Refresh, ...)
    inner: list[InnerPacket] = field(default_factory=list)

    def count(self) -> Counter[str]:
        """How many inner packets of each kind."""
        return Counter(packet.kind for packet in self.inner)

    def rtp(self) -> Iterator[tuple[RtpHeader, bytes]]:
        """Each SRTP packet once per (SSRC, sequence number), with its parsed header.

        A packet crosses the relay up to three times (three legs); counting it once keeps the
        entropy figure honest.
        """
        seen: set[tuple[int, int]] = set()
        for packet in self.inner:
            if packet.kind != "rtp":
                continue
            header = parse_rtp_header(packet.data)
            key = (header.ssrc, header.sequence)
            if key in seen:
                continue
            seen.add(key)
            yield header, packet.data


def read_pcap(path: Path) -> list[UdpDatagram]:
    """The IPv4 UDP datagrams in a classic libpcap file (`tshark -F pcap`)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path} is not a libpcap file (use tshark -F pcap)")
    (linktype,) = struct.unpack(endian + "I", data[20:24])
    link_header = {LINKTYPE_ETHERNET: 14, LINKTYPE_LINUX_SLL: 16, LINKTYPE_LINUX_SLL2: 20}.get(
        linktype)
    if link_header is None:
        raise ValueError(f"unsupported link type {linktype}")
    datagrams: list[UdpDatagram] = []
    offset = 24
    while offset + 16 <= len(data):
        _sec, _usec, captured, _original = struct.unpack(endian + "IIII", data[offset:offset + 16])
        frame = data[offset + 16:offset + 16 + captured]
        offset += 16 + captured
        datagram = _udp_from_frame(frame, link_header)
        if datagram is not None:
            datagrams.append(datagram)
    return datagrams


def _udp_from_frame(frame: bytes, link_header: int) -> UdpDatagram | None:
    ip = frame[link_header:]
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 17:
        return None
    ip_header = (ip[0] & 0x0F) * 4
    source = ".".join(str(b) for b in ip[12:16])
    destination = ".".join(str(b) for b in ip[16:20])
    udp = ip[ip_header:]
    source_port, destination_port, length = struct.unpack("!HHH", udp[:6])
    return UdpDatagram((source, source_port), (destination, destination_port), udp[8:length])


def classify(data: bytes) -> str:
    """RFC 7983 demultiplexing by first byte (plus RFC 5761 for RTCP vs RTP)."""
    if not data:
        return "other"
    first = data[0]
    if first <= 3:
        return "stun"
    if 20 <= first <= 63:
        return "dtls"
    if 128 <= first <= 191:
        if len(data) >= 2 and 192 <= data[1] <= 223:
            return "rtcp"
        return "rtp"
    return "other"


def _is_stun(data: bytes) -> bool:
    return (len(data) >= 20 and data[0] >> 6 == 0
            and struct.unpack("!I", data[4:8])[0] == STUN_MAGIC_COOKIE)


def _stun_data_attribute(data: bytes) -> bytes | None:
    """The DATA attribute of a STUN message, or None."""
    (length,) = struct.unpack("!H", data[2:4])
    offset, end = 20, min(20 + length, len(data))
    while offset + 4 <= end:
        attribute, size = struct.unpack("!HH", data[offset:offset + 4])
        if attribute == STUN_ATTR_DATA:
            return data[offset + 4:offset + 4 + size]
        offset += 4 + size + (-size % 4)  # attributes are padded to 4 bytes
    return None


def unwrap(
    datagram: UdpDatagram, turn_ports: Iterable[int], relay_ports: range
) -> InnerPacket | None:
    """The inner packet a relayed datagram carries; None for TURN's own control messages.

    Raises:
        ValueError: If a datagram on the TURN port is neither TURN framing nor STUN.
    """
    turn_ports = set(turn_ports)
    ports = (datagram.source[1], datagram.destination[1])
    data = datagram.payload
    if any(port in turn_ports for port in ports):
        if data and 0x40 <= data[0] <= 0x7F:  # ChannelData, RFC 8656 section 12.4
            (length,) = struct.unpack("!H", data[2:4])
            inner = data[4:4 + length]
            return InnerPacket(classify(inner), inner, "channeldata")
        if _is_stun(data):
            (message_type,) = struct.unpack("!H", data[:2])
            if message_type in (STUN_SEND_INDICATION, STUN_DATA_INDICATION):
                inner = _stun_data_attribute(data) or b""
                framing = "send" if message_type == STUN_SEND_INDICATION else "data"
                return InnerPacket(classify(inner), inner, framing)
            return None
        raise ValueError(f"unexpected datagram on the TURN port: {data[:16].hex()}")
    if any(port in relay_ports for port in ports):
        return InnerPacket(classify(data), data, "raw")
    raise ValueError(f"datagram outside the relay's ports: {datagram.source}->"
                     f"{datagram.destination}")


def view_relay(
    datagrams: Iterable[UdpDatagram], turn_ports: Iterable[int], relay_ports: range
) -> RelayView:
    """Unwrap a whole capture taken on the relay's ports."""
    turn_ports = tuple(turn_ports)
    view = RelayView()
    for datagram in datagrams:
        view.datagrams += 1
        inner = unwrap(datagram, turn_ports, relay_ports)
        if inner is None:
            view.turn_control += 1
        else:
            view.inner.append(inner)
    return view


def parse_rtp_header(data: bytes) -> RtpHeader:
    """The clear-text RTP header of an SRTP packet, with RFC 8285 extension element ids.

    Raises:
        ValueError: If the packet is too short for the header it announces.
    """
    if len(data) < 12 or data[0] >> 6 != 2:
        raise ValueError("not an RTP packet")
    csrc_count = data[0] & 0x0F
    has_extension = bool(data[0] & 0x10)
    payload_type = data[1] & 0x7F
    sequence, _timestamp, ssrc = struct.unpack("!HII", data[2:12])
    offset = 12 + 4 * csrc_count
    profile: int | None = None
    ids: list[int] = []
    if has_extension:
        if len(data) < offset + 4:
            raise ValueError("truncated header extension")
        profile, words = struct.unpack("!HH", data[offset:offset + 4])
        body = data[offset + 4:offset + 4 + 4 * words]
        offset += 4 + 4 * words
        if profile == 0xBEDE:  # one-byte elements, RFC 8285 section 4.2
            i = 0
            while i < len(body):
                element_id, size = body[i] >> 4, (body[i] & 0x0F) + 1
                if element_id == 0:  # padding
                    i += 1
                    continue
                if element_id == 15:  # reserved: stop parsing
                    break
                ids.append(element_id)
                i += 1 + size
        elif profile >> 4 == 0x100:  # two-byte elements, RFC 8285 section 4.3
            i = 0
            while i + 1 < len(body):
                element_id, size = body[i], body[i + 1]
                if element_id == 0:
                    i += 1
                    continue
                ids.append(element_id)
                i += 2 + size
    if len(data) < offset:
        raise ValueError("truncated RTP header")
    return RtpHeader(payload_type, sequence, ssrc, profile, tuple(ids), offset)


def first_byte_entropy(payloads: Iterable[bytes]) -> tuple[float, int]:
    """Shannon entropy (bits) of the first byte of each non-empty payload, and how many."""
    counts = Counter(payload[0] for payload in payloads if payload)
    total = sum(counts.values())
    if total == 0:
        return 0.0, 0
    entropy = -sum(n / total * math.log2(n / total) for n in counts.values())
    return entropy, total
