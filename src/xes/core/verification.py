"""Safety codes: the hashes, the commit-reveal of one link, and the room code. Pure: no I/O, no
randomness (nonces are passed in), no clock.

The construction is the browser's (``src/xes/web/verify.js``), byte for byte, and one shared
test vector checks that they agree; docs/verification.md explains it and argues why a middleman
who terminates DTLS on both sides of a link ends up with different codes on each side.

Hash inputs are UTF-8 text, each starting with :data:`DOMAIN` and its purpose, fields separated
by newlines (fingerprints and hex never contain one), so no two purposes can share an input:

- commitment = SHA-256(``"xes-verify-v1 commit\\n" + nonce + "\\n"``)
- link digest = SHA-256(``"xes-verify-v1 link\\n"`` + the two sides' ``fingerprint + "\\n" +
  nonce + "\\n"``, sorted as strings)
- room digest = SHA-256(``"xes-verify-v1 room\\n"`` + every distinct claim line, sorted, each
  followed by ``"\\n"``), a claim line being ``"<id> <id> <fingerprint> <fingerprint> <link
  digest>"`` with ids and fingerprints each sorted
- code = the digest's first :data:`CODE_BITS` bits as :data:`CODE_WORDS` words of the BIP-39
  English list, 11 bits each, most significant first.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DOMAIN",
    "CODE_WORDS",
    "CODE_BITS",
    "MAX_ATTESTED_LINKS",
    "Claim",
    "LinkState",
    "LinkVerification",
    "Problem",
    "RoomSummary",
    "claim_line",
    "code_words",
    "commitment_of",
    "link_digest",
    "normalize_fingerprint",
    "parse_attestation",
    "room_digest",
    "summarize_room",
]

DOMAIN = "xes-verify-v1"
CODE_WORDS = 3
CODE_BITS = CODE_WORDS * 11
MAX_ATTESTED_LINKS = 16
"""Most links one attestation may name: a room holds at most 8 people; room to spare."""

_HEX64 = re.compile(r"[0-9a-f]{64}")
_FINGERPRINT = re.compile(r"sha-256 [0-9A-F]{2}(:[0-9A-F]{2}){31}")
_PEER_ID = re.compile(r"[A-Za-z0-9_-]{22}")


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def normalize_fingerprint(algorithm: str, value: str) -> str | None:
    """``"sha-256 AB:CD:…"``, the one form every hash input uses; None if not SHA-256."""
    text = f"{algorithm.lower()} {value.upper()}"
    return text if _FINGERPRINT.fullmatch(text) else None


def commitment_of(nonce: str) -> str:
    """The commitment a side sends before its nonce (hex)."""
    return _sha256_hex(f"{DOMAIN} commit\n{nonce}\n")


def link_digest(one: tuple[str, str], other: tuple[str, str]) -> str:
    """The link digest from both sides' (fingerprint, nonce), in an order both ends agree on."""
    first, second = sorted(f"{fingerprint}\n{nonce}\n" for fingerprint, nonce in (one, other))
    return _sha256_hex(f"{DOMAIN} link\n{first}{second}")


@dataclass(frozen=True)
class Claim:
    """One member's word about one link: its two ends, their fingerprints, its digest."""

    peers: tuple[str, str]
    fingerprints: tuple[str, str]
    digest: str


def claim_line(claim: Claim) -> str:
    """The claim in canonical form: ids sorted, fingerprints sorted, then the digest."""
    return " ".join([*sorted(claim.peers), *sorted(claim.fingerprints), claim.digest])


def room_digest(claims: Iterable[Claim]) -> str:
    """The room digest over every distinct claim."""
    lines = sorted({claim_line(claim) for claim in claims})
    return _sha256_hex(f"{DOMAIN} room\n" + "".join(f"{line}\n" for line in lines))


def code_words(digest: str, words: Sequence[str]) -> tuple[str, ...]:
    """The first :data:`CODE_BITS` bits of `digest` (hex) as words of `words` (2,048 of them)."""
    if len(words) != 2048:
        raise ValueError("the word list must have 2048 words")
    bits = int(digest[:16], 16) >> (64 - CODE_BITS)
    return tuple(words[(bits >> (11 * (CODE_WORDS - 1 - i))) & 2047] for i in range(CODE_WORDS))


def parse_attestation(attester: str, message: dict[str, object]) -> list[Claim] | None:
    """The claims of an ``attest`` message that came over `attester`'s link; None if malformed."""
    links = message.get("links")
    if not isinstance(links, list) or len(links) > MAX_ATTESTED_LINKS:
        return None
    claims = []
    for link in links:
        if not isinstance(link, dict):
            return None
        peer, fingerprints, digest = link.get("peer"), link.get("fingerprints"), link.get("digest")
        if not (isinstance(peer, str) and _PEER_ID.fullmatch(peer) and peer != attester):
            return None
        if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
            return None
        if not (isinstance(fingerprints, list) and len(fingerprints) == 2 and all(
                isinstance(fp, str) and _FINGERPRINT.fullmatch(fp) for fp in fingerprints)):
            return None
        claims.append(Claim((attester, peer), (fingerprints[0], fingerprints[1]), digest))
    return claims


