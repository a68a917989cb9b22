"""One RTCPeerConnection to one other member of the room, and the rules aiortc forces on it.

Theory of operation
-------------------
The mesh (:mod:`xes.peer.peer`) makes one :class:`Link` per other member. Who offers is fixed by
the protocol: the newcomer offers to everyone already in the room, and they wait for its offer.
So a link is started either with :meth:`Link.offer` (we joined after them) or just created and
fed the other side's offer through :meth:`Link.handle_signal` (they joined after us).

aiortc's limits shape the rest:

- It cannot roll back a local offer, so we join with ``"rollback": false``, the server makes
  the browser polite toward us, and we never renegotiate. If an offer arrives while our own is
  pending (glare; the protocol's offer rule makes this a misbehaving peer), we are the impolite
  side: we ignore it, and keep waiting for the answer to ours.
- It gathers all its candidates inside ``setLocalDescription``: our SDP carries them all and we
  trickle nothing. The other side's trickled candidates are added as they come; those that
  arrive before its description are held until it is set.
- Without help it never gathers 127.0.0.1 (:mod:`xes.peer.gathering`), and it never uses a
  STUN or TURN server that we do not pass: the configuration always lists ``iceServers``
  explicitly, even when empty, because aiortc's default is a public Google STUN server.
- It reports ``failed`` about a minute after a path turned out impossible; we give up after
  ``connect_timeout`` (15 s by default) instead, and say so as :attr:`LinkState.FAILED`.
- Both descriptions lose their audio-level header extension (:mod:`xes.peer.sdp`).
- Each link has the browser's data channel, negotiated out of band (label ``xes``, id 0): the
  offerer creates it before its offer, so the offer carries an ``m=application`` section; the
  answerer creates its end after setting the offer, as the browser does. It carries JSON objects
  tagged by ``type`` (the safety codes of :mod:`xes.peer.verify`, chat), peer to peer.
- A text-only link (a stranger call where either side asked for text only, docs/protocol.md
  "Text only") is made with ``audio=False``: no audio track and no audio transceiver, so the
  offer has the application section alone; audio offered by the other side is answered
  ``inactive``. Nothing but the data channel goes over it.

Signals are handled one at a time per link, in arrival order, by a small worker task, so a slow
``setLocalDescription`` (gathering a TURN allocation) never reorders or blocks other links. They
arrive already decoded as :class:`xes.protocol.messages.SignalData` (``{description}`` or
``{candidate}``), the same struct this side sends.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import re
from collections.abc import Callable
from typing import Literal

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceCandidate,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from xes.peer.gathering import loopback_gathering
from xes.peer.sdp import ice_ufrag, media_sections, strip_audio_level
from xes.protocol import messages as m

__all__ = ["DATA_CHANNEL_ID", "DATA_CHANNEL_LABEL", "DATA_MAX_BYTES", "LinkState", "Route", "Link",
           "parse_data"]

logger = logging.getLogger(__name__)


class LinkState(enum.Enum):
    """Where a link to one member stands."""

    NEW = "new"
    """Created; waiting for an offer (or about to make one)."""
    CONNECTING = "connecting"
    """Descriptions exchanged or in flight; ICE and DTLS are working."""
    CONNECTED = "connected"
    """Audio can flow: ICE found a path and DTLS-SRTP keys are agreed."""
    FAILED = "failed"
    """No path within the timeout, or the connection broke. The link is closed."""
    CLOSED = "closed"
    """Closed on purpose (the member left, or we did)."""


class Route(enum.Enum):
    """How the packets of a connected link travel."""

    DIRECT = "direct"
    """Peer to peer (host, server-reflexive or peer-reflexive candidates on both ends)."""
    RELAYED = "relayed"
    """Through a TURN server (a relay candidate on at least one end)."""


SignalSender = Callable[[m.SignalData], None]
DataHandler = Callable[["Link", dict[str, object]], None]

DATA_CHANNEL_LABEL = "xes"
DATA_CHANNEL_ID = 0
DATA_MAX_BYTES = 16 * 1024
"""Largest data channel message sent or accepted (JSON text), as in the browser."""
_DATA_TYPE = re.compile(r"[a-z][a-z0-9-]{0,31}")


def parse_data(raw: object) -> dict[str, object] | None:
    """A data channel message as a JSON object with a ``type``; None for anything else."""
    if not isinstance(raw, str) or len(raw) > DATA_MAX_BYTES:
        return None
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    kind = message.get("type")
    return message if isinstance(kind, str) and _DATA_TYPE.fullmatch(kind) else None


class _MakeOffer:
    """Queued by :meth:`Link.offer` so that our offer takes its turn among incoming signals."""


_MAKE_OFFER = _MakeOffer()


class Link:
    """The connection to one other member.

    Args:
        remote_id: The member's peer id.
        configuration: aiortc configuration; its ``iceServers`` must be an explicit list.
        send_signal: Sends ``data`` to this member through the server (the ``signal`` message).
        on_change: Called after every change of :attr:`state`.
        on_track: Called with the member's audio track when aiortc creates it.
        source: Our outgoing audio for this link (a fresh relay subscription), or None to
            only receive.
        allow_loopback: Also gather a 127.0.0.1 host candidate.
        connect_timeout: Seconds from creation to ``connected`` before the link is failed.
        on_channel_open: Called once the link's data channel is open.
        on_data: Called with each well-formed message from the peer's data channel.
        audio: False for a text-only link: the data channel alone, no audio either way
            (`source` is then ignored).
        on_closed: Called once the link's connection is closed, sockets and all.
    """

    def __init__(
        self,
        remote_id: str,
        *,
        configuration: RTCConfiguration,
        send_signal: SignalSender,
        on_change: Callable[[Link], None],
        on_track: Callable[[MediaStreamTrack], None],
        source: MediaStreamTrack | None,
        allow_loopback: bool,
        connect_timeout: float = 15.0,
        on_channel_open: Callable[[Link], None] | None = None,
        on_data: DataHandler | None = None,
        audio: bool = True,
        on_closed: Callable[[Link], None] | None = None,
    ) -> None:
        if configuration.iceServers is None:
            raise ValueError("pass iceServers explicitly: aiortc's default is a public server")
        self.remote_id = remote_id
        self.state = LinkState.NEW
        self.route: Route | None = None
        self.candidate_types: tuple[str, str] | None = None
        """(local, remote) candidate types of the selected pair once connected."""
        self.failure: str | None = None
        """Why the link failed, in words, once :attr:`state` is FAILED."""
        self._send_signal = send_signal
        self._on_change = on_change
        self._on_track = on_track
        self.audio = audio
        self._source = source if audio else None
        self._allow_loopback = allow_loopback
        self._pending_candidates: list[RTCIceCandidate | None] = []
        self._inbox: asyncio.Queue[m.SignalData | _MakeOffer] = asyncio.Queue()
        self._on_channel_open = on_channel_open
        self._on_data = on_data
        self._channel: RTCDataChannel | None = None
        self._on_closed = on_closed
        self._closing: asyncio.Future[None] | None = None
        self._pc = RTCPeerConnection(configuration)
        self._pc.on("track", self._handle_track)
        self._pc.on("connectionstatechange", self._handle_connection_state)
        self._worker = asyncio.ensure_future(self._work())
        self._watchdog = asyncio.ensure_future(self._expire(connect_timeout))

    @property
    def peer_connection(self) -> RTCPeerConnection:
        """The underlying aiortc connection (for inspection; do not renegotiate on it)."""
        return self._pc

    @property
    def channel_open(self) -> bool:
        """Whether the link's data channel is open."""
        return self._channel is not None and self._channel.readyState == "open"

    def send_data(self, message: dict[str, object]) -> bool:
        """Send one JSON object on the data channel; False if it is not open or too large."""
        text = json.dumps(message, separators=(",", ":"))
        if not self.channel_open or len(text) > DATA_MAX_BYTES:
            return False
        assert self._channel is not None
        self._channel.send(text)
        return True

    def _open_data_channel(self) -> None:
        if self._channel is not None:
            return
        channel = self._pc.createDataChannel(
            DATA_CHANNEL_LABEL, negotiated=True, id=DATA_CHANNEL_ID)
        self._channel = channel

        @channel.on("open")
        def _opened() -> None:
            if self._on_channel_open is not None and self.state is not LinkState.CLOSED:
                self._on_channel_open(self)

        @channel.on("message")
        def _message(raw: object) -> None:
            message = parse_data(raw)
            if message is not None and self._on_data is not None:
                self._on_data(self, message)

    def offer(self) -> None:
        """Make the offer to this member (we are the newcomer toward it)."""
        self._inbox.put_nowait(_MAKE_OFFER)

    def handle_signal(self, data: m.SignalData) -> None:
        """Queue a ``signal`` payload this member sent us."""
        self._inbox.put_nowait(data)

    async def close(self, state: LinkState = LinkState.CLOSED) -> None:
        """Close the connection and settle in `state`.

        Idempotent: a later call waits for the same closing to finish. The closing runs in a task
        of its own, so cancelling the caller (a peer shutting down while its receive loop is
        closing a link) cannot stop ``RTCPeerConnection.close`` halfway, which would leave the
        link's ICE sockets open.
        """
        if self._closing is None:
            self._set_state(state)
            current = asyncio.current_task()
            for task in (self._worker, self._watchdog):
                if task is not current:
                    task.cancel()
            if self._source is not None:
                self._source.stop()  # ends this link's relay subscription, not the source itself
            self._closing = asyncio.ensure_future(self._pc.close())
            if self._on_closed is not None:
                on_closed = self._on_closed
                self._closing.add_done_callback(lambda _task: on_closed(self))
        await asyncio.shield(self._closing)

    async def _fail(self, reason: str) -> None:
        if self._closing is not None:
            return
        logger.info("! link to %s failed: %s", self.remote_id, reason)
        self.failure = reason
        await self.close(LinkState.FAILED)

    async def _expire(self, timeout: float) -> None:
        await asyncio.sleep(timeout)
        if self.state in (LinkState.NEW, LinkState.CONNECTING):
            await self._fail(f"not connected after {timeout:g} s")

    async def _work(self) -> None:
        while True:
            data = await self._inbox.get()
            try:
                if isinstance(data, _MakeOffer):
                    await self._make_offer()
                elif data.description is not None:
                    await self._handle_description(data.description, data.answers)
                elif data.candidate is not m.UNSET:
                    await self._handle_candidate(data.candidate)
                else:
                    logger.debug("< ignoring a signal from %s with neither description nor "
                                 "candidate", self.remote_id)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # aiortc raises many types; any of them ends this link
                await self._fail(f"negotiation error: {type(error).__name__}: {error}")
                return

    async def _make_offer(self) -> None:
        self._open_data_channel()
        self._add_outgoing_audio()
        self._set_state(LinkState.CONNECTING)
        offer = await self._pc.createOffer()
        await self._set_local(offer.sdp, "offer")

    async def _handle_description(self, description: m.SessionDescription,
                                  answers: str | None = None) -> None:
        kind, sdp = description.type, description.sdp
        signaling_state = self._pc.signalingState
        sections = media_sections(sdp)
        if kind == "offer":
            remote = self._pc.remoteDescription
            if sections and remote is not None and len(sections) < len(media_sections(remote.sdp)):
                # A late repeat of an earlier offer: a later offer never drops a section.
                logger.debug("< ignoring %s's offer with fewer sections than the last", self.remote_id)
                return
            if signaling_state == "have-local-offer":
                # Glare. aiortc cannot roll back, so we are the impolite side: the other end
                # must roll back its offer and answer ours (docs/protocol.md, `polite`).
                logger.warning("! ignoring %s's offer: ours is pending", self.remote_id)
                return
            await self._pc.setRemoteDescription(
                RTCSessionDescription(strip_audio_level(sdp), "offer")
            )
            await self._add_pending_candidates()
            self._open_data_channel()
            self._add_outgoing_audio()
            self._set_state(LinkState.CONNECTING)
            answer = await self._pc.createAnswer()
            await self._set_local(answer.sdp, "answer")
        else:
            if signaling_state != "have-local-offer":
                logger.warning("! ignoring %s's answer in state %s", self.remote_id, signaling_state)
                return
            local = self._pc.localDescription
            local_sdp = local.sdp if local else None
            if (answers is not None and answers != ice_ufrag(local_sdp)) or (
                    sections and sections != media_sections(local_sdp)):
                logger.debug("< ignoring %s's answer to an earlier offer", self.remote_id)
                return
            await self._pc.setRemoteDescription(
                RTCSessionDescription(strip_audio_level(sdp), "answer")
            )
            await self._add_pending_candidates()

    async def _set_local(self, sdp: str, kind: Literal["offer", "answer"]) -> None:
        # Gathering happens here, so this is where loopback has to be allowed.
        with loopback_gathering(self._allow_loopback):
            await self._pc.setLocalDescription(RTCSessionDescription(strip_audio_level(sdp), kind))
        # Send the description as set, now carrying every gathered candidate (no trickle out).
        local_sdp = strip_audio_level(self._pc.localDescription.sdp)
        remote = self._pc.remoteDescription
        # An answer names the offer it answers (docs/protocol.md, "A repeated offer").
        answers = ice_ufrag(remote.sdp) if kind == "answer" and remote is not None else None
        self._send_signal(m.SignalData(description=m.SessionDescription(kind, local_sdp),
                                       answers=answers))

    def _add_outgoing_audio(self) -> None:
        if not self.audio:
            for transceiver in self._pc.getTransceivers():
                transceiver.direction = "inactive"  # a text chat: refuse the other side's audio
            return
        if self._pc.getTransceivers() and any(
            t.sender.track is not None for t in self._pc.getTransceivers()
        ):
            return
        if self._source is not None:
            self._pc.addTrack(self._source)
        elif not self._pc.getTransceivers():
            self._pc.addTransceiver("audio", direction="recvonly")

    async def _handle_candidate(self, candidate: m.IceCandidate | None) -> None:
        parsed = _parse_candidate(candidate)
        if isinstance(parsed, _Unusable):
            logger.debug("< ignoring unusable candidate from %s: %r", self.remote_id, candidate)
            return
        if self._pc.remoteDescription is None:
            self._pending_candidates.append(parsed)
            return
        await self._pc.addIceCandidate(parsed)

    async def _add_pending_candidates(self) -> None:
        pending, self._pending_candidates = self._pending_candidates, []
        for candidate in pending:
            await self._pc.addIceCandidate(candidate)

    def _handle_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self.audio:
            self._on_track(track)

    def _handle_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "connected" and self.state is LinkState.CONNECTING:
            self.candidate_types = _selected_candidate_types(self._pc)
            if self.candidate_types is not None:
                relayed = "relay" in self.candidate_types
                self.route = Route.RELAYED if relayed else Route.DIRECT
            self._set_state(LinkState.CONNECTED)
        elif state == "failed":
            asyncio.ensure_future(self._fail("ICE or DTLS failed"))
        elif state == "closed" and self._closing is None:
            # The other side closed DTLS (aiortc closes the whole connection then).
            asyncio.ensure_future(self.close())

    def _set_state(self, state: LinkState) -> None:
        if state is self.state:
            return
        self.state = state
        logger.debug("= link to %s: %s", self.remote_id, state.value)
        if state in (LinkState.CONNECTED, LinkState.FAILED, LinkState.CLOSED):
            # Not when the watchdog itself is failing the link: cancelling the running task
            # would interrupt pc.close() halfway and leak ICE sockets.
            if self._watchdog is not asyncio.current_task():
                self._watchdog.cancel()
        self._on_change(self)


