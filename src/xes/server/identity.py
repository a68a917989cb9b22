"""Pseudonymous identities and network hashes: the shell's cryptography for the safety rules.

An identity is an ECDSA P-256 key pair a browser (WebCrypto, private key non-extractable) or the
Python peer (a key file) makes once. On every connection the server sends a random challenge in
``hello``; the client signs ``IDENTIFY_CONTEXT + challenge``. A public key without its private key
therefore proves nothing, and an old signature fails against a new challenge. XES stores only
HMAC-SHA256(server secret, public key): the key itself, which the client may show elsewhere, never
lands in the database.

Addresses are never stored either. To rate-limit new identities per network, an address (IPv4,
or an IPv6 /64) is hashed with a salt that is drawn fresh every UTC day and deleted the day after,
so a stored hash cannot be linked to an address once its day is over (docs/privacy.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from ..protocol.messages import IDENTIFY_CONTEXT

__all__ = ["verify_identity", "identity_hash", "network_hash", "load_or_create_secret",
           "new_challenge", "SECRET_BYTES"]

SECRET_BYTES: Final = 32
_ECDSA: Final = ec.ECDSA(hashes.SHA256())


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def new_challenge() -> str:
    """32 random bytes for ``hello.challenge``, base64url without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def verify_identity(public_key: str, signature: str, challenge: str) -> bytes | None:
    """The raw public key if ``signature`` (r || s) signs this connection's challenge, else None."""
    try:
        raw = _unb64(public_key)
        sig = _unb64(signature)
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
        if len(raw) != 65 or len(sig) != 64:
            return None
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        key.verify(der, IDENTIFY_CONTEXT + challenge.encode("ascii"), _ECDSA)
    except (InvalidSignature, ValueError, binascii.Error):
        return None
    return raw


def identity_hash(secret: bytes, raw_public_key: bytes) -> str:
    """What XES keeps of an identity: a keyed hash of its public key (hex)."""
    return hmac.new(secret, b"identity:" + raw_public_key, hashlib.sha256).hexdigest()


def network_hash(daily_salt: bytes, address: str) -> str | None:
    """The day's salted hash of the address's network (IPv4 address, IPv6 /64), or None."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv6Address):
        network = ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)).with_prefixlen
    else:
        network = str(ip)
    return hmac.new(daily_salt, network.encode(), hashlib.sha256).hexdigest()


def load_or_create_secret(path: Path) -> bytes:
    """The server's identity secret, made on first start (0600). Every node must share it."""
    try:
        secret = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        secret = secrets.token_bytes(SECRET_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(secret)
    if len(secret) < 16:
        raise ValueError(f"{path}: the identity secret must be at least 16 bytes")
    return secret
