"""The safety-code construction (xes.core.verification), without I/O.

The shared vector in tests/support/verification_vector.json is also checked against the browser's
verify.js (tests/browser/test_verify.py), so the two clients provably compute the same codes.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from xes.core.verification import (
    CODE_BITS,
    Claim,
    LinkState,
    LinkVerification,
    Problem,
    code_words,
    commitment_of,
    link_digest,
    parse_attestation,
    room_digest,
    summarize_room,
)
from xes.peer.verify import WORDS

VECTOR: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "support" / "verification_vector.json").read_text())
A, B, C = "A" * 22, "B" * 22, "C" * 22
FP = {name: "sha-256 " + ":".join([f"{n:02X}" for n in range(32)][:-1] + [f"{i:02X}"])
      for i, name in enumerate("abcd")}
NONCE = {name: hashlib.sha256(name.encode()).hexdigest() for name in "abcd"}


def test_the_word_list_is_bip39_english_unchanged() -> None:
    """2,048 distinct words, the published list's sha-256; 3 words carry 33 bits."""
    assert len(WORDS) == len(set(WORDS)) == 2048
    published = "2f5eed53a4727b4bf8880d8f3f199efc90e58503646d9ff8eff3a2ed3b24dbda"
    assert hashlib.sha256(("\n".join(WORDS) + "\n").encode()).hexdigest() == published
    assert CODE_BITS == 33


def test_the_shared_vector() -> None:
    """Commitments, link digests and words, room digest and words, as documented."""
    claims = []
    for link in VECTOR["links"]:
        one, other = link["sides"]
        for side in (one, other):
            assert commitment_of(side["nonce"]) == side["commitment"]
            expected = hashlib.sha256(f"xes-verify-v1 commit\n{side['nonce']}\n".encode())
            assert side["commitment"] == expected.hexdigest()
        pairs = [(side["fingerprint"], side["nonce"]) for side in (one, other)]
        assert link_digest(pairs[0], pairs[1]) == link_digest(pairs[1], pairs[0]) == link["digest"]
        assert list(code_words(link["digest"], WORDS)) == link["words"]
        peers = tuple(link["peers"])
        claims.append(Claim(peers, (one["fingerprint"], other["fingerprint"]), link["digest"]))
        # The other end states the same link the other way round: the same claim.
        claims.append(Claim(peers[::-1], (other["fingerprint"], one["fingerprint"]), link["digest"]))
    assert room_digest(claims) == VECTOR["room"]["digest"]
    assert list(code_words(VECTOR["room"]["digest"], WORDS)) == VECTOR["room"]["words"]


def test_code_words_are_the_first_33_bits() -> None:
    digest = "ffffffff" + "0" * 56
    assert code_words(digest, WORDS) == (WORDS[2047], WORDS[2047], WORDS[0b11111111110])
    assert code_words("0" * 64, WORDS) == (WORDS[0],) * 3


def run_pair(ada: LinkVerification, bob: LinkVerification) -> None:
    """Deliver every message each side sends to the other until both are quiet."""
    inbox_bob, inbox_ada = ada.start(), bob.start()
    while inbox_ada or inbox_bob:
        to_bob, inbox_bob = inbox_bob, []
        to_ada, inbox_ada = inbox_ada, []
        for message in to_bob:
            inbox_ada += bob.receive(message)
        for message in to_ada:
            inbox_bob += ada.receive(message)


def test_honest_commit_reveal_gives_both_ends_one_code() -> None:
    ada = LinkVerification(FP["a"], FP["b"], NONCE["a"])
    bob = LinkVerification(FP["b"], FP["a"], NONCE["b"])
    run_pair(ada, bob)
    assert ada.state is bob.state is LinkState.VERIFIED
    assert ada.digest == bob.digest is not None


def test_a_middleman_with_its_own_certificates_gives_each_end_another_code() -> None:
    """Ada talks DTLS to M (certificate c), Bob to M (certificate d); M relays the messages."""
    ada = LinkVerification(FP["a"], FP["c"], NONCE["a"])
    bob = LinkVerification(FP["b"], FP["d"], NONCE["b"])
    run_pair(ada, bob)
    assert ada.state is bob.state is LinkState.VERIFIED
    assert ada.digest != bob.digest


def test_a_reveal_that_does_not_match_the_commitment_breaks_the_link() -> None:
    ada = LinkVerification(FP["a"], FP["b"], NONCE["a"])
    sent = ada.start()
    assert [message["type"] for message in sent] == ["commit"]
    reveal = ada.receive({"type": "commit", "commitment": commitment_of(NONCE["b"])})
    assert reveal == [{"type": "reveal", "nonce": NONCE["a"]}]
    assert ada.receive({"type": "reveal", "nonce": NONCE["c"]}) == []
    assert ada.state is LinkState.BROKEN and ada.problem is Problem.BAD_REVEAL
    assert ada.digest is None


def test_a_reveal_before_any_commitment_breaks_the_link() -> None:
    ada = LinkVerification(FP["a"], FP["b"], NONCE["a"])
    ada.start()
    ada.receive({"type": "reveal", "nonce": NONCE["b"]})
    assert ada.state is LinkState.BROKEN and ada.problem is Problem.OUT_OF_ORDER


def claim(one: str, other: str, fps: tuple[str, str], digest: str = "0" * 64) -> Claim:
    return Claim((one, other), fps, digest)


def test_room_summary_needs_both_ends_of_every_link_and_flags_contradictions() -> None:
    ab, ac, bc = (FP["a"], FP["b"]), (FP["a"], FP["c"]), (FP["b"], FP["c"])
    own = [claim(A, B, ab), claim(A, C, ac)]
    partial = summarize_room(A, [B, C], own, {B: [claim(B, A, ab)]})
    assert partial.digest is None and partial.contradictions == []
    everyone = {B: [claim(B, A, ab), claim(B, C, bc)], C: [claim(C, A, ac), claim(C, B, bc)]}
    full = summarize_room(A, [B, C], own, everyone)
    assert full.digest is not None and full.contradictions == []
    # C and B compute the same digest from their own side.
    from_c = summarize_room(C, [A, B], everyone[C], {A: own, B: everyone[B]})
    assert from_c.digest == full.digest
    # B says its link to C has other keys than C says: a contradiction, and another code.
    lying = {**everyone, B: [claim(B, A, ab), claim(B, C, (FP["b"], FP["d"]))]}
    contradicted = summarize_room(A, [B, C], own, lying)
    assert contradicted.contradictions == [(B, C)]
    assert contradicted.digest not in (None, full.digest)


def test_attestations_are_validated() -> None:
    good = {"type": "attest", "links": [{"peer": B, "fingerprints": [FP["a"], FP["b"]],
                                         "digest": "0" * 64}]}
    assert parse_attestation(A, good) == [Claim((A, B), (FP["a"], FP["b"]), "0" * 64)]
    for links in (None, "x", [None], [{"peer": A, "fingerprints": [FP["a"], FP["b"]],
                                       "digest": "0" * 64}],
                  [{"peer": B, "fingerprints": [FP["a"]], "digest": "0" * 64}],
                  [{"peer": B, "fingerprints": [FP["a"], "sha-1 AA"], "digest": "0" * 64}],
                  [{"peer": B, "fingerprints": [FP["a"], FP["b"]], "digest": "zz"}],
                  [good["links"][0]] * 17):  # type: ignore[index]
        assert parse_attestation(A, {"type": "attest", "links": links}) is None, links
