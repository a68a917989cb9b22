"""The two directions of messages.py agree: what one Python speaker writes, the other reads back."""

from __future__ import annotations

import re

import msgspec
import pytest

from tests.protocol.conftest import markdown_section, markdown_table
from xes.protocol import messages as m

A, B, R = "A" * 22, "B" * 22, "R" * 22
RULES = m.Rules(locked=False, lobby=True, password=True, max_peers=4)
ICE = [m.IceServer(urls=["turn:127.0.0.1:3478?transport=udp"], username="1:x", credential="c")]
OFFER = m.SignalData(description=m.SessionDescription("offer", "v=0\r\n"))

CLIENT_MESSAGES: list[m.ClientMessage] = [
    m.Join(room=R, name="Ada", password="pw", rollback=False),
    m.Join(room=R, name="Ada"),
    m.Leave(),
    m.signal_to(B, OFFER),
    m.IceRefresh(),
    m.SetRules(locked=True, password=None),
    m.SetRules(max_peers=3),
    m.Admit(peer=B), m.Decline(peer=B), m.Remove(peer=B), m.Ban(peer=B),
    m.MatchRequest(name="Ada", tags=["chess"], language="en", rollback=False, direct=True),
    m.MatchRequest(name="Ada", text_only=True), m.MatchRequest(name="Ada", accept_text=True),
    m.Next(), m.Block(peer=B), m.Stop(),
    m.Resume(peer=A, token=B, last_seq=7), m.Hearing(peer=B),
    m.Identify(public_key="P" * 87, signature="S" * 86), m.Rate(peer=B, good=False),
    m.Report(peer=B, reason="under-18", text="said they are 14"), m.Report(peer=B, reason="other"),
]

SERVER_MESSAGES: list[m.ServerMessage] = [
    m.Hello(protocol=2, peer=A, resume=B, limits=m.Limits(65536, 8, 400, 100.0, 10.0), relay=True,
            challenge="c" * 43),
    m.Identified(cooldown_until=1_800_003_600.0, banned=False, warning="Be kind."),
    m.Noted(ref="report"),
    m.Error(code="cooldown", message="in 59 min", ref="match", retry_after=3540),
    m.Joined(room=R, you=A, host=B, peers=[m.PeerInfo(B, "Bob", True)], rules=RULES,
             ice_servers=ICE, ice_expires_at=1_790_000_000, ice_transport_policy="relay",
             match=False),
    m.PeerJoined(peer=m.PeerInfo(B, "Bob", False)),
    m.PeerJoined(peer=m.PeerInfo(B, "Bob", False, text_only=True)),
    m.PeerLeft(peer=B, reason="banned"),
    m.RelayedSignal(sender=B, data=OFFER),
    m.Left(room=R), m.Host(peer=B), m.RulesChanged(rules=RULES), m.Lobby(room=R),
    m.Knock(peer=m.KnockPeer(B, "Bob")), m.KnockWithdrawn(peer=B),
    m.Removed(room=R, banned=True), m.Queued(), m.Unqueued(),
    m.IceServers(ice_servers=[], ice_expires_at=None),
    m.Error(code="room-full", message="full", ref="join"),
    m.Resumed(peer=A, resume=B, last_seq=9,
              room=m.RoomState(room=R, you=A, host=B, peers=[m.PeerInfo(B, "Bob", True)],
                               rules=RULES, ice_transport_policy="all", match=False, away=[B],
                               knocks=[m.KnockPeer(B, "Bob")]),
              lobby=None, queued=False, ice_servers=ICE, ice_expires_at=None),
    m.PeerAway(peer=B), m.PeerBack(peer=B),
]


def _tag(cls: type) -> str:
    tag = cls.__struct_config__.tag  # type: ignore[attr-defined]
    assert isinstance(tag, str)
    return tag


def test_every_message_struct_is_in_its_union() -> None:
    """A struct left out of a union would be unreadable by the other side."""
    server = {_tag(cls) for cls in m._ServerMessage.__subclasses__()}
    client = {_tag(cls) for cls in m._ClientMessage.__subclasses__()}
    assert server == {_tag(cls) for cls in m.ServerMessage.__args__}
    assert client == {_tag(cls) for cls in m.ClientMessage.__args__}
    assert {_tag(type(message)) for message in SERVER_MESSAGES} == server
    assert {_tag(type(message)) for message in CLIENT_MESSAGES} == client


