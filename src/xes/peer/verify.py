"""The Python peer's safety codes: the shell around :mod:`xes.core.verification`.

It reads the certificate fingerprints the DTLS connection really uses (ours from the transport's
local parameters, the peer's from the certificate it presented in the handshake, never from the
SDP), draws nonces, runs the commit-reveal over each link's data channel, sends attestations, and
keeps the room code. The word list is the browser's own file (``xes/web/wordlist.js``), so both
clients read one list.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable
from importlib import resources

from aiortc import RTCPeerConnection
from aiortc.rtcdtlstransport import certificate_digest

from xes.core.verification import (
    Claim,
    LinkState,
    LinkVerification,
    code_words,
    normalize_fingerprint,
    parse_attestation,
    summarize_room,
)
from xes.peer.connection import Link

__all__ = ["WORDS", "RoomVerifier", "certificate_fingerprints", "load_words"]

_WORD_LINE = re.compile(r"^  '([a-z]+)',$", re.MULTILINE)


@functools.cache
def load_words() -> tuple[str, ...]:
    """The 2,048 words of the BIP-39 English list, from the browser client's wordlist.js."""
    text = (resources.files("xes") / "web" / "wordlist.js").read_text(encoding="utf-8")
    words = tuple(_WORD_LINE.findall(text))
    if len(words) != 2048:
        raise RuntimeError(f"wordlist.js holds {len(words)} words, not 2048")
    return words


WORDS = load_words()


def certificate_fingerprints(pc: RTCPeerConnection) -> tuple[str, str] | None:
    """(ours, theirs) SHA-256 fingerprints of the certificates of the connected DTLS transport.

    The remote one is read from the handshake's peer certificate (aiortc keeps the OpenSSL
    connection as ``_ssl``), guarded so that a future aiortc only loses the code, never the call.
    """
    sctp = pc.sctp
    if sctp is None:
        return None
    transport = sctp.transport
    local = next((f for f in transport.getLocalParameters().fingerprints
                  if f.algorithm == "sha-256"), None)
    connection = getattr(transport, "_ssl", None)
    if connection is None or not hasattr(connection, "get_peer_certificate"):
        return None
    certificate = connection.get_peer_certificate(as_cryptography=True)
    if local is None or certificate is None:
        return None
    ours = normalize_fingerprint(local.algorithm, local.value)
    theirs = normalize_fingerprint("sha-256", certificate_digest(certificate, "sha-256"))
    return (ours, theirs) if ours and theirs else None


class RoomVerifier:
    """Safety codes for every link of one room, and the room code.

    Args:
        self_id: Our peer id.
        members: Returns the other members' live links by peer id.
        on_change: Called after the room code or a link's check changed.
        on_alert: Called once per problem found (a bad reveal, contradicting attestations),
            with a key and a sentence.
        name_of: A member's display name, for those sentences (default: its peer id).
    """

    def __init__(
        self,
        self_id: str,
        members: Callable[[], dict[str, Link]],
        on_change: Callable[[], None],
        on_alert: Callable[[str, str], None],
        name_of: Callable[[str], str] = str,
    ) -> None:
        self.self_id = self_id
        self._name_of = name_of
        self._members = members
        self._on_change = on_change
        self._on_alert = on_alert
        self.links: dict[str, LinkVerification] = {}
        self.attestations: dict[str, list[Claim]] = {}
        self.room_digest: str | None = None
        self.contradictions: list[tuple[str, str]] = []
        self._alerted: set[str] = set()

    @property
    def room_code(self) -> tuple[str, ...] | None:
        """The room code's words, once every link of every member is attested by both ends."""
        return None if self.room_digest is None else code_words(self.room_digest, WORDS)

    def link_code(self, peer_id: str) -> tuple[str, ...] | None:
        """The code of our link to `peer_id`, once its commit-reveal succeeded."""
        verification = self.links.get(peer_id)
        if verification is None or verification.digest is None:
            return None
        return code_words(verification.digest, WORDS)

    def channel_opened(self, link: Link) -> None:
        if link.remote_id in self.links:
            return
        pair = certificate_fingerprints(link.peer_connection)
        if pair is None:
            self._alert(f"reveal:{link.remote_id}", "the DTLS certificates could not be read")
            return
        verification = LinkVerification(pair[0], pair[1], secrets.token_hex(32))
        self.links[link.remote_id] = verification
        self._attest(only_to=link)
        self._send(link, verification.start())
        self._after(link, verification, LinkState.WAITING)

    def received(self, link: Link, message: dict[str, object]) -> None:
        kind = message.get("type")
        if kind in ("commit", "reveal"):
            verification = self.links.get(link.remote_id)
            if verification is not None:
                before = verification.state
                self._send(link, verification.receive(message))
                self._after(link, verification, before)
        elif kind == "attest":
            claims = parse_attestation(link.remote_id, message)
            if claims is not None:
                self.attestations[link.remote_id] = claims
                self._update()

    def removed(self, peer_id: str) -> None:
        self.links.pop(peer_id, None)
        self.attestations.pop(peer_id, None)
        self._attest()
        self._update()

    def _after(self, link: Link, verification: LinkVerification, before: LinkState) -> None:
        if verification.state is before:
            return
        if verification.state is LinkState.BROKEN and verification.problem is not None:
            self._alert(f"reveal:{link.remote_id}",
                        f"safety check failed with {self._name(link.remote_id)}: "
                        f"{verification.problem.value}")
        if verification.state is LinkState.VERIFIED:
            self._attest()
        self._update()

    def _own_claims(self) -> list[Claim]:
        return [
            Claim((self.self_id, peer_id), (v.local_fingerprint, v.remote_fingerprint), v.digest)
            for peer_id, v in self.links.items() if v.digest is not None
        ]

    def _attest(self, only_to: Link | None = None) -> None:
        message: dict[str, object] = {"type": "attest", "links": [
            {"peer": claim.peers[1], "fingerprints": list(claim.fingerprints),
             "digest": claim.digest} for claim in self._own_claims()]}
        for link in self._members().values():
            if only_to is None or link is only_to:
                link.send_data(message)

    @staticmethod
    def _send(link: Link, messages: list[dict[str, object]]) -> None:
        for message in messages:
            link.send_data(message)

    def _update(self) -> None:
        summary = summarize_room(
            self.self_id, self._members().keys(), self._own_claims(), self.attestations)
        for one, other in summary.contradictions:
            key = " ".join(sorted((one, other)))
            self._alert(f"contradiction:{key}",
                        f"safety check failed: {self._name(one)} and {self._name(other)} see "
                        "different keys for their link")
        changed = (summary.digest, summary.contradictions) != (
            self.room_digest, self.contradictions)
        self.room_digest, self.contradictions = summary.digest, summary.contradictions
        if changed:
            self._on_change()

    def _name(self, peer_id: str) -> str:
        return "you" if peer_id == self.self_id else self._name_of(peer_id)

    def _alert(self, key: str, text: str) -> None:
        if key not in self._alerted:
            self._alerted.add(key)
            self._on_alert(key, text)