class LinkState(enum.Enum):
    WAITING = "waiting"
    VERIFIED = "verified"
    BROKEN = "broken"


class Problem(enum.Enum):
    """Why a link's check failed (the same words as the browser's)."""

    BAD_REVEAL = "their nonce does not match their commitment"
    OUT_OF_ORDER = "they revealed before committing"
    NO_FINGERPRINTS = "the DTLS certificates could not be read"


@dataclass
class LinkVerification:
    """The commit-reveal with one peer, sans I/O: feed it events, send what it returns.

    Args:
        local_fingerprint: Our certificate's, as used by the connection (normalized).
        remote_fingerprint: The peer's, from the DTLS handshake (normalized).
        nonce: Our fresh random nonce (hex, 32 bytes); the shell draws it.
    """

    local_fingerprint: str
    remote_fingerprint: str
    nonce: str
    state: LinkState = LinkState.WAITING
    peer_commitment: str | None = None
    peer_nonce: str | None = None
    revealed: bool = False
    digest: str | None = None
    problem: Problem | None = None
    started: bool = field(default=False)

    def start(self) -> list[dict[str, object]]:
        """Our commitment (and the reveal too, if the peer's commitment came first)."""
        self.started = True
        return [{"type": "commit", "commitment": commitment_of(self.nonce)}, *self._progress()]

    def receive(self, message: dict[str, object]) -> list[dict[str, object]]:
        """A ``commit`` or ``reveal`` from the peer; returns what to send in answer."""
        if self.state is not LinkState.WAITING:
            return []
        kind = message.get("type")
        if kind == "commit":
            commitment = message.get("commitment")
            if self.peer_commitment is None and isinstance(commitment, str) and _HEX64.fullmatch(
                    commitment):
                self.peer_commitment = commitment
        elif kind == "reveal":
            if self.peer_commitment is None:
                self._fail(Problem.OUT_OF_ORDER)
                return []
            nonce = message.get("nonce")
            if self.peer_nonce is not None or not (
                    isinstance(nonce, str) and _HEX64.fullmatch(nonce)):
                return []
            if commitment_of(nonce) != self.peer_commitment:
                self._fail(Problem.BAD_REVEAL)
                return []
            self.peer_nonce = nonce
        return self._progress()

    def _progress(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        if not self.started or self.state is not LinkState.WAITING:
            return out
        if self.peer_commitment is not None and not self.revealed:
            self.revealed = True
            out.append({"type": "reveal", "nonce": self.nonce})
        if self.peer_nonce is not None:
            self.digest = link_digest((self.local_fingerprint, self.nonce),
                                      (self.remote_fingerprint, self.peer_nonce))
            self.state = LinkState.VERIFIED
        return out

    def _fail(self, problem: Problem) -> None:
        self.problem = problem
        self.state = LinkState.BROKEN


@dataclass(frozen=True)
class RoomSummary:
    """What the claims known to one member say about the room."""

    digest: str | None
    """The room digest once every pair of members is attested by both ends, else None."""
    contradictions: list[tuple[str, str]]
    """Pairs of members whose claims about their link differ."""


def summarize_room(
    self_id: str, members: Iterable[str], own: Iterable[Claim],
    attestations: dict[str, list[Claim]],
) -> RoomSummary:
    """Combine our own verified links and every member's attestation into the room digest.

    Args:
        self_id: Our peer id.
        members: The other members' ids (claims about anyone else are left out).
        own: Claims about our verified links.
        attestations: Each member's latest claims, by attester.
    """
    everyone = [self_id, *members]
    member_set = set(everyone)
    by_pair: dict[frozenset[str], dict[str, str]] = {}
    counted: list[Claim] = []

    def record(attester: str, claim: Claim) -> None:
        if not member_set.issuperset(claim.peers):
            return
        by_pair.setdefault(frozenset(claim.peers), {})[attester] = claim_line(claim)
        counted.append(claim)

    for claim in own:
        record(self_id, claim)
    for attester, claims in attestations.items():
        if attester in member_set:
            for claim in claims:
                record(attester, claim)
    complete = True
    contradictions: list[tuple[str, str]] = []
    for i, one in enumerate(everyone):
        for other in everyone[i + 1:]:
            lines = by_pair.get(frozenset((one, other)), {})
            if one not in lines or other not in lines:
                complete = False
            if len(set(lines.values())) > 1:
                contradictions.append((one, other))
    digest = room_digest(counted) if complete and len(everyone) > 1 else None
    return RoomSummary(digest, contradictions)