def test_the_browser_and_the_document_list_exactly_these_server_messages(
    browser_tables: dict[str, object],
) -> None:
    server = sorted(_tag(cls) for cls in m.ServerMessage.__args__)
    browser = browser_tables["server_types"]
    assert isinstance(browser, list) and sorted(browser) == server
    headings = re.findall(r"^### (.*)$", markdown_section("## Messages from the server"), re.M)
    documented = [name for heading in headings for name in re.findall(r"`([a-z-]+)`",
                                                                        heading.split(" — ")[0])]
    assert sorted(documented) == server


def test_the_document_lists_exactly_these_client_messages() -> None:
    rows = markdown_table("## Messages from the client")
    documented = [name for row in rows for name in re.findall(r"`([a-z-]+)`", row[0])]
    assert sorted(documented) == sorted(_tag(cls) for cls in m.ClientMessage.__args__)


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=lambda message: type(message).__name__)
def test_what_the_peer_sends_the_server_reads_back_unchanged(message: m.ClientMessage) -> None:
    assert m.decode(m.encode_client(message)) == message


@pytest.mark.parametrize("message", SERVER_MESSAGES, ids=lambda message: type(message).__name__)
def test_what_the_server_sends_the_peer_reads_back_unchanged(message: m.ServerMessage) -> None:
    assert m.decode_server(m.encode(message)) == message


def test_the_spliced_relay_is_byte_for_byte_the_relayed_signal_struct() -> None:
    """The server never encodes RelayedSignal (it splices bytes); the splice must be that struct."""
    for data in (OFFER, m.SignalData(candidate=None),
                 m.SignalData(candidate=m.IceCandidate("candidate:1 1 udp 1 1.2.3.4 5 typ host",
                                                       sdp_mid="0", sdp_mline_index=0))):
        raw = msgspec.Raw(msgspec.json.encode(data))
        assert m.encode_signal(B, raw) == m.encode(m.RelayedSignal(sender=B, data=data))


def test_a_browser_signal_reads_as_signal_data() -> None:
    """The browser's shapes, W3C names and extra keys included (web/negotiation.js)."""
    frame = (b'{"type":"signal","from":"' + B.encode() + b'","data":{"candidate":'
             b'{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0",'
             b'"sdpMLineIndex":0,"usernameFragment":"u"}}}')
    message = m.decode_server(frame)
    assert isinstance(message, m.RelayedSignal) and message.sender == B
    assert message.data.candidate == m.IceCandidate(
        "candidate:1 1 udp 1 1.2.3.4 5 typ host", sdp_mid="0", sdp_mline_index=0)
    assert message.data.description is None
    end = m.decode_server(m.encode_signal(B, msgspec.Raw(b'{"candidate":null}')))
    assert isinstance(end, m.RelayedSignal) and end.data.candidate is None  # end of candidates
    other = m.decode_server(m.encode_signal(B, msgspec.Raw(b'{"ok":true}')))
    assert isinstance(other, m.RelayedSignal)
    assert (other.data.description, other.data.candidate) == (None, msgspec.UNSET)


def test_unknown_server_types_and_fields_are_tolerated() -> None:
    """Later minor versions may add messages and fields (docs/protocol.md, Transport)."""
    assert m.decode_server(b'{"type":"weather","sunny":true}') == m.UnknownMessage("weather")
    host = m.decode_server(b'{"type":"host","peer":"' + B.encode() + b'","since":3}')
    assert host == m.Host(peer=B)


@pytest.mark.parametrize("frame", [
    b"not json", b"[]", b'{"no":"type"}', b'{"type":7}',
    b'{"type":"host"}',                              # a known type without its field
    b'{"type":"host","peer":"short"}',               # not an id
    b'{"type":"peer-left","peer":"' + B.encode() + b'","reason":"bored"}',
    b'{"type":"signal","from":"' + B.encode() + b'","data":{"description":"offer"}}',
])
def test_malformed_server_frames_are_refused(frame: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        m.decode_server(frame)


def test_client_messages_leave_defaults_out_like_the_browser() -> None:
    assert m.encode_client(m.Join(room=R, name=" Ada ")) == (
        b'{"type":"join","room":"' + R.encode() + b'","name":"Ada"}')
    assert m.encode_client(m.SetRules(password=None)) == b'{"type":"set-rules","password":null}'
    assert m.encode_client(m.MatchRequest(name="Ada", text_only=True)) == (
        b'{"type":"match","name":"Ada","text_only":true}')
    # A peer entry says `text_only` only for a text-only stranger: room entries are unchanged.
    assert m.encode(m.PeerJoined(peer=m.PeerInfo(B, "Bob", True))) == (
        b'{"type":"peer-joined","peer":{"id":"' + B.encode() + b'","name":"Bob","polite":true}}')