class _Unusable:
    """Marks a candidate we cannot use (malformed, or a kind aiortc does not take)."""


_UNUSABLE = _Unusable()


def _parse_candidate(candidate: m.IceCandidate | None) -> RTCIceCandidate | None | _Unusable:
    """A trickled ``{candidate, sdpMid, sdpMLineIndex}`` as aiortc wants it.

    Returns None for end-of-candidates (a null candidate, or an empty candidate string, which
    browsers use for the same), and :data:`_UNUSABLE` for a line aiortc cannot read.
    """
    if candidate is None or candidate.candidate == "":
        return None
    line = candidate.candidate.removeprefix("candidate:")
    try:
        parsed = candidate_from_sdp(line)
    except (AssertionError, ValueError, IndexError):
        return _UNUSABLE
    parsed.sdpMid = candidate.sdp_mid
    parsed.sdpMLineIndex = candidate.sdp_mline_index
    if parsed.sdpMid is None and parsed.sdpMLineIndex is None:
        parsed.sdpMLineIndex = 0  # one bundled audio m-line: the only sensible target
    return parsed


def _selected_candidate_types(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """(local, remote) candidate types of the nominated pair, or None if unknown.

    aiortc's getStats has no candidate-pair entries, so this reads aioice's nominated pair
    (``Connection._nominated``), guarded so that a future aiortc only loses the route.
    """
    # Everything is bundled on one transport: the audio's, or the data channel's when a
    # text-only link has no audio.
    dtls_transports = [t.receiver.transport for t in pc.getTransceivers()]
    if pc.sctp is not None:
        dtls_transports.append(pc.sctp.transport)
    for dtls in dtls_transports:
        try:
            ice_connection = dtls.transport._connection
            pairs = list(ice_connection._nominated.values())
        except AttributeError:
            return None
        if pairs:
            pair = pairs[0]
            return (str(pair.local_candidate.type), str(pair.remote_candidate.type))
    return None
