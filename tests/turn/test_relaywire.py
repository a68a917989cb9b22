"""The relay-capture analyser itself: it must find what it is meant to find.

The privacy tests lean on `relaywire` to say "only SRTP crossed the relay"; these show on
hand-built packets that it unwraps every TURN framing, reads RTP header extensions, and that
its entropy check does tell plain RTP from SRTP (so a pass there is not vacuous).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from .relaywire import (
    UdpDatagram,
    classify,
    first_byte_entropy,
    parse_rtp_header,
    read_pcap,
    unwrap,
    view_relay,
)

TURN_PORT = 3478
RELAY_PORTS = range(40000, 40100)


def rtp(sequence: int, payload: bytes, extension: bytes | None = None, ssrc: int = 0x1234) -> bytes:
    """A minimal RTP packet (payload type 111, Opus in Chrome's SDP)."""
    first = 0x80 | (0x10 if extension is not None else 0)
    packet = struct.pack("!BBHII", first, 111, sequence, sequence * 960, ssrc)
    if extension is not None:
        packet += extension
    return packet + payload


def one_byte_extension(*elements: tuple[int, bytes]) -> bytes:
    """An RFC 8285 one-byte-header extension block holding `elements`."""
    body = b"".join(bytes([(element_id << 4) | (len(data) - 1)]) + data
                    for element_id, data in elements)
    body += bytes(-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


def stun_indication(message_type: int, data: bytes) -> bytes:
    """A STUN Send/Data indication carrying `data` in its DATA attribute."""
    attribute = struct.pack("!HH", 0x0013, len(data)) + data + bytes(-len(data) % 4)
    return struct.pack("!HHI", message_type, len(attribute), 0x2112A442) + os.urandom(12) + attribute


def test_unwraps_channeldata_send_and_data_indications_and_raw_relay_legs() -> None:
    """Each framing yields the same inner packet; TURN control messages yield None."""
    inner = rtp(1, os.urandom(40))
    channel = struct.pack("!HH", 0x4000, len(inner)) + inner + bytes(-len(inner) % 4)
    client, server = ("127.0.0.1", 50000), ("127.0.0.1", TURN_PORT)
    cases = [
        (UdpDatagram(client, server, channel), "channeldata"),
        (UdpDatagram(client, server, stun_indication(0x0016, inner)), "send"),
        (UdpDatagram(server, client, stun_indication(0x0017, inner)), "data"),
        (UdpDatagram(("127.0.0.1", 40001), ("127.0.0.1", 40002), inner), "raw"),
    ]
    for datagram, framing in cases:
        unwrapped = unwrap(datagram, [TURN_PORT], RELAY_PORTS)
        assert unwrapped is not None
        assert (unwrapped.kind, unwrapped.data, unwrapped.framing) == ("rtp", inner, framing)
    allocate = struct.pack("!HHI", 0x0003, 0, 0x2112A442) + os.urandom(12)
    assert unwrap(UdpDatagram(client, server, allocate), [TURN_PORT], RELAY_PORTS) is None
    with pytest.raises(ValueError):
        unwrap(UdpDatagram(client, server, b"\x99 not TURN"), [TURN_PORT], RELAY_PORTS)


@pytest.mark.parametrize(("first_bytes", "kind"), [
    (b"\x00\x01", "stun"), (b"\x16\xfe", "dtls"), (b"\x2f\x00", "dtls"),
    (b"\x80\x6f", "rtp"), (b"\x80\xc8", "rtcp"), (b"\x81\xc9", "rtcp"), (b"GET", "other"),
])
def test_rfc7983_demultiplexing(first_bytes: bytes, kind: str) -> None:
    """First byte (and second for RTCP) decides the kind."""
    assert classify(first_bytes + bytes(20)) == kind


def test_reads_one_and_two_byte_header_extension_ids() -> None:
    """Element ids come out of both RFC 8285 layouts; padding is skipped."""
    header = parse_rtp_header(rtp(7, b"xyz", one_byte_extension((1, b"\x89"), (4, b"0"))))
    assert header.extension_ids == (1, 4)
    assert header.sequence == 7
    body = bytes([3, 2]) + b"ab" + bytes([0]) + bytes([9, 0])
    body += bytes(-len(body) % 4)
    two_byte = struct.pack("!HH", 0x1000, len(body) // 4) + body
    header = parse_rtp_header(rtp(8, b"xyz", two_byte))
    assert header.extension_ids == (3, 9)
    assert rtp(8, b"xyz", two_byte)[header.payload_offset:] == b"xyz"


def test_entropy_tells_plain_opus_from_ciphertext() -> None:
    """Plain Opus starts every payload with a near-constant TOC byte; SRTP ciphertext does not."""
    plain = [bytes([0x78 if i % 10 else 0x7B]) + os.urandom(60) for i in range(300)]
    encrypted = [os.urandom(61) for _ in range(300)]
    assert first_byte_entropy(plain)[0] < 1.0
    assert first_byte_entropy(encrypted)[0] > 6.0


def test_reads_a_libpcap_file(tmp_path: Path) -> None:
    """Ethernet/IPv4/UDP frames in a classic pcap file come back as datagrams."""
    payload = rtp(1, b"hello")
    udp = struct.pack("!HHHH", 40001, 40002, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
    frame = bytes(12) + b"\x08\x00" + ip
    pcap = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    pcap += struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame
    path = tmp_path / "one.pcap"
    path.write_bytes(pcap)
    datagrams = read_pcap(path)
    assert datagrams == [UdpDatagram(("127.0.0.1", 40001), ("127.0.0.1", 40002), payload)]
    view = view_relay(datagrams, [TURN_PORT], RELAY_PORTS)
    assert view.count() == {"rtp": 1}
