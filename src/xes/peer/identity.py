"""The Python peer's pseudonymous identity: an ECDSA P-256 key kept in a file (docs/python.md).

Like a browser's key in IndexedDB, the key file *is* the identity: ratings, blocks and a
moderator's decisions follow it. A Peer without a key file gets a fresh key held only in memory.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ..protocol import messages as m

__all__ = ["PeerIdentity"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class PeerIdentity:
    """One key pair; :meth:`identify` answers a server's challenge with it."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key

    @classmethod
    def generate(cls) -> PeerIdentity:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def from_file(cls, path: Path) -> PeerIdentity:
        """The key in ``path`` (PEM, PKCS#8), made there (mode 0600) if the file does not exist."""
        try:
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except FileNotFoundError:
            identity = cls.generate()
            pem = identity._key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(pem)
            return identity
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"{path} does not hold an ECDSA P-256 private key")
        return cls(key)

    def raw_public_key(self) -> bytes:
        """The public key as its 65-byte uncompressed point."""
        return self._key.public_key().public_bytes(serialization.Encoding.X962,
                                                   serialization.PublicFormat.UncompressedPoint)

    @property
    def public_key(self) -> str:
        """The public key as the protocol sends it: the uncompressed point, base64url."""
        return _b64(self.raw_public_key())

    def identify(self, challenge: str) -> m.Identify:
        """The ``identify`` message for this connection's ``hello.challenge``."""
        der = self._key.sign(m.IDENTIFY_CONTEXT + challenge.encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return m.Identify(public_key=self.public_key,
                          signature=_b64(r.to_bytes(32, "big") + s.to_bytes(32, "big")))
